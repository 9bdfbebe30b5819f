"""PuTTY private keys (``.ppk``, format versions 2 and 3), read in locked memory.

A PPK file is text: header lines (``PuTTY-User-Key-File-3: ssh-ed25519``, ``Encryption:``,
``Comment:``), the public key in base64 (``Public-Lines:``), for version 3 with a passphrase the
Argon2 parameters, the private key in base64 (``Private-Lines:``), and ``Private-MAC:``, a MAC
over all of it (PuTTY's documentation, appendix C "PPK file format"). With ``Encryption:
aes256-cbc`` the private blob is AES-256-CBC encrypted; its key, IV and MAC key come from the
passphrase: in version 3 from Argon2 (80 bytes: key, IV, MAC key for HMAC-SHA-256), in version 2
from SHA-1 (key = SHA1(0u32 || pass) || SHA1(1u32 || pass), first 32 bytes, IV zero; MAC key =
SHA1("putty-private-key-file-mac-key" || pass), HMAC-SHA-1).

Here the private base64 is decoded straight into a :class:`~securemem.SecureBytes`, decrypted by
``update_into`` into another one, and the MAC is checked (constant time, by cryptography's
``HMAC.verify``) before a field of it is read. The key is then built as :mod:`._openssh` builds
OpenSSH keys: DER in locked memory (RSA with its CRT exponents computed in locked memory, SEC 1
EC, DSA) loaded by cryptography, or a view of the seed (Ed25519, Ed448).

What cannot be avoided: version 2 derives its AES key and MAC key with SHA-1, whose digests
come back as ``bytes`` (the key that wraps the private key, not the private key; freed
unwiped). Version 3's Argon2 writes its 80 bytes into locked memory (``derive_into``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf import argon2

from securemem._arena import Arena
from securemem._errors import KeyFormatError, PasswordMismatch
from securemem._keyformats import _limits, _openssh
from securemem._keyformats._decrypt import decrypt_into_locked
from securemem._keyformats._limits import KdfLimits
from securemem._securebytes import SecureBytes

MAGIC = b"PuTTY-User-Key-File-"
_AES = b"aes256-cbc"
_NONE = b"none"
_BLOCK = 16
_KEY_SIZE, _IV_SIZE, _MAC_KEY_SIZE = 32, 16, 32
_V2_MAC_KEY_SIZE = 20  # SHA-1's digest
_V2_MAC_LABEL = b"putty-private-key-file-mac-key"
_Argon2 = type[argon2.Argon2id] | type[argon2.Argon2i] | type[argon2.Argon2d]
_ARGON2: dict[bytes, _Argon2] = {
    b"Argon2id": argon2.Argon2id,
    b"Argon2i": argon2.Argon2i,
    b"Argon2d": argon2.Argon2d,
}
_MAX_LINES = 10_000  # base64 lines of one blob; PuTTY's largest keys need about 100
_MAX_NUMBER_DIGITS = 10  # Argon2 parameters and line counts: uint32 at most
_HEADER_BYTES = frozenset(range(0x20, 0x7F))


def is_ppk(view: memoryview) -> bool:
    """Whether the data starts as a PPK file (compared in place: it may be a raw key)."""
    return view[: len(MAGIC)] == MAGIC


@dataclass(frozen=True)
class _Line:
    start: int  # first byte of the line
    end: int  # the line's end, before CR/LF
    after: int  # first byte of the next line


def _lines(view: memoryview) -> Iterator[_Line]:
    """The file's lines; LF, CR+LF and a lone CR all end one (PuTTY accepts the three)."""
    index, size = 0, view.nbytes
    while index < size:
        end = index
        while end < size and view[end] not in (0x0A, 0x0D):
            end += 1
        after = end + 1
        if end < size and view[end] == 0x0D and after < size and view[after] == 0x0A:
            after += 1
        yield _Line(index, end, min(after, size))
        index = after


@dataclass(frozen=True)
class Header:
    """The public part of a PPK file, from its text: what a message may name."""

    version: int
    algorithm: str
    encryption: str
    kdf: str  # "Argon2id" etc. for an encrypted v3 file, "SHA-1" for v2, "" if not encrypted

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"

    def describe(self) -> str:
        text = f"PuTTY .ppk v{self.version}, {self.algorithm}"
        if self.encrypted:
            return f"{text}, passphrase-protected ({self.encryption}, {self.kdf} KDF)"
        return f"{text}, not encrypted"


