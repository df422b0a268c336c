"""Extension modules of bootstorm.

Compiler directives live here and nowhere else. Switches (environment variables):
  BOOTSTORM_DEBUG=1     -O0 -g, Cython line tracing (coverage/profiling of .pyx code)
                        and annotate HTML next to each .pyx (`cython -a` view of the hot path)
  BOOTSTORM_LIMITED_API=1  Python Limited API build, one cp311-abi3 wheel (docs/wheels.md)
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BOOTSTORM_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": False,  # lengths are checked once at each packet's edge
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}
macros = []
cflags = ["-O2", "-Wall", "-Wno-unused-function"]
if DEBUG:
    directives.update(linetrace=True, profile=True)
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    cflags = ["-O0", "-g", "-Wall"]

# --- Limited API (abi3): opt-in, measured in docs/wheels.md ---------------------------------
# Compiles every extension against CPython 3.11's stable ABI (Cython 3's limited API mode)
# and tags the wheel cp311-abi3, one wheel for 3.11 and later. Transfers run at the same
# speed, but Python-level calls (parse_request, negotiate, ...) are 8-28% slower: not default.
LIMITED_API = os.environ.get("BOOTSTORM_LIMITED_API") == "1"
wheel_options = {}
if LIMITED_API:
    if sys.version_info < (3, 11):
        sys.exit("BOOTSTORM_LIMITED_API=1 needs Python >= 3.11 to build")
    macros += [("Py_LIMITED_API", "0x030B0000")]
    wheel_options = {"bdist_wheel": {"py_limited_api": "cp311"}}
# ---------------------------------------------------------------------------------------------


def native(name, c_sources=()):
    return Extension(
        f"bootstorm._native.{name}",
        [f"src/bootstorm/_native/{name}.pyx", *c_sources],
        include_dirs=["ext", "src/bootstorm/_native"],
        define_macros=macros,
        extra_compile_args=cflags,
        py_limited_api=LIMITED_API,
    )


setup(
    ext_modules=cythonize(
        [native("tftp", ["ext/udpio.c", "ext/fsopen.c"]), native("dhcp")],
        compiler_directives=directives,
        annotate=DEBUG,
    ),
    options=wheel_options,
)
