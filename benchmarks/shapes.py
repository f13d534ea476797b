"""The shapes of issue 16 against the read floor, in one run.

For each case, klfast and the read floor (klfast._diagnostics.read_floor: a
compiled kernel of this build that only reads both inputs, with the same
threads) are timed in turns, floor then klfast, ``--turns`` times; each turn
keeps the fastest of ``--calls`` calls of each, and the report is the median
of the per-turn ratios klfast / floor (drift on a shared machine cancels
within a turn). klfast writes into a preallocated ``out=`` (a pipeline's
steady state: no page faults of a fresh output in the timing).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/shapes.py
    ... --cases few,columns --threads 1,2 --turns 7

Run it from a folder other than the repository root, with each build's
Python to compare builds (the ratios are to each build's own floor).

``--flat`` adds a second floor to each turn: ``flat_terms.c`` beside this
file, built with the system's C compiler (``cc -O2 -march=native
-fopenmp``, the engine's ``src/engine/simd.h``), reads the same bytes as
the read floor and adds one term of the measure per element with klfast's
own vector log, as one flat array (no rows, row sums, checks or output).
Its ratio to the read floor says what the log itself costs on this machine;
klfast's ratio to it, what the row structure around the terms costs.
"""
import argparse
import ctypes
import json
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np

import klfast
from klfast._diagnostics import read_floor

# name: (group, shape of P, axis, dtype, q: "same" | "ref", measure)
CASES = {
    "20000000x2-f64": ("few", (20_000_000, 2), -1, "float64", "same", "kl"),
    "20000000x2-f32": ("few", (20_000_000, 2), -1, "float32", "same", "kl"),
    "10000000x10-f64": ("few", (10_000_000, 10), -1, "float64", "same", "kl"),
    "10000000x10-f32": ("few", (10_000_000, 10), -1, "float32", "same", "kl"),
    "3000000x32-f64": ("few", (3_000_000, 32), -1, "float64", "same", "kl"),
    "3000000x32-f32": ("few", (3_000_000, 32), -1, "float32", "same", "kl"),
    "(10,5000000)-axis0-f64": ("columns", (10, 5_000_000), 0, "float64", "same", "kl"),
    "(1000,50000)-axis0-f64": ("columns", (1000, 50_000), 0, "float64", "same", "kl"),
    "5000000x10-F-f64": ("columns", (5_000_000, 10), "F", "float64", "same", "kl"),
    "(10,5000000)-axis0-f32": ("columns", (10, 5_000_000), 0, "float32", "same", "kl"),
    "(1000,50000)-axis0-f32": ("columns", (1000, 50_000), 0, "float32", "same", "kl"),
    "5000000x10-F-f32": ("columns", (5_000_000, 10), "F", "float32", "same", "kl"),
    "1000x100-cache-f64": ("cache", (1000, 100), -1, "float64", "same", "kl"),
    "ref-row-2000000x10-f64": ("ref", (2_000_000, 10), -1, "float64", "ref", "kl"),
    "(64,512,32000)-f32-kl": ("vocab", (64 * 512, 32_000), -1, "float32", "same", "kl"),
    "(64,512,32000)-f32-entropy": ("vocab", (64 * 512, 32_000), -1, "float32", "same",
                                   "entropy"),
}


def make(shape, axis, dtype, seed):
    """Distributions along ``axis`` of an array of ``shape`` (axis "F": rows
    of a Fortran-ordered array)."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape, dtype=np.dtype(dtype)) + np.dtype(dtype).type(1e-3)
    along = 0 if axis == 0 else -1
    x /= x.sum(axis=along, keepdims=True)
    return np.asfortranarray(x) if axis == "F" else x


def flat_terms():
    """flat_terms.c built into a library in a temporary folder: its
    (flat_f64, flat_f32), or None with the reason printed."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "flat_terms.c")
    include = os.path.join(os.path.dirname(here), "src")
    cc = shlex.split(os.environ.get("CC") or "cc")  # (a command, as tests/test_c_kernels.py)
    folder = tempfile.mkdtemp(prefix="klfast-flat-")
    lib = os.path.join(folder, "flat_terms.so")
    cmd = [*cc, "-O2", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
           "-ffp-contract=fast", "-fPIC", "-shared", "-I", include, src, "-o", lib]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"--flat: could not build flat_terms.c ({' '.join(cmd)}):\n{done.stderr}")
            return None
        so = ctypes.CDLL(lib)
    except OSError as e:
        print(f"--flat: could not build or load flat_terms.c: {e}")
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # (a loaded library stays mapped)
    fns = []
    for name in ("flat_f64", "flat_f32"):
        fn = getattr(so, name)
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long,
                       ctypes.c_int]
        fns.append(fn)
    return tuple(fns)


