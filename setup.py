"""Extension modules of bootstorm.

Compiler directives live here and nowhere else. Switches (environment variables):
  BOOTSTORM_DEBUG=1     -O0 -g, Cython line tracing (coverage/profiling of .pyx code)
                        and annotate HTML next to each .pyx (`cython -a` view of the hot path)
"""
import os

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


def native(name, c_sources=()):
    return Extension(
        f"bootstorm._native.{name}",
        [f"src/bootstorm/_native/{name}.pyx", *c_sources],
        include_dirs=["ext", "src/bootstorm/_native"],
        define_macros=macros,
        extra_compile_args=cflags,
    )


setup(
    ext_modules=cythonize(
        [native("tftp", ["ext/udpio.c", "ext/fsopen.c"]), native("dhcp")],
        compiler_directives=directives,
        annotate=DEBUG,
    ),
)