class _Text:
    """Header lines read in order, each ``Name: value``; the values are public text."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self._lines = _lines(view)

    def line(self, name: bytes) -> memoryview:
        """The value of the next line, which must be ``name: value``."""
        line = next(self._lines, None)
        prefix = name + b": "
        if line is None or self.view[line.start : line.start + len(prefix)] != prefix:
            raise KeyFormatError(
                f"the PuTTY key has no {name.decode()!r} line where one belongs: is the file "
                "damaged or truncated?"
            )
        if line.after >= self.view.nbytes and name != b"Private-MAC":
            raise KeyFormatError(
                f"the PuTTY key ends at its {name.decode()!r} line: the file is truncated"
            )
        return self.view[line.start + len(prefix) : line.end]

    def word(self, name: bytes) -> bytes:
        """A short, printable header value (an algorithm, a cipher, a KDF name, hex)."""
        value = self.line(name)
        if value.nbytes > 200 or not all(code in _HEADER_BYTES for code in value):
            raise KeyFormatError(f"the PuTTY key's {name.decode()!r} line is not readable")
        return value.tobytes()

    def number(self, name: bytes) -> int:
        value = self.word(name)
        # PuTTY's numbers are 32-bit: a bigger one is damage (and overflows the Argon2 call)
        if not value.isdigit() or len(value) > _MAX_NUMBER_DIGITS or int(value) > 0xFFFFFFFF:
            raise KeyFormatError(
                f"the PuTTY key's {name.decode()!r} line is not a number: is the file damaged?"
            )
        return int(value)

    def block(self, name: bytes) -> tuple[int, int]:
        """``name: N`` and the N base64 lines after it: (start, end) offsets of the lines."""
        count = self.number(name)
        if count > _MAX_LINES:
            raise KeyFormatError(f"the PuTTY key's {name.decode()!r} count {count} is too large")
        start = end = -1
        for _ in range(count):
            line = next(self._lines, None)
            if line is None:
                raise KeyFormatError(
                    f"the PuTTY key ends inside its {name.decode()!r} block: it is truncated"
                )
            start = line.start if start < 0 else start
            end = line.end
        if start < 0:
            raise KeyFormatError(f"the PuTTY key's {name.decode()!r} block is empty")
        return start, end


@dataclass(frozen=True)
class _Parsed:
    header: Header
    algorithm: bytes
    encryption: bytes
    comment: memoryview
    public: bytes  # the public blob (public data)
    private: tuple[int, int]  # offsets of the private base64 lines
    argon2: tuple[bytes, int, int, int, bytes] | None  # flavour, KiB, passes, lanes, salt
    mac: bytes


def _parse(view: memoryview) -> _Parsed:
    text = _Text(view)
    first = next(_lines(view))
    colon = view[len(MAGIC) : first.end].tobytes().partition(b": ")
    version_text, algorithm = colon[0], colon[2]
    if not colon[1] or not version_text.isdigit():
        raise KeyFormatError(
            "the PuTTY key's first line is incomplete (expected 'PuTTY-User-Key-File-3: "
            "ALGORITHM'): is the file truncated?"
        )
    if version_text not in (b"2", b"3"):
        shown = version_text.decode() if len(version_text) <= 4 else "(a long number)"
        raise KeyFormatError(
            f"PuTTY key file format version {shown} is not supported (only 2 and 3): "
            "re-save it with a current puttygen (`puttygen KEY.ppk -o NEW.ppk`)"
        )
    version = int(version_text)
    text.word(MAGIC + version_text)  # consume the first line
    if not algorithm or len(algorithm) > 64 or not all(c in _HEADER_BYTES for c in algorithm):
        raise KeyFormatError("the PuTTY key's first line names no readable key algorithm")
    encryption = text.word(b"Encryption")
    if encryption not in (_AES, _NONE):
        raise KeyFormatError(
            f"the PuTTY key is encrypted with {encryption.decode()!r}; PuTTY itself writes only "
            "'aes256-cbc' and 'none'"
        )
    comment = text.line(b"Comment")
    public_start, public_end = text.block(b"Public-Lines")
    public = _public_blob(view[public_start:public_end])
    settings = None
    kdf = ""
    if encryption == _AES:
        kdf = "SHA-1"
        if version == 3:
            flavour = text.word(b"Key-Derivation")
            if flavour not in _ARGON2:
                raise KeyFormatError(
                    f"the PuTTY key's key derivation {flavour.decode()!r} is not supported "
                    "(Argon2id, Argon2i and Argon2d are)"
                )
            memory, passes = text.number(b"Argon2-Memory"), text.number(b"Argon2-Passes")
            lanes = text.number(b"Argon2-Parallelism")
            salt = _hex(text.word(b"Argon2-Salt"), "Argon2-Salt")
            settings = (flavour, memory, passes, lanes, salt)
            kdf = flavour.decode()
    private = text.block(b"Private-Lines")
    mac = _hex(text.word(b"Private-MAC"), "Private-MAC")
    header = Header(version, algorithm.decode(), encryption.decode(), kdf)
    return _Parsed(header, algorithm, encryption, comment, public, private, settings, mac)


def _hex(value: bytes, name: str) -> bytes:
    try:
        return bytes.fromhex(value.decode("ascii"))
    except ValueError:
        raise KeyFormatError(f"the PuTTY key's {name!r} line is not hex") from None


def _public_blob(lines: memoryview) -> bytes:
    try:
        with SecureBytes.from_base64(lines) as blob:
            return bytes(blob.view())  # the public key: public data
    except ValueError as error:
        raise KeyFormatError(f"the PuTTY key's public lines are not base64 ({error})") from None


def header(view: memoryview) -> Header:
    """The file's public description, for messages (raises KeyFormatError if unreadable)."""
    return _parse(view).header