def flat_call(fns, measure, a, b, threads):
    """The flat-term floor's call on a and b (C-contiguous, one shape and
    dtype): kl's terms (mode 1), or entropy's over both (mode 2)."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and a.shape == b.shape
            and a.dtype == b.dtype):
        raise ValueError("flat_call: a and b must be C-contiguous, of one shape and dtype")
    fn = fns[0] if a.dtype == np.float64 else fns[1]
    mode = 2 if measure == "entropy" else 1
    return lambda: fn(mode, a.ctypes.data, b.ctypes.data, a.size, threads)


def best(fn, calls):
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run_case(name, threads, turns, calls, flat=None):
    group, shape, axis, dtype, q_kind, measure = CASES[name]
    p = make(shape, axis, dtype, 1)
    q = make(shape, axis, dtype, 2) if q_kind == "same" else make(shape[1:], -1, dtype, 2)
    kl_axis = 0 if axis == 0 else -1
    fn = getattr(klfast, measure)
    args = (p,) if measure == "entropy" else (p, q)
    n_out = shape[1] if axis == 0 else shape[0]
    out = np.empty(n_out, dtype=dtype)
    # the floor reads what the kernel reads: both inputs' bytes (C views)
    a = p.T if axis == "F" else p
    b = (q.T if axis == "F" else q) if q_kind == "same" and measure != "entropy" else None
    if b is None:  # read P once: its two halves
        half = a.shape[0] // 2
        a, b = a[:half], a[half:2 * half]

    def klfast_call():
        fn(*args, axis=kl_axis, out=out, num_threads=threads)

    def floor_call():
        read_floor(a, b, threads)

    terms_call = flat_call(flat, measure, a, b, threads) if flat else None
    klfast_call()
    floor_call()
    ratios, kl_times, floor_times, flat_times = [], [], [], []
    for _ in range(turns):
        f = best(floor_call, calls)
        if terms_call:
            flat_times.append(best(terms_call, calls))
        k = best(klfast_call, calls)
        ratios.append(k / f)
        kl_times.append(k)
        floor_times.append(f)
    row = {
        "case": name, "group": group, "threads": threads,
        "ratio_to_floor": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "klfast_s": statistics.median(kl_times), "floor_s": statistics.median(floor_times),
    }
    if terms_call:
        row["flat_to_floor"] = statistics.median(t / f for t, f in zip(flat_times, floor_times))
        row["ratio_to_flat"] = statistics.median(k / t for k, t in zip(kl_times, flat_times))
        row["flat_s"] = statistics.median(flat_times)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="few,columns,cache,ref",
                        help="groups or case names, comma-separated (groups: few, columns, "
                             "cache, ref, vocab)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--flat", action="store_true",
                        help="also time the flat-term floor (flat_terms.c, built with cc)")
    args = parser.parse_args(argv)
    flat = flat_terms() if args.flat else None
    wanted = args.cases.split(",")
    names = [n for n, c in CASES.items() if n in wanted or c[0] in wanted]
    rows = []
    print(f"klfast {klfast.__version__}; ratio = klfast / read floor, median of {args.turns} "
          f"turns (range)")
    for name in names:
        for threads in (int(t) for t in args.threads.split(",")):
            if CASES[name][0] == "cache" and threads != 1:
                continue
            row = run_case(name, threads, args.turns, args.calls, flat)
            rows.append(row)
            lo, hi = row["ratio_range"]
            terms = (f"; {row['ratio_to_flat']:4.2f}x the flat terms (they: "
                     f"{row['flat_to_floor']:4.2f}x the floor)" if flat else "")
            print(f"{name:28s} {threads} thread(s): {row['ratio_to_floor']:5.2f}x the floor "
                  f"({lo:.2f}-{hi:.2f}){terms}; klfast {row['klfast_s'] * 1e3:8.2f} ms",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
