from setuptools import setup

setup(cffi_modules=["securemem/_native_build.py:ffibuilder"])