def load(
    view: memoryview,
    password: memoryview | None,
    *,
    unsafe_skip_rsa_key_validation: bool,
    arena: Arena | None,
    limits: KdfLimits,
) -> PrivateKeyTypes:
    """The key in a PPK file held in locked memory (``view`` is that SecureBytes' view)."""
    parsed = _parse(view)
    if parsed.header.encrypted and password is None:
        raise PasswordMismatch(
            "the PuTTY key is passphrase-protected: pass its passphrase as password= "
            "(read it with securemem.getpass)"
        )
    if not parsed.header.encrypted and password is not None:
        raise PasswordMismatch(
            "a password was given but the PuTTY key is not passphrase-protected: "
            "pass password=None"
        )
    if parsed.argon2 is not None:
        _, memory, passes, lanes, _ = parsed.argon2
        _limits.check("PuTTY", "argon2_memory_kib", memory, limits.argon2_memory_kib)
        _limits.check("PuTTY", "argon2_passes", passes, limits.argon2_passes)
        _limits.check("PuTTY", "argon2_lanes", lanes, limits.argon2_lanes)
    start, end = parsed.private
    try:
        private = SecureBytes.from_base64(view[start:end], arena=arena)
    except ValueError as error:
        raise KeyFormatError(
            f"the PuTTY key's private lines are not base64 ({error}): is the file damaged?"
        ) from None
    if parsed.header.encrypted:
        assert password is not None
        try:
            plain = _decrypt(parsed, private, password, arena)
        finally:
            private.close()
    else:
        plain = private
    try:
        if not parsed.header.encrypted:  # v3: an empty MAC key; v2: SHA-1 of the label alone
            _verify(parsed, plain, b"" if parsed.header.version == 3 else _v2_mac_key(b""))
        with plain.view() as blob:
            return _private_key(parsed, blob, unsafe_skip_rsa_key_validation, arena)
    finally:
        plain.close()


def _decrypt(
    parsed: _Parsed, encrypted: SecureBytes, password: memoryview, arena: Arena | None
) -> SecureBytes:
    """The private blob, decrypted into locked memory and its MAC checked."""
    material = _key_material(parsed, password, arena)
    try:
        with material.view() as keys, encrypted.view() as ciphertext:
            if ciphertext.nbytes == 0 or ciphertext.nbytes % _BLOCK:
                raise KeyFormatError(
                    "the PuTTY key's encrypted private blob is not whole AES blocks: it is "
                    "damaged"
                )
            key, iv = keys[:_KEY_SIZE], keys[_KEY_SIZE : _KEY_SIZE + _IV_SIZE]
            decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
            plain = decrypt_into_locked(decryptor, ciphertext, _BLOCK, arena)
            try:
                _verify(parsed, plain, keys[_KEY_SIZE + _IV_SIZE :])
            except BaseException:
                plain.close()
                raise
            return plain
    finally:
        material.close()


def _key_material(parsed: _Parsed, password: memoryview, arena: Arena | None) -> SecureBytes:
    """AES key (32) || IV (16) || MAC key (32 in v3, 20 in v2), in locked memory."""
    if parsed.argon2 is None:  # version 2: the IV stays zero, the MAC key is a SHA-1 digest
        material = SecureBytes(_KEY_SIZE + _IV_SIZE + _V2_MAC_KEY_SIZE, arena=arena)
        with material.view() as out:
            for number in (0, 1):
                digest = hashlib.sha1(number.to_bytes(4, "big"))  # noqa: S324 - PPK v2's KDF
                digest.update(password)
                # Unavoidable: hashlib returns the digest (half the wrapping key) as bytes;
                # sliced through a view, so no second copy is made.
                half = memoryview(digest.digest())
                start = half.nbytes * number
                take = min(half.nbytes, _KEY_SIZE - start)
                out[start : start + take] = half[:take]
                del half
            out[_KEY_SIZE + _IV_SIZE :] = _v2_mac_key(password)
        return material
    flavour, memory, passes, lanes, salt = parsed.argon2
    material = SecureBytes(_KEY_SIZE + _IV_SIZE + _MAC_KEY_SIZE, arena=arena)
    try:
        kdf = _ARGON2[flavour](
            salt=salt, length=len(material), iterations=passes, lanes=lanes, memory_cost=memory
        )
        with material.view() as out:
            kdf.derive_into(password, out)  # type: ignore[arg-type]  # any buffer works
    except (ValueError, OverflowError):  # cryptography's Argon2 refuses the parameters
        material.close()
        raise KeyFormatError(
            f"the PuTTY key's Argon2 parameters are invalid (memory {memory} KiB, passes "
            f"{passes}, parallelism {lanes}, a {len(salt)}-byte salt): is the file damaged?"
        ) from None
    return material


