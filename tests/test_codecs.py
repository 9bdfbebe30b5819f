"""Hex and base64 straight into locked memory: against the standard library, under a process
scan, against every byte value, and disassembled (securemem/_codecs.py, securemem/_c/codec.c)."""

from __future__ import annotations

import array
import base64
import binascii
import mmap
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from securemem._native import ffi, lib

from securemem import SecureBytes, SecureBytesClosedError
from securemem._codecs import decode_base64_region
from tests.conftest import REPO, child_env
from tests.memscan import Marker

WHITESPACE = b" \t\n\x0b\x0c\r"  # what bytes.fromhex skips
HEX_DIGITS = b"0123456789abcdefABCDEF"
STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
URLSAFE = STANDARD[:62] + b"-_"

# Every error message with its offset blanked: an error may say this and nothing else, so no
# byte of the text can ever be echoed in one.
ERROR_TEMPLATES = {
    "invalid hex at offset N: a character that is not hex (allowed: 0-9, a-f, A-F, and "
    "whitespace). Nothing was decoded.",
    "invalid hex at offset N: whitespace between the two digits of a byte (whitespace may only "
    "separate bytes). Nothing was decoded.",
    "invalid hex at offset N: the text ends in the middle of a byte: an odd number of hex "
    "digits; is a digit missing? Nothing was decoded.",
    "invalid base64 at offset N: a character that is not base64 (allowed: A-Z, a-z, 0-9 and "
    "+ / (or - _ with urlsafe=True), = for padding, and whitespace). Nothing was decoded.",
    "invalid base64 at offset N: '=' padding where none may be (padding only ends the last "
    "group of four symbols, as '==' after two or '=' after three). Nothing was decoded.",
    "invalid base64 at offset N: data after the '=' padding; is this two base64 texts run "
    "together? Nothing was decoded.",
    "invalid base64 at offset N: the text ends in the middle of a group of four symbols: is "
    "the '=' padding missing, or the text cut short? Nothing was decoded.",
    "the text holds a non-ASCII character at offset N: hex and base64 text is ASCII only",
}


def assert_no_echo(error: ValueError) -> int:
    """The message is one of the fixed templates; returns the offset it names."""
    message = str(error)
    blanked = re.sub(r"offset \d+", "offset N", message, count=1)
    assert blanked in ERROR_TEMPLATES, message
    found = re.search(r"offset (\d+)", message)
    assert found is not None
    return int(found.group(1))


def hex_error(text: str | bytes) -> tuple[int, str] | None:
    """Where hex text goes wrong and how, by the grammar securemem documents (the one
    bytes.fromhex accepts): pairs of digits, whitespace only between pairs. None: it is valid.

    The tests check securemem's error against this, never against the message text of
    bytes.fromhex (CPython's wording and offsets are its own, and change between releases).
    """
    chars = text.decode("latin-1") if isinstance(text, bytes) else text
    digits, spaces = HEX_DIGITS.decode(), WHITESPACE.decode()
    at = 0
    while True:
        while at < len(chars) and chars[at] in spaces:
            at += 1
        if at == len(chars):
            return None
        if chars[at] not in digits:
            return at, "a character that is not hex"
        if at + 1 == len(chars):
            return at + 1, "the text ends in the middle of a byte"
        if chars[at + 1] in spaces:
            return at + 1, "whitespace between the two digits of a byte"
        if chars[at + 1] not in digits:
            return at + 1, "a character that is not hex"
        at += 2


def assert_hex_error(error: ValueError, text: str | bytes) -> None:
    """securemem's error names the offset and the kind of mistake, and echoes nothing."""
    expected = hex_error(text)
    assert expected is not None, text
    offset, kind = expected
    assert assert_no_echo(error) == offset, (text, str(error))
    assert f"invalid hex at offset {offset}: {kind}" in str(error), (text, str(error))


def decoded(secret: SecureBytes) -> bytes:
    """The secret's bytes, for comparing with the standard library (test data only)."""
    with secret:
        return bytes(secret.view())


# -- the C steps against Python, for every byte value ---------------------------------------


def test_every_byte_value_decodes_as_python_says() -> None:
    for code in range(256):
        hex_value = lib.sm_hex_digit_value(code)
        if code in HEX_DIGITS:
            assert hex_value == int(chr(code), 16), code
        else:
            assert hex_value == 0x100, code
        for alphabet in (STANDARD, URLSAFE):
            value = lib.sm_base64_symbol_value(code, alphabet[62], alphabet[63])
            assert value == (alphabet.index(code) if code in alphabet else 0x100), (code, alphabet)
        assert lib.sm_codec_is_space(code) == (code in WHITESPACE), code


