"""Build the compiled kernels of klfast.

The kernels live in ``src/`` and are compiled into ``klfast._kernels``.

* ``-O3``, no ``-ffast-math`` (it breaks the NaN/inf checks fused into the
  kernels) and no ``-march=native``: the default build runs on any x86-64 CPU.
* OpenMP is used when the compiler supports it; otherwise the kernels build
  serially (``klfast.show_config()`` reports which). Set ``KLFAST_NO_OPENMP=1``
  to force a serial build.
* No debug information (``-g0``, after Python's own ``-g``): it took a third
  of the compile time. Set ``KLFAST_DEBUG_INFO=1`` to keep Python's flags.
* The two extensions compile in parallel (one job per CPU, at most one per
  extension; ``build_ext --parallel N`` overrides).
* Cython runs when the extensions are built, not when setup.py is loaded: the
  extensions keep their ``.pyx`` sources, so an sdist lists (and ships) them
  instead of the generated ``.c`` files, and making one runs no Cython.
"""
import os
import sys
import tempfile

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BASE_ARGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]
NO_DEBUG_ARGS = ["-g0"]
OPENMP_ARGS = ["-fopenmp"]
CYTHON_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def _compiler_accepts(compiler, args, code):
    """Compile and link a tiny program with ``args``; True when it works."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(code)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=args)
        except Exception:
            return False
    return True


OPENMP_PROBE = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""


class BuildExt(build_ext):
    def build_extensions(self):
        from Cython.Build import cythonize

        if not self.parallel:
            self.parallel = max(1, min(len(self.extensions), os.cpu_count() or 1))
        # keep setuptools' Extension objects (it has set attributes on them): take
        # only the generated .c sources from cythonize's copies
        generated = {ext.name: ext.sources
                     for ext in cythonize(self.extensions, compiler_directives=CYTHON_DIRECTIVES,
                                          nthreads=self.parallel if os.name == "posix" else 0)}
        for ext in self.extensions:
            ext.sources = generated[ext.name]
        is_msvc = self.compiler.compiler_type == "msvc"
        args = [] if is_msvc else list(BASE_ARGS)
        if not is_msvc and os.environ.get("KLFAST_DEBUG_INFO", "") in ("", "0"):
            args += NO_DEBUG_ARGS
        link_args = []
        want_openmp = os.environ.get("KLFAST_NO_OPENMP", "") in ("", "0")
        omp_args = ["/openmp"] if is_msvc else OPENMP_ARGS
        if want_openmp and _compiler_accepts(self.compiler, omp_args, OPENMP_PROBE):
            args += omp_args
            link_args += [] if is_msvc else omp_args
        else:
            print("klfast: building without OpenMP (kernels run on one thread)", file=sys.stderr)
        flags = " ".join(args)
        for ext in self.extensions:
            ext.extra_compile_args = args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
            ext.define_macros.append(("KLFAST_COMPILE_ARGS", '"%s"' % flags.replace('"', "")))
        super().build_extensions()


extensions = [
    Extension(
        "klfast._kernels",
        sources=["src/_kernels.pyx"],
        include_dirs=[np.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        depends=["src/klfast_config.h", "src/klfast_rows.h", "src/klfast_isa_impl.h",
                 "src/klfast_measures_impl.h"],
    ),
    Extension(
        "klfast._loss_kernels",
        sources=["src/_loss_kernels.pyx"],
        include_dirs=[np.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        depends=["src/klfast_config.h", "src/klfast_loss.h", "src/klfast_loss_isa_impl.h",
                 "src/klfast_loss_impl.h"],
    ),
]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
