"""Build the compiled kernels of klfast.

Sources live in ``src/`` (see src/README.md). Three extension modules are built:
``klfast._kernels`` (the row kernels), ``klfast._pairwise`` (the all-pairs
kernels) and ``klfast._diagnostics`` (kernels for the tests and benchmarks).
All link the same objects of the
engine: one per instruction-set level (``src/levels/*.c``, each compiled with
its own flags) and the dispatch table (``src/engine/dispatch.c``).

* The levels (the engine's vector code, written out by hand): ``-O2
  -fpeel-loops`` where the compiler has ``-fpeel-loops`` (GCC: complete
  unrolling of the fixed short loops, as at ``-O3``). In A/B runs of the two
  builds it was as fast as ``-O3`` and compiled in about 60 % of the time; a
  compiler without the flag (clang) keeps ``-O3``.
* ``-O3``, no ``-ffast-math`` (it breaks the NaN/inf checks fused into the
  kernels) and no ``-march=native``: the default build runs on any CPU of its
  architecture. On x86-64 the AVX2 and AVX-512 levels are compiled with
  ``-march=x86-64-v3`` / ``-march=x86-64-v4`` in their own translation units
  and used only when the CPU runs them; a level the compiler cannot build is
  left out, and ``klfast.show_config()`` says why. On aarch64 the baseline
  level is NEON.
* The kernels run on klfast's own threads (src/engine/pool.h, pthreads).
  OpenMP, linked when the compiler supports it (GCC; clang with libomp), only
  gives their default number (``OMP_NUM_THREADS``, threadpoolctl); without it
  a call uses one thread unless ``num_threads=`` asks for more, and
  ``klfast.show_config()`` says why. ``KLFAST_NO_OPENMP=1`` leaves it out.
* No debug information (``-g0``, after Python's own ``-g``): it took a third
  of the compile time. ``KLFAST_DEBUG_INFO=1`` keeps Python's flags.
* ``KLFAST_WERROR=1`` compiles the engine (the levels and the dispatch table)
  with ``-Wall -Werror``: CI builds both its compilers' klfast that way.
* Every C file compiles in parallel (one job per CPU; ``build_ext --parallel
  N`` overrides), Cython included.
* Cython runs when the extensions are built, not when setup.py is loaded: an
  sdist ships the ``.pyx`` sources, not generated ``.c`` files.
"""
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BASE_ARGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]
LEVEL_OPT_ARGS = ["-O2", "-fpeel-loops"]  # after BASE_ARGS' -O3, for the levels only
# Every level function starts on a 64-byte line: the hot loops keep their
# alignment whatever else the extension holds (a change elsewhere moved a
# lanes function by 16 bytes, and an A/B of 10,000,000 x 10 on 2 threads
# read 1.08-1.16 with the same level code; aligned: 1.00).
LEVEL_ALIGN_ARGS = ["-falign-functions=64"]
# The same for the loops of the Cython modules (the row loop that calls a row
# function per row): a refactor of _kernels.pyx that left the loop's code as
# it was moved its head off a 64-byte line, and 10,000,000 x 8 read 1.02-1.03.
MODULE_ALIGN_ARGS = ["-falign-loops=64"]
NO_DEBUG_ARGS = ["-g0"]
OPENMP_ARGS = ["-fopenmp"]
CYTHON_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}
INCLUDE_DIRS = [np.get_include(), "src"]
MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]

# The x86-64 levels above the baseline: the flags of their translation unit,
# tried in order (-march=x86-64-vN needs GCC 11 or clang 12).
X86_LEVELS = {
    "avx2": [["-march=x86-64-v3"],
             ["-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mmovbe", "-mpopcnt"]],
    "avx512": [["-march=x86-64-v4", "-mprefer-vector-width=512"],
               ["-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mmovbe", "-mpopcnt",
                "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl",
                "-mprefer-vector-width=512"]],
}