def test_every_digit_encodes_as_python_says() -> None:
    for nibble in range(16):
        assert lib.sm_hex_digit_char(nibble) == b"0123456789abcdef"[nibble]
    for sextet in range(64):
        assert lib.sm_base64_symbol_char(sextet, ord("+"), ord("/")) == STANDARD[sextet]
        assert lib.sm_base64_symbol_char(sextet, ord("-"), ord("_")) == URLSAFE[sextet]


def test_whitespace_is_what_bytes_fromhex_skips() -> None:
    for code in range(256):
        text = "00" + chr(code) + "11"
        try:
            expected: bytes | None = bytes.fromhex(text)
        except ValueError:
            expected = None
        if expected is None:
            assert code not in WHITESPACE
            given_text = text if code < 128 else text.encode("latin-1")
            with pytest.raises(ValueError) as caught:
                SecureBytes.from_hex(given_text)
            assert_hex_error(caught.value, given_text)
        else:
            assert code in WHITESPACE
            assert decoded(SecureBytes.from_hex(text)) == expected == b"\x00\x11"


# -- hex against bytes.fromhex ---------------------------------------------------------------


def spaced(draw: st.DrawFn, pieces: list[str], *, inside: bool) -> str:
    """``pieces`` joined with random runs of whitespace between them (and at the ends)."""
    gap = st.text(alphabet=WHITESPACE.decode(), max_size=3)
    out = [draw(gap)]
    for piece in pieces:
        if inside:
            out.extend(char + draw(gap) for char in piece)
        else:
            out.extend((piece, draw(gap)))
    return "".join(out)


@st.composite
def hex_texts(draw: st.DrawFn) -> tuple[bytes, str]:
    data = draw(st.binary(max_size=100))
    pairs = [format(byte, "02x") for byte in data]
    pairs = [pair.upper() if draw(st.booleans()) else pair for pair in pairs]
    return data, spaced(draw, pairs, inside=False)


@given(hex_texts())
@example((b"", ""))
@example((b"\x00", " 00\r\n"))
def test_hex_round_trip_against_the_standard_library(case: tuple[bytes, str]) -> None:
    data, text = case
    assert bytes.fromhex(text) == data
    assert decoded(SecureBytes.from_hex(text)) == data
    assert decoded(SecureBytes.from_hex(text.encode())) == data
    with SecureBytes(data) as secret, secret.to_hex() as encoded:
        assert bytes(encoded.view()) == data.hex().encode() == binascii.hexlify(data)
        assert decoded(SecureBytes.from_hex(encoded)) == data


@settings(max_examples=400)
@given(st.text(alphabet="0123456789abcdefABCDEFgG \t\n\x0b\x0c\r\x00=-é", max_size=24))
@example("abc")
@example("a bc")
@example("ab c")
@example("zz")
def test_any_text_decodes_as_bytes_fromhex_or_fails_the_same_way(text: str) -> None:
    # Accepted and decoded as bytes.fromhex does, or refused where bytes.fromhex refuses;
    # the error's offset and kind come from the grammar (hex_error), not the stdlib's message.
    try:
        expected: bytes | None = bytes.fromhex(text)
    except ValueError:
        expected = None
    if expected is not None:
        assert hex_error(text) is None
        assert decoded(SecureBytes.from_hex(text)) == expected
        return
    with pytest.raises(ValueError) as caught:
        SecureBytes.from_hex(text)
    if text.isascii():
        assert_hex_error(caught.value, text)
    else:  # refused before decoding, at its first non-ASCII character
        offset = assert_no_echo(caught.value)
        assert offset == min(index for index, char in enumerate(text) if not char.isascii())


# -- base64 against base64.b64decode(validate=True) ------------------------------------------


def stdlib_base64(text: bytes, *, urlsafe: bool) -> bytes | None:
    """What securemem must return: the standard library's strict decoding of the text without
    its whitespace; None where it must raise ValueError."""
    symbols = bytes(code for code in text if code not in WHITESPACE)
    if urlsafe:
        if b"+" in symbols or b"/" in symbols:
            return None  # the other alphabet: urlsafe_b64decode lets it through, we do not
        symbols = symbols.translate(bytes.maketrans(b"-_", b"+/"))
    if re.fullmatch(rb"(?:[A-Za-z0-9+/]{4})+=+", symbols):
        return None  # Python 3.11 accepts '=' after a complete group; securemem refuses it
    try:
        return base64.b64decode(symbols, validate=True)
    except binascii.Error:
        return None


