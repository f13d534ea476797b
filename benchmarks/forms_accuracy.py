"""Accuracy of the measures on log-probabilities and logits against the slow
twin's exact (mpmath) rows.

    python benchmarks/forms_accuracy.py [--rows 20] [--k 100]

For each dtype, pair of forms and kind of rows (random logits, logits of
+-1e4 at temperatures 0.01, 1 and 100, nearly equal rows), prints over the
five measures the largest relative error per row, |got - exact| / |exact|,
and the largest error in units of the documented bound's scale,
|got - exact| / (|exact| + s) (s: reference.forms_rows' row scale).
"""
import argparse

import numpy as np

import klfast
from klfast._core import reference

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")
PAIRS = (("logits", "logits"), ("log_probs", "log_probs"), ("logits", "probs"),
         ("probs", "logits"))


def rows(kind, rng, n, k):
    if kind == "random":
        return rng.normal(size=(n, k)) * 3, rng.normal(size=(n, k)) * 3, 1.0
    if kind == "nearly equal":
        z = rng.normal(size=(n, k)) * 3
        return z, z + rng.normal(size=(n, k)) * 1e-3, 1.0
    temperature = float(kind.split("T=")[1])
    return rng.uniform(-1e4, 1e4, (n, k)), rng.uniform(-1e4, 1e4, (n, k)), temperature


def as_form(form, z, temperature):
    if form == "logits":
        return z
    from scipy.special import log_softmax

    log_p = log_softmax(z / temperature, axis=1)
    return log_p if form == "log_probs" else np.exp(log_p)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    kinds = ("random", "+-1e4 T=0.01", "+-1e4 T=1", "+-1e4 T=100", "nearly equal")
    print(f"{'dtype':<8} {'forms':<22} {'rows':<14} {'max rel. error':>15} {'max err/(|v|+s)':>16}")
    for dtype in (np.float64, np.float32):
        for pair in PAIRS:
            for kind in kinds:
                za, zb, temperature = rows(kind, rng, args.rows, args.k)
                if dtype == np.float32 and kind.startswith("+-1e4"):
                    za, zb = za / 100, zb / 100  # float32's exp range at T = 0.01
                a = as_form(pair[0], za, temperature).astype(dtype)
                b = as_form(pair[1], zb, temperature).astype(dtype)
                worst_rel = worst_bound = 0.0
                for measure in MEASURES:
                    fn = getattr(klfast, measure)
                    extra = {} if measure == "jensen_shannon" else {"eps": klfast.DEFAULT_EPS}
                    eps = 0.0 if measure == "jensen_shannon" else \
                        float(dtype(klfast.DEFAULT_EPS))
                    forms = pair[:1] if measure == "entropy" else pair
                    args_ = (a,) if measure == "entropy" else (a, b)
                    t = temperature if "logits" in forms else 1.0  # else baked into a, b
                    got = fn(*args_, input=forms, temperature=t, **extra).astype(float)
                    want, scale = reference.forms_rows(measure, a.astype(float), b.astype(float),
                                                       forms, temperature=t, eps=eps)
                    err = np.abs(got - want)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        rel = np.where(err == 0, 0.0, err / np.abs(want))
                        bound = np.where(err == 0, 0.0, err / (np.abs(want) + scale))
                    worst_rel = max(worst_rel, float(rel.max()))
                    worst_bound = max(worst_bound, float(bound.max()))
                print(f"{np.dtype(dtype).name:<8} {'/'.join(pair):<22} {kind:<14} "
                      f"{worst_rel:15.2e} {worst_bound:16.2e}")


if __name__ == "__main__":
    main()
