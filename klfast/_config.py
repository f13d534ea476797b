"""klfast.show_config(): what this build of klfast is and will do."""
import platform
import sys

import numpy as np

from . import _kernels
from ._core.engine import default_num_threads


def config():
    """The facts :func:`show_config` prints, as a dict."""
    from . import __version__

    info = _kernels.build_info()
    return {
        "klfast": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "openmp": info["openmp"],
        "default_num_threads": default_num_threads(),
        "compile_args": info["compile_args"],
        "compiler": info["compiler"],
        "build_isa": info["build_isa"],
        "isa": _kernels.get_isa(),
        "supported_isas": list(_kernels.supported_isas()),
        "build_levels": list(_kernels.LEVELS),
        # why OpenMP or a level is missing from this build ("" when nothing is)
        "build_notes": _kernels.MISSING_LEVELS,
    }


def show_config():
    """Print the version, the build's OpenMP status, the default thread count,
    the compiler flags and the instruction-set level of the kernels in use
    (chosen at import: the best this CPU runs, or ``KLFAST_ISA``).

    Examples
    --------
    >>> import klfast
    >>> klfast.show_config()  # doctest: +ELLIPSIS
    klfast ...
    """
    c = config()
    print(f"klfast {c['klfast']} (python {c['python']}, numpy {c['numpy']}, {c['machine']})")
    notes = [n for n in c["build_notes"].split("; ") if n]
    why = [n.split(": ", 1)[1] for n in notes if n.startswith("OpenMP: ")]
    # the threads are klfast's own (src/engine/pool.h); OpenMP only says how many
    openmp = ("yes (the thread limit: OMP_NUM_THREADS, threadpoolctl)" if c["openmp"] else
              f"no (one thread unless num_threads= asks for more; {', '.join(why) or 'no OpenMP'})")
    print(f"  OpenMP:              {openmp}")
    print(f"  default num_threads: {c['default_num_threads']}")
    print(f"  compiler:            {c['compiler']}")
    print(f"  compile args:        {c['compile_args']}")
    print(f"  compiled for:        {c['build_isa']}, kernels built for "
          f"{', '.join(c['build_levels'])}")
    for note in notes:
        if not note.startswith("OpenMP: "):
            print(f"  level left out:      {note}")
    print(f"  kernels in use:      {c['isa']} (this CPU runs {', '.join(c['supported_isas'])};"
          f" force one with KLFAST_ISA={'|'.join(c['build_levels'])})")