@st.composite
def base64_texts(draw: st.DrawFn, *, urlsafe: bool) -> tuple[bytes, str]:
    data = draw(st.binary(max_size=100))
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    if draw(st.booleans()):  # PEM-style lines
        width = draw(st.integers(1, 80))
        ending = draw(st.sampled_from(["\n", "\r\n"]))
        lines = [encoded[start : start + width] for start in range(0, len(encoded), width)]
        return data, ending.join(lines) + ending
    return data, spaced(draw, list(encoded), inside=True)


@given(base64_texts(urlsafe=False))
@example((b"", ""))
@example((b"A", "QQ=\n="))
def test_base64_round_trip_against_the_standard_library(case: tuple[bytes, str]) -> None:
    data, text = case
    assert stdlib_base64(text.encode(), urlsafe=False) == data
    assert decoded(SecureBytes.from_base64(text)) == data
    assert decoded(SecureBytes.from_base64(bytearray(text.encode()))) == data
    with SecureBytes(data) as secret, secret.to_base64() as encoded:
        assert bytes(encoded.view()) == base64.b64encode(data)
        assert decoded(SecureBytes.from_base64(encoded)) == data


@given(base64_texts(urlsafe=True))
def test_urlsafe_base64_round_trip_against_the_standard_library(case: tuple[bytes, str]) -> None:
    data, text = case
    assert base64.urlsafe_b64decode(re.sub(r"\s", "", text)) == data
    assert decoded(SecureBytes.from_base64(text, urlsafe=True)) == data
    with SecureBytes(data) as secret, secret.to_base64(urlsafe=True) as encoded:
        assert bytes(encoded.view()) == base64.urlsafe_b64encode(data)
        assert decoded(SecureBytes.from_base64(encoded, urlsafe=True)) == data


@settings(max_examples=600)
@given(st.binary(max_size=14).map(bytes), st.booleans())
def test_any_bytes_decode_as_the_standard_library_or_fail(text: bytes, urlsafe: bool) -> None:
    # Arbitrary bytes rarely form valid base64; the test below is where the near misses are.
    check_against_stdlib(text, urlsafe)


@settings(max_examples=1500)
@given(st.text(alphabet="AQw+/-_= \n\r", max_size=14), st.booleans())
@example("QUJD=", False)  # the one quirk of 3.11's validate=True that is refused
@example("QUJD==", False)
@example("QQ==QQ==", False)
@example("QQ===", False)
@example("QQ=A", False)
@example("=QQ=", False)
@example("Q", False)
@example("QQ= =", False)
@example("Pz8/", True)  # the standard alphabet, refused with urlsafe=True
def test_near_misses_decode_as_the_standard_library_or_fail(text: str, urlsafe: bool) -> None:
    check_against_stdlib(text.encode(), urlsafe)


def check_against_stdlib(text: bytes, urlsafe: bool) -> None:
    expected = stdlib_base64(text, urlsafe=urlsafe)
    if expected is not None:
        assert decoded(SecureBytes.from_base64(text, urlsafe=urlsafe)) == expected
        return
    with pytest.raises(ValueError) as caught:
        SecureBytes.from_base64(text, urlsafe=urlsafe)
    assert assert_no_echo(caught.value) <= len(text)


@pytest.mark.parametrize(
    ("text", "offset", "kind"),
    [
        ("QQ=", 3, "ends in the middle of a group"),  # padding cut short
        ("QQ", 2, "ends in the middle of a group"),  # no padding
        ("QUJDR", 5, "ends in the middle of a group"),  # one symbol too many
        ("QQ==QQ==", 4, "data after the '=' padding"),
        ("QQ=A", 3, "data after the '=' padding"),
        ("=QQ=", 0, "'=' padding where none may be"),
        ("QUJD=", 4, "'=' padding where none may be"),
        ("QQ===", 4, "'=' padding where none may be"),
        ("Q===", 1, "'=' padding where none may be"),
        ("QU*D", 2, "not base64"),
        ("QUJ\x00", 3, "not base64"),
        ("QU\nJD\n\nQ", 8, "ends in the middle of a group"),
    ],
)
def test_base64_errors_name_the_offset_and_the_kind(text: str, offset: int, kind: str) -> None:
    with pytest.raises(ValueError, match=re.escape(kind)) as caught:
        SecureBytes.from_base64(text)
    assert assert_no_echo(caught.value) == offset


