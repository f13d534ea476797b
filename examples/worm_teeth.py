"""Which model of the worm-teeth counts loses less information: uniform or binomial?

The classic worked example of KL divergence: 100 worms, 0 to 10 teeth each.
Two one-line models are fitted to the observed distribution P:

* uniform:  Q_u(i) = 1/11
* binomial: Q_b(i) = C(10, i) s^i (1 - s)^(10 - i), s = mean teeth / 10

KL(P || Q) is the information (in nats) lost when Q is used in place of P.
The script prints both KL directions, Jeffreys and Jensen-Shannon for each
model and saves two bar charts (P vs each model) as PNG.

Run from the repository root (needs ``pip install ".[examples]"``)::

    python examples/worm_teeth.py --out examples/output
"""
import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import klfast  # noqa: E402
from klfast.datasets import worm_teeth  # noqa: E402


def binomial_pmf(n, s):
    return np.array([math.comb(n, i) * s**i * (1 - s) ** (n - i) for i in range(n + 1)])


def jensen_shannon(p, q):
    """klfast.jensen_shannon when this build has it, else its definition."""
    if hasattr(klfast, "jensen_shannon"):
        return float(klfast.jensen_shannon(p, q))
    m = (p + q) / 2
    return float(0.5 * klfast.kl(p, m, eps=0) + 0.5 * klfast.kl(q, m, eps=0))


def bar_chart(path, teeth, p, q, label, color):
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    w = 0.4
    ax.bar(teeth - w / 2, p, w, label="observed (100 worms)", color="0.35")
    ax.bar(teeth + w / 2, q, w, label=label, color=color)
    ax.set_xticks(teeth)
    ax.set_xlabel("number of teeth")
    ax.set_ylabel("probability")
    kl = float(klfast.kl(p, q, eps=0))
    ax.set_title(f"Worm teeth: observed vs {label.split(' ')[0]}, KL(P || Q) = {kl:.4f} nats",
                 fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output",
                        help="directory for the PNG figures (default: examples/output)")
    args = parser.parse_args(argv)

    counts = worm_teeth()
    teeth = np.arange(counts.size)
    p = counts / counts.sum()
    mean = float(teeth @ p)
    variance = float((teeth - mean) ** 2 @ p)
    n = teeth[-1]
    s = mean / n
    models = {
        "uniform": np.full(counts.size, 1 / counts.size),
        "binomial": binomial_pmf(n, s),
    }

    print(f"Worm teeth: {counts.sum()} worms, counts for 0..{n} teeth: {counts.tolist()}")
    print(f"mean {mean:.2f} teeth, variance {variance:.2f}; "
          f"binomial(n={n}, s={s:.3f}) has variance {n * s * (1 - s):.2f}")
    print()
    rows = {
        "KL(true || model)": lambda q: float(klfast.kl(p, q, eps=0)),
        "KL(model || true)": lambda q: float(klfast.kl(q, p, eps=0)),
        "Jeffreys": lambda q: float(klfast.jeffreys(p, q, eps=0)),
        "Jensen-Shannon": lambda q: jensen_shannon(p, q),
    }
    results = {name: {m: f(q) for m, q in models.items()} for name, f in rows.items()}
    print(f"{'nats':<20}{'uniform':>10}{'binomial':>10}")
    for name, values in results.items():
        print(f"{name:<20}{values['uniform']:>10.4f}{values['binomial']:>10.4f}")
    print()

    fwd = results["KL(true || model)"]
    rev = results["KL(model || true)"]
    best = min(fwd, key=fwd.get)
    other = max(fwd, key=fwd.get)
    tails = [0, 1, n - 1, n]
    print(f"Less information lost: the {best} model "
          f"(KL(true || {best}) = {fwd[best]:.4f} < KL(true || {other}) = {fwd[other]:.4f} nats).")
    print(f"Why: the binomial matches the mean but not the spread (variance "
          f"{n * s * (1 - s):.2f} vs {variance:.2f}). It gives "
          f"{models['binomial'][tails].sum():.1%} probability to 0, 1, {n - 1} or {n} teeth, "
          f"where {p[tails].sum():.0%} of the worms are, and KL(true || model) weighs "
          f"log(P/Q) by P, so those tails cost most.")
    print(f"Asymmetry: KL(model || true) weighs by the model's own probabilities and so "
          f"mostly ignores where the model puts little mass; the reverse values "
          f"({rev['uniform']:.4f} and {rev['binomial']:.4f}) narrow the gap from "
          f"{fwd[other] - fwd[best]:.4f} to {abs(rev[other] - rev[best]):.4f} nats. The direction "
          f"is a choice: KL(true || model) is the information lost when the model stands in "
          f"for the data (the quantity maximum likelihood minimises).")
    symmetric = [name for name in ("Jeffreys", "Jensen-Shannon")
                 if min(results[name], key=results[name].get) == best]
    print(f"Symmetric measures preferring the {best} model too: "
          f"{', '.join(symmetric) if symmetric else 'none'}.")

    args.out.mkdir(parents=True, exist_ok=True)
    paths = [args.out / "worm_teeth_uniform.png", args.out / "worm_teeth_binomial.png"]
    bar_chart(paths[0], teeth, p, models["uniform"], "uniform model (1/11)", "tab:blue")
    bar_chart(paths[1], teeth, p, models["binomial"], f"binomial model (n={n}, s={s:.3f})",
              "tab:orange")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
