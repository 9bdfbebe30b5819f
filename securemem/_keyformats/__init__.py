"""Private key files in and out of locked memory: one module per format, one entry point.

:func:`load_private_key` and :func:`private_key_bytes` (in :mod:`._dispatch`) detect the
format and hand the bytes to the module that reads or writes it:

- :mod:`._pem`: PEM blocks and their base64 bodies, decoded into locked memory;
- :mod:`._legacypem`: OpenSSL's traditional encrypted PEM (``Proc-Type``/``DEK-Info``);
- :mod:`._openssh`: the ``openssh-key-v1`` container, decrypted in locked memory;
- :mod:`._pkcs12`: PKCS#12 bundles, their KDF costs checked before cryptography loads them;
- :mod:`._ecscalar`: EC scalars of another size than the curve's, rewritten in locked memory;
- :mod:`._identify`: what a file that is not a private key is (certificate, public key, ...);
- :mod:`._putty`: PuTTY ``.ppk`` files (v2, v3), MAC-checked and decrypted in locked memory;
- :mod:`._der`: DER built in locked memory; :mod:`._bignum`: RSA's CRT exponents for it (in C);
  :mod:`._derwalk`: the one DER reader, framing read in place (PKCS#8, PKCS#12, EC, identify);
- :mod:`._decrypt`: an encrypted part decrypted into locked memory (OpenSSH, legacy PEM, PuTTY).

What stays outside locked memory, per format, is listed in ``docs/key-formats.md``.
"""

from securemem._keyformats._dispatch import (
    Encoding,
    Password,
    RawAlgorithm,
    load_private_key,
    password_view,
    private_key_bytes,
)

__all__ = [
    "Encoding",
    "Password",
    "RawAlgorithm",
    "load_private_key",
    "password_view",
    "private_key_bytes",
]