# -- what the text may be --------------------------------------------------------------------


def text_kinds() -> list[tuple[str, Callable[[bytes], Any]]]:
    def in_secure_bytes(text: bytes) -> SecureBytes:
        return SecureBytes(text)

    def in_mmap(text: bytes) -> mmap.mmap:
        mapped = mmap.mmap(-1, max(len(text), 1))
        mapped[: len(text)] = text
        return mapped

    class Text(str):
        """A str subclass: CPython stores it apart from its object, still read in place."""

    return [
        ("str", bytes.decode),
        ("str subclass", lambda text: Text(text.decode())),
        ("bytes", bytes),
        ("bytearray", bytearray),
        ("memoryview", memoryview),
        ("memoryview slice", lambda text: memoryview(b"##" + text + b"##")[2:-2]),
        ("array", lambda text: array.array("B", text)),
        ("SecureBytes", in_secure_bytes),
        ("mmap (whitespace after the text)", lambda text: in_mmap(text.ljust(4096))),
    ]


@pytest.mark.parametrize(("kind", "make"), text_kinds(), ids=[kind for kind, _ in text_kinds()])
def test_text_may_be_any_of(kind: str, make: Callable[[bytes], Any]) -> None:
    assert decoded(SecureBytes.from_hex(make(b"00ff 10"))) == b"\x00\xff\x10"
    assert decoded(SecureBytes.from_base64(make(b"AP8Q"))) == b"\x00\xff\x10"
    assert decoded(SecureBytes.from_base64(make(b"AP8Q\n"), urlsafe=True)) == b"\x00\xff\x10"


def test_empty_text_is_an_empty_secret() -> None:
    for text in ("", b"", bytearray(), " \n", SecureBytes(0)):
        for decode in (SecureBytes.from_hex, SecureBytes.from_base64):
            secret = decode(text)
            assert isinstance(secret, SecureBytes)
            assert len(secret) == 0
            secret.close()
    with SecureBytes(0) as empty:
        assert len(empty.to_hex()) == len(empty.to_base64()) == 0


def test_other_types_raise_type_error_naming_them() -> None:
    for text in (None, 12, ["00"], 1.5):
        with pytest.raises(TypeError, match=type(text).__name__):
            SecureBytes.from_hex(text)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=type(text).__name__):
            SecureBytes.from_base64(text)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="urlsafe must be True or False"):
        SecureBytes.from_base64("AA==", urlsafe=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="contiguous"):
        SecureBytes.from_hex(memoryview(b"0a0b0c0d")[::2])


def test_non_ascii_str_is_refused_at_its_offset_without_echo() -> None:
    with pytest.raises(ValueError) as caught:
        SecureBytes.from_hex("00ff\u00e9\u00e9")
    assert assert_no_echo(caught.value) == 4
    with pytest.raises(ValueError) as caught:
        SecureBytes.from_base64("QUJD\U0001f511")
    assert assert_no_echo(caught.value) == 4


def test_a_closed_secret_as_text_raises_closed() -> None:
    text = SecureBytes(b"00ff")
    text.close()
    with pytest.raises(SecureBytesClosedError):
        SecureBytes.from_hex(text)
    with pytest.raises(SecureBytesClosedError):
        text.to_base64()


def test_results_are_independent_secrets_in_the_given_arena() -> None:
    from securemem import Arena

    arena = Arena()
    secret = SecureBytes.from_hex("0102", arena=arena)
    assert arena.stats().allocations == 1
    encoded = secret.to_hex()  # the same arena as its source
    assert arena.stats().allocations == 2
    secret.close()
    assert encoded == b"0102"
    encoded.close()
    other = SecureBytes.from_base64("AQI=", arena=arena)
    assert arena.stats().allocations == 1
    assert other == b"\x01\x02"
    other.close()
    assert arena.stats().allocations == 0
    arena.release_reserve()


# -- the region decoder, for PEM bodies ------------------------------------------------------

PEM = b"-----BEGIN KEY-----\r\nAAEC\r\nAw==\r\n-----END KEY-----\r\n"
BODY = PEM.index(b"AAEC")
BODY_END = PEM.index(b"-----END")


