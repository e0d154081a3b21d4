"""The optional C extension of the filter's page loop (src/vmcorekit/filter/_pagepack.c).

optional=True: without a C compiler or Python's headers the build goes on without it, and the
filter uses its pure-Python path (same output bytes, slower). The codec libraries are opened at
run time, so no codec headers are needed.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("vmcorekit.filter._pagepack", ["src/vmcorekit/filter/_pagepack.c"],
                             libraries=["dl"], extra_compile_args=["-O2"], optional=True)])
