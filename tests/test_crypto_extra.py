"""Without pyca/cryptography, securemem works and securemem.crypto says what to install.

Each child hides cryptography with an import hook that fails its import exactly as the
import system does for a package that is not installed (ModuleNotFoundError with the
module's name), and checks first that cryptography really cannot be imported.
"""

from __future__ import annotations

import json

from tests.conftest import run_python

HIDE = """
import json, sys

class Hidden:  # a meta path finder that finds nothing under the hidden name
    def find_spec(self, name, path=None, target=None):
        if name == HIDDEN or name.startswith(HIDDEN + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hidden())
try:
    __import__(HIDDEN)
    raise SystemExit(f"{HIDDEN} is still importable")
except ModuleNotFoundError:
    pass

import securemem

with securemem.SecureBytes(b"works without it") as secret:
    core = secret == b"works without it"
try:
    import securemem.crypto
    raise SystemExit("securemem.crypto imported")
except ImportError as error:
    print(json.dumps({"core": core, "type": type(error).__name__, "name": error.name,
                      "message": str(error)}))
"""


def _import_crypto_without(hidden: str) -> dict[str, object]:
    result = run_python(f"HIDDEN = {hidden!r}\n{HIDE}")
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_without_cryptography_the_error_names_the_extra_to_install() -> None:
    report = _import_crypto_without("cryptography")
    assert report["core"] is True
    assert report["type"] == "ModuleNotFoundError"
    assert report["name"] == "cryptography"
    assert "pip install 'securemem[crypto]'" in str(report["message"])


def test_a_cryptography_without_the_modules_used_also_names_the_extra() -> None:
    # An old release lacks a module securemem.crypto imports: installing the extra upgrades it.
    report = _import_crypto_without("cryptography.hazmat.primitives.ciphers.aead")
    assert report["name"] == "cryptography.hazmat.primitives.ciphers.aead"
    assert "pip install 'securemem[crypto]'" in str(report["message"])