@pytest.mark.parametrize("container", [bytes, bytes.decode, SecureBytes, memoryview])
def test_region_decodes_only_the_region(container: Callable[[bytes], Any]) -> None:
    buffer = container(PEM)
    region = decode_base64_region(SecureBytes, buffer, BODY, BODY_END - BODY)
    assert decoded(region) == b"\x00\x01\x02\x03"
    with pytest.raises(ValueError, match="not base64") as caught:
        decode_base64_region(SecureBytes, buffer, BODY, BODY_END - BODY + 1)  # one '-' more
    assert assert_no_echo(caught.value) == BODY_END  # offsets count from the buffer's start


def test_region_outside_the_buffer_is_an_index_error() -> None:
    for offset, length in ((-1, 2), (0, len(PEM) + 1), (len(PEM), 1), (3, -1)):
        with pytest.raises(IndexError, match=f"{len(PEM)}-byte buffer"):
            decode_base64_region(SecureBytes, PEM, offset, length)
    assert len(decode_base64_region(SecureBytes, PEM, len(PEM), 0)) == 0
    assert len(decode_base64_region(SecureBytes, "", 0, 0)) == 0
    with pytest.raises(TypeError, match="offset must be an int"):
        decode_base64_region(SecureBytes, PEM, 1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="length must be an int"):
        decode_base64_region(SecureBytes, PEM, 1, True)


# -- the C guard against a text that changes between the two passes --------------------------


@pytest.mark.parametrize("capacity", [0, 1, 3, 4, 5])
@pytest.mark.parametrize(
    ("decoder", "text"), [("hex", b"00112233"), ("base64", b"ABEiMw==")], ids=["hex", "base64"]
)
def test_the_decoder_never_writes_past_its_capacity(
    decoder: str, text: bytes, capacity: int
) -> None:
    # Both texts decode to 4 bytes: a smaller capacity is a text that grew since the sizing
    # pass, a larger one a text that shrank.
    written = ffi.new("size_t *")
    error_at = ffi.new("size_t *")
    out = ffi.new("unsigned char[]", b"\xee" * 8)
    if decoder == "hex":
        status = lib.sm_hex_decode(out, capacity, text, len(text), written, error_at)
    else:
        status = lib.sm_base64_decode(
            out, capacity, text, len(text), ord("+"), ord("/"), written, error_at
        )
    after = bytes(ffi.buffer(out, 8))
    if capacity == 4:
        assert status == lib.SM_CODEC_OK
        assert written[0] == 4
        assert after == b"\x00\x11\x22\x33" + b"\xee" * 4
    else:
        assert status == lib.SM_CODEC_OUTPUT_SIZE
        assert after[capacity:] == b"\xee" * (8 - capacity), "wrote past the capacity"


def test_a_text_changed_by_another_thread_never_corrupts_memory() -> None:
    # Two texts of one length that decode to different sizes: 8192 and 4096 bytes.
    long_text = b"00" * 8192
    short_text = b"00  " * 4096
    text = bytearray(long_text)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            text[:] = short_text
            text[:] = long_text

    flipper = threading.Thread(target=flip)
    flipper.start()
    outcomes = {"decoded": 0, "changed": 0, "torn": 0}
    try:
        for _ in range(300):
            try:
                secret = SecureBytes.from_hex(text)
            except RuntimeError as error:
                assert "changed while it was being decoded" in str(error)
                outcomes["changed"] += 1
            except ValueError as error:  # caught half-copied: e.g. "00 " then "0000..."
                assert_no_echo(error)
                outcomes["torn"] += 1
            else:
                with secret:
                    assert 4096 <= len(secret) <= 8192
                    assert secret.view().tobytes() == bytes(len(secret))  # zeros decoded
                outcomes["decoded"] += 1
    finally:
        stop.set()
        flipper.join()
    assert sum(outcomes.values()) == 300, outcomes


def test_a_secret_text_closed_by_another_thread_mid_decode() -> None:
    # The decoder reads through a view, which keeps the memory from being reused: a close
    # racing with it makes it read zeros (an invalid text), never another secret's bytes.
    outcomes = {"decoded": 0, "changed": 0, "invalid": 0}
    for _ in range(100):
        text = SecureBytes(b"ab" * 32768)
        closer = threading.Thread(target=text.close)
        closer.start()
        try:
            secret = SecureBytes.from_hex(text)
        except SecureBytesClosedError:
            outcomes["invalid"] += 1  # closed before the call began
        except RuntimeError:
            outcomes["changed"] += 1  # wiped between the two passes
        except ValueError as error:
            assert_no_echo(error)  # wiped during the first pass: a zero byte is not hex
            outcomes["invalid"] += 1
        else:
            with secret:
                assert secret == b"\xab" * 32768
            outcomes["decoded"] += 1
        finally:
            closer.join()
    assert sum(outcomes.values()) == 100, outcomes