def _v2_mac_key(password: memoryview | bytes) -> bytes:
    digest = hashlib.sha1(_V2_MAC_LABEL)  # noqa: S324 - PPK v2's MAC key
    digest.update(password)
    # Unavoidable: hashlib returns the MAC key (derived from the passphrase) as bytes.
    return digest.digest()


def _verify(parsed: _Parsed, plain: SecureBytes, mac_key: memoryview | bytes) -> None:
    """Check Private-MAC over the algorithm, encryption, comment, public blob and the
    decrypted private blob (each as an SSH string), in constant time."""
    v2_mac = hashes.SHA1()  # noqa: S303 - PPK v2's MAC is HMAC-SHA-1
    algorithm = hashes.SHA256() if parsed.header.version == 3 else v2_mac
    mac = hmac.HMAC(mac_key, algorithm)
    with plain.view() as blob:
        fields: tuple[bytes | memoryview, ...] = (
            *(parsed.algorithm, parsed.encryption, parsed.comment, parsed.public, blob),
        )
        for field in fields:
            size = field.nbytes if isinstance(field, memoryview) else len(field)
            mac.update(size.to_bytes(4, "big"))
            mac.update(field)
    try:
        mac.verify(parsed.mac)
    except InvalidSignature:
        if parsed.header.encrypted:
            raise KeyFormatError(
                "wrong passphrase for the PuTTY key (or the file was altered: its MAC does not "
                "match)"
            ) from None
        raise KeyFormatError(
            "the PuTTY key's MAC does not match: the file was altered or is damaged"
        ) from None


def _private_key(
    parsed: _Parsed, blob: memoryview, unsafe_skip_rsa_key_validation: bool, arena: Arena | None
) -> PrivateKeyTypes:
    """The key from the (MAC-checked) private blob and the public blob."""
    public = _openssh.Reader(memoryview(parsed.public), "public blob", "PuTTY")
    private = _openssh.Reader(blob, "private blob", "PuTTY")
    if public.string() != memoryview(parsed.algorithm):
        raise KeyFormatError(
            "the PuTTY key's public blob is for another algorithm than its header says"
        )
    name = parsed.algorithm
    key: PrivateKeyTypes
    if name == b"ssh-ed25519" or name == b"ssh-ed448":
        seed, expected = private.string(), public.string()
        eddsa = ed25519.Ed25519PrivateKey if name == b"ssh-ed25519" else ed448.Ed448PrivateKey
        size = 32 if name == b"ssh-ed25519" else 57
        if seed.nbytes != size:
            raise KeyFormatError(
                f"the PuTTY {name.decode()} key's private part is not {size} bytes"
            )
        key = eddsa.from_private_bytes(seed)
        if key.public_key().public_bytes_raw() != expected:
            raise KeyFormatError(
                "the PuTTY key's private part does not match its public part: it is corrupt"
            )
    elif name.startswith(b"ecdsa-sha2-"):
        curve, point, scalar = public.string(), public.string(), private.string()
        key = _openssh.load_der(_openssh.ec_der(curve, point, scalar, arena), False)
    elif name == b"ssh-rsa":
        e, n = public.string(), public.string()
        d, p, q, iqmp = (private.string() for _ in range(4))
        der = _openssh.rsa_der(n, e, d, iqmp, p, q, arena)
        key = _openssh.load_der(der, unsafe_skip_rsa_key_validation)
    elif name == b"ssh-dss":
        p, q, g, y = (public.string() for _ in range(4))
        key = _openssh.load_der(_openssh.dsa_der(p, q, g, y, private.string(), arena), False)
    else:
        raise KeyFormatError(
            f"PuTTY key type {name.decode()!r} is not supported (RSA, DSA, ECDSA on NIST curves, "
            "Ed25519 and Ed448 are)"
        )
    if private.left() >= _BLOCK:
        raise KeyFormatError("the PuTTY key's private blob has data after the key: it is corrupt")
    if not name.startswith(b"ssh-ed") and _openssh.public_blob(key) != parsed.public:
        raise KeyFormatError(
            "the PuTTY key's private part does not match its public part: it is corrupt"
        )
    return key
