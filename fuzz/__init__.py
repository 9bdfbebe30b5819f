"""Fuzzing securemem's public API (outside the package; see fuzz/README.md)."""