# -- no copy outside locked memory (process scans) -------------------------------------------

HEX_CHARS = b"0123456789abcdef"


def hex_of(marker: Marker) -> bytearray:
    """The marker as hex text, made from small ints: no copy of the marker's bytes anywhere."""
    view = marker.view()
    text = bytearray(2 * marker.length)
    for index in range(marker.length):
        byte = view[index]
        text[2 * index] = HEX_CHARS[byte >> 4]
        text[2 * index + 1] = HEX_CHARS[byte & 0x0F]
    return text


def base64_of(marker: Marker) -> bytearray:
    """The marker as base64 text, from small ints only (every value stays below 256)."""
    view = marker.view()
    assert marker.length % 3 == 0
    text = bytearray()
    for index in range(0, marker.length, 3):
        first, second, third = view[index], view[index + 1], view[index + 2]
        text.append(STANDARD[first >> 2])
        text.append(STANDARD[((first & 0x03) << 4) | (second >> 4)])
        text.append(STANDARD[((second & 0x0F) << 2) | (third >> 6)])
        text.append(STANDARD[third & 0x3F])
    return text


@pytest.fixture
def marker() -> Iterator[Marker]:
    with Marker(48) as fresh:
        assert fresh.scan().found == []
        yield fresh


def test_scan_from_hex_leaves_no_decoded_copy_and_bytes_fromhex_does(marker: Marker) -> None:
    text = hex_of(marker)
    secret = SecureBytes.from_hex(text)
    assert marker.scan().found == [secret.address]
    secret.close()
    assert marker.scan().found == []
    # The control: the standard library's decoder leaves the decoded secret in the heap, and
    # this scan sees it.
    control = bytes.fromhex(text.decode())
    found = marker.scan().found
    assert len(found) >= 1, "the scan did not see bytes.fromhex's copy"
    del control


def test_scan_from_base64_leaves_no_decoded_copy_and_b64decode_does(marker: Marker) -> None:
    text = base64_of(marker)
    for urlsafe in (False, True):
        secret = SecureBytes.from_base64(
            text if not urlsafe else text.translate(bytes.maketrans(b"+/", b"-_")),
            urlsafe=urlsafe,
        )
        assert marker.scan().found == [secret.address]
        secret.close()
        assert marker.scan().found == []
    control = base64.b64decode(text, validate=True)
    assert len(marker.scan().found) >= 1, "the scan did not see b64decode's copy"
    del control


def test_scan_a_str_is_read_in_place(marker: Marker) -> None:
    # The encoded text is as secret as what it encodes: from_hex(str) must not copy it either.
    text = hex_of(marker)
    with Marker.copy_of(text) as text_marker:
        as_str = text.decode("ascii")
        text[:] = bytes(len(text))
        in_str = text_marker.scan().found
        assert len(in_str) == 1, "the str should hold the only copy of the hex text"
        secret = SecureBytes.from_hex(as_str)
        assert marker.scan().found == [secret.address]
        assert text_marker.scan().found == in_str, "the hex text was copied"
        secret.close()
        # The control: encoding the str, as a decoder without in-place reading would, copies it.
        control = as_str.encode("ascii")
        assert len(text_marker.scan().found) == 2
        del control


def test_scan_secret_text_in_and_out(marker: Marker) -> None:
    text = base64_of(marker)
    with SecureBytes(text) as locked_text, Marker.copy_of(text) as text_marker:
        text[:] = bytes(len(text))
        assert text_marker.scan().found == [locked_text.address]
        secret = SecureBytes.from_base64(locked_text)
        assert marker.scan().found == [secret.address]
        # Out again: the encoding exists only in the new secret and the text it came from.
        encoded = secret.to_base64()
        assert sorted(text_marker.scan().found) == sorted([locked_text.address, encoded.address])
        hex_encoded = secret.to_hex()
        with Marker.copy_of(hex_encoded.view()) as hex_marker:
            assert hex_marker.scan().found == [hex_encoded.address]
        assert marker.scan().found == [secret.address]
        for each in (secret, encoded, hex_encoded):
            each.close()
        assert marker.scan().found == []