def _try_compile(compiler, code, args, link=False):
    """Compile (and link) a tiny program with ``args``: None when it works,
    else the compiler's complaint in one line."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(code)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=args)
            if link:
                compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=args)
        except Exception as exc:  # CompileError, LinkError
            return " ".join(str(exc).split())[:120] or type(exc).__name__
    return None


OPENMP_PROBE = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""
X86_PROBE = "#if !defined(__x86_64__)\n#error not x86-64\n#endif\nint klfast_probe;\n"
VECTOR_PROBE = """
typedef double vd __attribute__((vector_size(32)));
vd klfast_probe(vd a, vd b) { return a / b; }
"""


class BuildExt(build_ext):
    def build_extensions(self):
        from Cython.Build import cythonize

        jobs = self.parallel or os.cpu_count() or 1
        # keep setuptools' Extension objects (it has set attributes on them): take
        # only the generated .c sources from cythonize's copies
        generated = {ext.name: ext.sources
                     for ext in cythonize(self.extensions, compiler_directives=CYTHON_DIRECTIVES,
                                          include_path=["src"],
                                          nthreads=jobs if os.name == "posix" else 0)}
        for ext in self.extensions:
            ext.sources = generated[ext.name]
        args = list(BASE_ARGS)
        if os.environ.get("KLFAST_DEBUG_INFO", "") in ("", "0"):
            args += NO_DEBUG_ARGS
        link_args, notes = [], []
        if os.name == "posix":  # the row loop's thread pool (src/engine/pool.h)
            args.append("-pthread")
            link_args.append("-pthread")
        if os.environ.get("KLFAST_NO_OPENMP", "") not in ("", "0"):
            notes.append("OpenMP: off (KLFAST_NO_OPENMP)")
        else:
            problem = _try_compile(self.compiler, OPENMP_PROBE, OPENMP_ARGS, link=True)
            if problem is None:
                args += OPENMP_ARGS
                link_args += OPENMP_ARGS
            else:
                notes.append(f"OpenMP: the compiler rejected -fopenmp ({problem})")
                print(f"klfast: building without OpenMP: {problem}", file=sys.stderr)

        # the levels: their sources and flags
        levels = [("baseline", [])]
        if _try_compile(self.compiler, X86_PROBE, args) is None:
            for name, candidates in X86_LEVELS.items():
                tried = []
                for flags in candidates:
                    problem = _try_compile(self.compiler, VECTOR_PROBE, args + flags)
                    if problem is None:
                        levels.append((name, flags))
                        break
                    tried.append(f"{' '.join(flags)}: {problem}")
                else:
                    notes.append(f"{name}: the compiler rejected its flags ({'; '.join(tried)})")
                    print(f"klfast: building without the {name} level", file=sys.stderr)
        else:
            notes.append("avx2, avx512: x86-64 only")

        level_opt = LEVEL_OPT_ARGS
        if _try_compile(self.compiler, "int klfast_probe;\n", args + level_opt + ["-Werror"]):
            level_opt = []  # (clang warns that it ignores -fpeel-loops)
        module_align = MODULE_ALIGN_ARGS
        if _try_compile(self.compiler, "int klfast_probe;\n", args + module_align + ["-Werror"]):
            module_align = []
        module_args = args + module_align
        flags = (" ".join(args) + f" (levels: {' '.join(level_opt + LEVEL_ALIGN_ARGS)})"
                 + (f" (modules: {' '.join(module_align)})" if module_align else ""))
        macros = MACROS + [("KLFAST_COMPILE_ARGS", '"%s"' % flags.replace('"', ""))]
        dispatch_macros = macros + [(f"KLFAST_LEVEL_{name.upper()}", "1") for name, _ in levels[1:]]
        dispatch_macros.append(("KLFAST_MISSING_LEVELS", '"%s"' % "; ".join(notes).replace('"', "'")))
        strict = ["-Wall", "-Werror"] if os.environ.get("KLFAST_WERROR", "") not in ("", "0") else []
        level_args = args + level_opt + LEVEL_ALIGN_ARGS
        engine = [(f"src/levels/{name}.c", level_args + level_flags + strict, macros)
                  for name, level_flags in levels]
        engine.append(("src/engine/dispatch.c", args + strict, dispatch_macros))
        modules = [(source, module_args, macros) for ext in self.extensions
                   for source in ext.sources]

        # every C file at once, in parallel
        def compile_one(job):
            source, extra, defines = job
            return self.compiler.compile([source], output_dir=self.build_temp, macros=defines,
                                         include_dirs=INCLUDE_DIRS, extra_postargs=extra)

        for source, _, _ in engine + modules:
            os.makedirs(os.path.join(self.build_temp, os.path.dirname(source)), exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            objects = dict(zip([source for source, _, _ in engine + modules],
                               pool.map(compile_one, engine + modules)))
        engine_objects = [obj for source, _, _ in engine for obj in objects[source]]
        for ext in self.extensions:
            ext.objects = [obj for source in ext.sources for obj in objects[source]]
            ext.objects += engine_objects
            ext.extra_link_args = link_args + ext.extra_link_args
        self.parallel = False  # linking only, below
        super().build_extensions()

    def build_extension(self, ext):
        """Link the objects compiled in build_extensions."""
        path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.compiler.link_shared_object(
            ext.objects, path, libraries=self.get_libraries(ext),
            library_dirs=ext.library_dirs, runtime_library_dirs=ext.runtime_library_dirs,
            extra_postargs=ext.extra_link_args, export_symbols=self.get_export_symbols(ext),
            build_temp=self.build_temp, target_lang="c")


ENGINE_DEPENDS = [os.path.join(root, name) for root, _, names in os.walk("src")
                  for name in names if name.endswith((".h", ".c", ".pxd"))]
extensions = [
    Extension("klfast._kernels", sources=["src/_kernels.pyx"], include_dirs=INCLUDE_DIRS,
              define_macros=MACROS, depends=ENGINE_DEPENDS),
    Extension("klfast._diagnostics", sources=["src/_diagnostics.pyx"], include_dirs=INCLUDE_DIRS,
              define_macros=MACROS, depends=ENGINE_DEPENDS),
    Extension("klfast._pairwise", sources=["src/_pairwise.pyx"], include_dirs=INCLUDE_DIRS,
              define_macros=MACROS, depends=ENGINE_DEPENDS),
]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
