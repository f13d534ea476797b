"""Time KL from logits: klfast.kl(a, b, input="logits") against numpy/scipy and
against klfast's own kl on the same distributions as probabilities, in the same run.

    python benchmarks/bench_input_forms.py [--rows 2048] [--k 32000] [--dtype float16|float32|float64]
                                           [--repeat 7] [--num-threads N] [--temperature 1]
                                           [--skip scipy,torch]

The peers, timed in turns (each round runs every peer once, so a slow spell of
the machine hits them alike):

- ``scipy``: ``rel_entr(exp(log_softmax(a / T)), exp(log_softmax(b / T))).sum(1)``,
  scipy.special in the inputs' dtype (input-sized temporaries);
- ``klfast probs``: ``klfast.kl(P, Q)`` on the softmaxes, computed once
  beforehand (the time a caller saves by not making them is not counted);
- ``torch``: ``F.kl_div(F.log_softmax(b), F.log_softmax(a), log_target=True,
  reduction="none").sum(-1)`` (KL(P || Q), P from a) when torch is installed,
  in the logits' dtype; for float16 logits also ``torch f32``, the same with
  ``log_softmax(..., dtype=torch.float32)`` (torch's float16 log-softmax keeps
  about three digits: its KL is a few per cent off, reported, not checked).

Prints each peer's median time, ns per element (of one input), and the median
over the rounds of the per-round ratio peer / ``klfast logits``, and checks
that every peer agrees with klfast within float32/float64 rounding.
"""
import argparse
import importlib.util
import time

import numpy as np
from scipy.special import log_softmax, rel_entr

import klfast


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32000)
    parser.add_argument("--dtype", choices=("float16", "float32", "float64"), default="float32",
                        help="of the logits (float16: the probabilities are float32)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--skip", default="",
                        help="peers to leave out, comma-separated (e.g. scipy: seconds a call "
                             "and input-sized temporaries at large shapes)")
    args = parser.parse_args()
    dtype, temperature = np.dtype(args.dtype), args.temperature
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((args.rows, args.k), dtype=np.float32) * 3).astype(dtype)
    b = (a + rng.standard_normal((args.rows, args.k), dtype=np.float32) * 0.3).astype(dtype)
    prob_dtype = np.promote_types(dtype, np.float32)  # float16 logits: float32 probabilities
    P = np.exp(log_softmax(a.astype(np.float64) / temperature, axis=1)).astype(prob_dtype)
    Q = np.exp(log_softmax(b.astype(np.float64) / temperature, axis=1)).astype(prob_dtype)
    threads = args.num_threads or klfast.default_num_threads()

    def scipy_peer():  # float16 logits: in float32, as klfast computes them
        lp = log_softmax(a.astype(prob_dtype, copy=False) / prob_dtype.type(temperature), axis=1)
        lq = log_softmax(b.astype(prob_dtype, copy=False) / prob_dtype.type(temperature), axis=1)
        return rel_entr(np.exp(lp), np.exp(lq)).sum(1)

    peers = {
        "klfast logits": lambda: klfast.kl(a, b, input="logits", temperature=temperature,
                                           num_threads=threads),
        "klfast probs": lambda: klfast.kl(P, Q, num_threads=threads),
        "scipy": scipy_peer,
    }
    if importlib.util.find_spec("torch") is not None:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def torch_peer():
            with torch.no_grad():
                return F.kl_div(F.log_softmax(tb / temperature, -1),
                                F.log_softmax(ta / temperature, -1), log_target=True,
                                reduction="none").sum(-1).numpy()

        peers["torch"] = torch_peer
        if dtype == np.float16:
            def torch_f32_peer():
                with torch.no_grad():
                    return F.kl_div(F.log_softmax(tb / temperature, -1, dtype=torch.float32),
                                    F.log_softmax(ta / temperature, -1, dtype=torch.float32),
                                    log_target=True, reduction="none").sum(-1).numpy()

            peers["torch f32"] = torch_f32_peer
    else:
        print("torch: not installed (skipped)")
    for name in filter(None, args.skip.split(",")):
        peers.pop(name.strip())

    want = peers["klfast logits"]()
    for name, fn in peers.items():
        got = np.asarray(fn(), dtype=np.float64)
        if name == "torch" and dtype == np.float16:  # computed in float16
            print(f"torch (float16): largest relative difference from klfast "
                  f"{np.max(np.abs(got / want - 1)):.2g}")
            continue
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert np.allclose(got, want, rtol=tol, atol=tol * 10), name

    times = {name: [] for name in peers}
    for _ in range(args.repeat):
        for name, fn in peers.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = np.array(times["klfast logits"])
    n = args.rows * args.k
    print(f"KL of {args.rows} x {args.k} {dtype} rows, T = {temperature}, klfast threads "
          f"{threads}, level {klfast._kernels.get_isa()}, {args.repeat} rounds in turns")
    print(f"{'peer':<15} {'median ms':>10} {'ns/el':>8} {'ratio to klfast logits':>24}")
    for name, values in times.items():
        values = np.array(values)
        print(f"{name:<15} {np.median(values) * 1e3:10.1f} {np.median(values) / n * 1e9:8.2f} "
              f"{np.median(values / base):24.2f}")


if __name__ == "__main__":
    main()