def test_scan_pem_region_decodes_into_locked_memory_only(marker: Marker) -> None:
    body = base64_of(marker)
    lines = b"\n".join(bytes(body[start : start + 16]) for start in range(0, len(body), 16))
    pem = SecureBytes(b"-----BEGIN KEY-----\n" + lines + b"\n-----END KEY-----\n")
    del lines  # the decoded marker is not in these (they are its base64)
    body[:] = bytes(len(body))
    start = 20
    length = pem.view().tobytes().index(b"-----END") - start
    secret = decode_base64_region(SecureBytes, pem, start, length)
    assert marker.scan().found == [secret.address]
    secret.close()
    pem.close()
    assert marker.scan().found == []


# -- constant time: what the compiler made of the per-symbol steps ---------------------------

CHECKED_STEPS = (
    "sm_codec_is_space",
    "sm_hex_digit_value",
    "sm_base64_symbol_value",
    "sm_hex_digit_char",
    "sm_base64_symbol_char",
)


def disassemble(function: str) -> list[tuple[str, str]]:
    """(mnemonic, operands) of each instruction of ``function`` in the built extension."""
    import securemem._native as native

    output = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--disassemble={function}", native.__file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # A stripped build (a wheel's) names its functions from the dynamic symbol table only,
    # with their version: <sm_hex_decode@@Base>.
    header = re.search(rf"<{re.escape(function)}(@@\w+)?>:\n", output)
    assert header, f"{function} is not in {native.__file__}"
    body = output[header.end() :].split("\n\n", 1)[0]
    instructions = []
    for line in body.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            mnemonic, _, operands = fields[1].strip().partition(" ")
            instructions.append((mnemonic, operands.strip()))
    assert instructions, f"no instructions found for {function}"
    return instructions


needs_x86_objdump = pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("objdump") is None,
    reason="reads x86-64 disassembly from objdump",
)


@needs_x86_objdump
@pytest.mark.parametrize("function", CHECKED_STEPS)
def test_per_symbol_steps_have_no_branch_and_read_no_memory(function: str) -> None:
    for mnemonic, operands in disassemble(function):
        assert not mnemonic.startswith(("j", "call", "loop")) or mnemonic == "ret", (
            f"{function} has a branch: {mnemonic} {operands}"
        )
        if mnemonic not in ("lea", "nop", "endbr64") and not mnemonic.startswith("nop"):
            # A constant at a fixed address (clang keeps its vector constants in memory: the
            # release wheel's build) is read the same whatever the byte is; a table lookup
            # needs the byte in the address, as a base or index register.
            data_addressed = re.sub(r"-?0x[0-9a-f]+\(%rip\)", "", operands)
            assert "(" not in data_addressed, (
                f"{function} reads memory (a table?): {mnemonic} {operands}"
            )


@needs_x86_objdump
@pytest.mark.parametrize(
    ("loop", "steps"),
    [
        ("sm_hex_decode", {"sm_codec_is_space", "sm_hex_digit_value"}),
        ("sm_base64_decode", {"sm_codec_is_space", "sm_base64_symbol_value"}),
        ("sm_hex_encode", {"sm_hex_digit_char"}),
        ("sm_base64_encode", {"sm_base64_symbol_char"}),
    ],
)
def test_loops_run_the_checked_steps(loop: str, steps: set[str]) -> None:
    # The steps are noinline: what the test above disassembled is what the loops run, not an
    # inlined copy the compiler may have compiled differently.
    called = {
        re.sub(r"@(plt|@\w+)$", "", target)
        for mnemonic, operands in disassemble(loop)
        if mnemonic == "call"
        for target in re.findall(r"<([^>+]+)>", operands)
    }
    assert steps <= called, f"{loop} calls {sorted(called)}"


def test_the_timing_benchmark_runs_and_reports_every_case() -> None:
    # Only the shape of the report: a timing verdict on a shared machine is not a test.
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "codec_timing.py"), "--samples", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [
        line for line in result.stdout.splitlines() if line.startswith(("hex", "base64", "control"))
    ]
    assert len(rows) == 4, result.stdout
    for row in rows:
        assert row.endswith(("no leak seen", "leak? (|t| > 4.5)", "LEAK (|t| > 10)")), row
