"""Benchmarks: securemem against libsodium, OpenSSL's secure heap, mmap+mlock and bytearray.

Run ``python -m benchmarks`` (see benchmarks/README.md). Not part of the installed package.
"""
