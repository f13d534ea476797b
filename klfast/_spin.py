"""How long klfast's idle OpenMP threads spin before they sleep: set before the
OpenMP runtime loads, which reads its environment once, when it loads.

GNU OpenMP's default is 300,000 spins of a pause instruction, about 10 ms on
this project's machine, at the end of every parallel region and between
regions. When the other core is busy, a call's second thread may not run for
a while; the first, done with its rows, then spins on its own core for those
10 ms instead of letting the second thread run there, and a 2-thread call of
1,000 x 100 took up to 60 times a 1-thread call (benchmarks/busy.py). With
SPIN spins (0.1-0.2 ms) the waiting thread soon sleeps and lends its core,
and small calls on a quiet machine still find their threads awake.

klfast sets ``GOMP_SPINCOUNT`` (GNU OpenMP) and ``KMP_BLOCKTIME`` (LLVM's
OpenMP, in ms) only when the environment sets neither these nor
``OMP_WAIT_POLICY``, and takes them out of ``os.environ`` again once the
runtime has loaded, so child processes see the environment they were given.
When another module loaded the OpenMP runtime first, its settings stand.
:func:`klfast.show_config` says which case applies.
"""
import os

SPIN = {"GOMP_SPINCOUNT": "3000", "KMP_BLOCKTIME": "1"}
_SET_BY_USER = ("OMP_WAIT_POLICY",) + tuple(SPIN)


def _runtime_loaded():
    """An OpenMP runtime is mapped into this process (Linux; False elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line or "libomp" in line for line in maps)
    except OSError:
        return False


# Which setting applies, for show_config.
applies = "not set yet"


def set_before_load():
    """Set the spin for the runtime about to load; returns the names to take
    out of the environment once it has loaded."""
    global applies
    given = [name for name in _SET_BY_USER if name in os.environ]
    if given:
        applies = "from the environment (" + ", ".join(
            f"{n}={os.environ[n]}" for n in given) + ")"
        return ()
    if _runtime_loaded():
        applies = "the OpenMP runtime's own (it was loaded before klfast)"
        return ()
    os.environ.update(SPIN)
    applies = "klfast's: " + ", ".join(f"{n}={v}" for n, v in SPIN.items())
    return tuple(SPIN)


def unset(names):
    for name in names:
        os.environ.pop(name, None)
