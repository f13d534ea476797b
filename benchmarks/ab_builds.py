"""A/B of two klfast builds (two Python environments) on the same inputs.

A kernel change is judged against the build before it: each turn runs build A,
then build B (then B, A on the next turn, so neither always goes first), each in
a fresh process that loads the same inputs from a .npy file, warms up and
times ``--calls`` calls, keeping the fastest (the least disturbed by the
machine's other work); the per-turn ratio B/A of the two is recorded, and the report is the median of those ratios (drift on a shared
machine cancels within a turn).

    python benchmarks/ab_builds.py --a /path/old-venv/bin/python \\
        --b /path/new-venv/bin/python --shape 100000x1000 --dtype float64 \\
        --measures kl,entropy,kl_loss --threads 1,2 --turns 9

``--layout columns`` (``fortran``) gives the distributions as the columns of a
C-ordered array with ``axis=0`` (as Fortran-ordered rows). Measures are klfast's functions; ``pairwise:kl`` (``pairwise:js``, ...) is
``klfast.pairwise(P, Q, "kl")`` with ``--shape NxK --q-rows M`` (Q: M rows); the losses (``kl_loss``, ``cross_entropy_loss``)
take the rows of P as targets and log Q as logits (per-row losses, no gradient;
``kl_loss:grad`` with the gradient, into a ``grad_out=`` array made once;
``kl_loss:logp`` (``kl_loss:logp:grad``) with targets log P, ``input=("log_probs",
"logits")``).
With ``--logits NOISE`` the inputs are rows of logits instead, P = 3 z and
Q = P + NOISE z' (z, z' standard normal: a model and a perturbed copy), given
with ``input="logits"``; ``--temperature T`` passes ``temperature=T`` to them, and
``--masked FRAC`` masks that fraction of the classes (never a whole row), the
same in P and Q: logits of -inf, or probabilities of 0 (renormalized; the
losses' logits log Q are then -inf there); ``--masked-in p`` masks them in P
alone (Q keeps its values there).

Run it from a folder other than the repository root (each build must import
its installed klfast, not the source folder), with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
import klfast
p = np.load(sys.argv[1], mmap_mode="r"); q = np.load(sys.argv[2], mmap_mode="r")
p = np.ascontiguousarray(p); q = np.ascontiguousarray(q)
measure, threads, calls = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
layout, axis = sys.argv[7], {}
if layout == "columns":  # distributions in the columns of a C-ordered array
    p, q, axis = p.T.copy(), q.T.copy(), {"axis": 0}
elif layout == "fortran":  # rows of a Fortran-ordered array
    p, q = np.asfortranarray(p), np.asfortranarray(q)
fn = getattr(klfast, measure.split(":")[0])
if sys.argv[6] == "logits":
    args = (p,) if measure == "entropy" else (p, q)
    kwargs = {"input": "logits", "num_threads": threads, "temperature": float(sys.argv[8])}
elif measure.startswith("pairwise:"):  # all pairs: rows of p against rows of q
    args, kwargs = (p, q, measure.split(":")[1]), {"num_threads": threads}
elif "_loss" in measure:  # targets p (:logp, log p), logits log(q); per-row losses
    args, kwargs = (p, np.log(q)), {"reduction": "none", "num_threads": threads}
    if ":logp" in measure:
        args, kwargs["input"] = (np.log(p), args[1]), ("log_probs", "logits")
else:
    args = (p,) if measure == "entropy" else (p, q)
    n_out = p.shape[1] if axis else p.shape[0]
    kwargs = {"out": np.empty(n_out, dtype=np.promote_types(p.dtype, np.float32)),
              "num_threads": threads, **axis}
if measure.endswith(":grad"):  # and the gradient, into an array given once (grad_out=)
    g_dtype = np.promote_types(args[1].dtype, np.float32)  # (16-bit logits: float32)
    kwargs.update(return_grad=True, grad_out=np.empty(args[1].shape, dtype=g_dtype))
fn(*args, **kwargs)  # warm up
times = []
for _ in range(calls):
    t = time.perf_counter()
    fn(*args, **kwargs)
    times.append(time.perf_counter() - t)
print(json.dumps(min(times)))
"""


def sample(python, paths, measure, threads, calls, logits, layout, temperature):
    done = subprocess.run([python, "-c", CHILD, *paths, measure, str(threads), str(calls),
                           "logits" if logits else "probs", layout, repr(temperature)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="python of build A (the old one)")
    parser.add_argument("--b", required=True, help="python of build B (the new one)")
    parser.add_argument("--shape", default="100000x1000")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32", "float16"])
    parser.add_argument("--q-rows", type=int, default=None,
                        help="rows of Q (default: those of P)")
    parser.add_argument("--measures", default="kl")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--turns", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--logits", type=float, default=None, metavar="NOISE",
                        help="inputs as logits: P = 3 z, Q = P + NOISE z'")
    parser.add_argument("--layout", default="rows", choices=["rows", "columns", "fortran"],
                        help="the NxK distributions as C-ordered rows, as the columns of a "
                             "C-ordered KxN array (axis=0), or as Fortran-ordered rows")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="with --logits: the calls' temperature")
    parser.add_argument("--masked", type=float, default=0.0, metavar="FRAC",
                        help="this fraction of the classes masked: logits of -inf, "
                             "probabilities of 0 (never a whole row)")
    parser.add_argument("--masked-in", default="both", choices=["both", "p"],
                        help="--masked in P and Q, or in P alone")
    args = parser.parse_args(argv)
    n, k = (int(x) for x in args.shape.split("x"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        base = mask = None
        for name, rows in (("p", n), ("q", args.q_rows or n)):
            if args.logits is None:
                x = rng.dirichlet(np.ones(k), size=rows).astype(args.dtype)
            elif base is None:
                base = 3 * rng.standard_normal((rows, k), dtype=np.float32)
                x = base.astype(args.dtype)
            else:
                x = (base + args.logits * rng.standard_normal((rows, k), dtype=np.float32)
                     ).astype(args.dtype)
            if args.masked and (name == "p" or args.masked_in == "both"):  # the same classes
                if mask is None:
                    mask = np.random.default_rng(1).random(x.shape) < args.masked
                    mask[mask.all(axis=1), 0] = False
                if args.logits is not None:
                    x[mask] = -np.inf
                else:  # probabilities of 0 (the losses' logits: log 0 = -inf)
                    x[mask] = 0
                    x /= x.sum(axis=1, keepdims=True)
            path = os.path.join(tmp, f"{name}.npy")
            np.save(path, x)
            paths.append(path)
            del x
        print(f"{args.shape} {args.dtype} {args.layout}, {args.turns} turns of {args.calls} calls each; "
              f"ratio = B time / A time (median of per-turn ratios)")
        for measure in args.measures.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                ratios, a_times, b_times = [], [], []
                for turn in range(args.turns):
                    order = ("a", "b") if turn % 2 == 0 else ("b", "a")
                    got = {}
                    for side in order:
                        python = args.a if side == "a" else args.b
                        got[side] = sample(python, paths, measure, threads, args.calls,
                                           args.logits is not None, args.layout,
                                           args.temperature)
                    a_times.append(got["a"])
                    b_times.append(got["b"])
                    ratios.append(got["b"] / got["a"])
                print(f"{measure:>15} {threads} thr: B/A {statistics.median(ratios):.3f} "
                      f"(turns {min(ratios):.3f}-{max(ratios):.3f}; A median "
                      f"{statistics.median(a_times) * 1e3:.1f} ms, B "
                      f"{statistics.median(b_times) * 1e3:.1f} ms)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
