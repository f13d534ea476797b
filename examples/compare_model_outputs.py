"""How far is a quantized model from the original? Per-token KL of next-token
distributions, and its summary.

A language model gives, for every token of a text, logits over its vocabulary;
softmax turns them into the distribution of the next token. To judge a
quantized, pruned or distilled copy, one scores the same text with both and
compares the two distributions token by token with KL(original || copy), as
llama.cpp's KL-divergence report does: the mean, the percentiles (the bad tail
matters more than the mean) and how often the most likely next token is the
same ("top-1 agreement").

No model is downloaded here: the "original" logits are synthetic (Zipf-like
word frequencies plus a random context per token, at random sharpness), and
the "copy" is the same logits rounded to 8-bit levels per token (symmetric
int8, one scale per row) with a little noise, both stored as float16, as
model outputs often are. klfast scores the logits directly (input="logits": the log-softmax
of each row is taken in the kernel while the row is in cache; no softmax
array is made), summarises the scores in one pass, and the figure shows the
distribution of the per-token KL.

Run from the repository root (needs ``pip install ".[examples]"``)::

    python examples/compare_model_outputs.py --out examples/output
"""
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

import klfast  # noqa: E402

CHECKED_TOKENS = 64  # tokens scored again with scipy in float64


def make_outputs(n_tokens, vocab, seed=0, chunk=256):
    """(original, copy): float16 logits of shape (n_tokens, vocab)."""
    rng = np.random.default_rng(seed)
    prior = -1.1 * np.log(np.arange(1, vocab + 1))  # Zipf-like word frequencies
    prior = prior[rng.permutation(vocab)].astype(np.float32)
    original = np.empty((n_tokens, vocab), np.float16)
    copy = np.empty((n_tokens, vocab), np.float16)
    for r0 in range(0, n_tokens, chunk):  # in chunks: no (n_tokens, vocab) float32 temporaries
        n = min(chunk, n_tokens - r0)
        sharpness = rng.uniform(0.5, 3.0, size=(n, 1)).astype(np.float32)
        z = (prior + 1.5 * rng.standard_normal((n, vocab), dtype=np.float32)) * sharpness
        scale = np.abs(z).max(axis=1, keepdims=True) / 127  # int8, one scale per token
        zq = np.round(z / scale) * scale + 0.02 * rng.standard_normal((n, vocab), dtype=np.float32)
        original[r0:r0 + n] = z
        copy[r0:r0 + n] = zq
    return original, copy


def reference_kl(original, copy):
    """KL(softmax(original) || softmax(copy)) per row with scipy, in float64."""
    lp = scipy.special.log_softmax(original.astype(np.float64), axis=-1)
    lq = scipy.special.log_softmax(copy.astype(np.float64), axis=-1)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def plot(kl, summary, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = kl[kl > 0]
    bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 60)
    ax.hist(positive, bins=bins, color="#4c72b0")
    ax.set_xscale("log")
    for value, label, style in ((summary.median, "median", "--"), (summary.mean, "mean", "-"),
                                (summary.p99, "99th percentile", ":")):
        ax.axvline(value, color="black", linestyle=style, label=f"{label} {value:.2e}")
    ax.set_xlabel("KL(original || int8 copy) per token, nats")
    ax.set_ylabel("tokens")
    ax.set_title(f"{len(kl):,} tokens; top-1 agreement {100 * summary.top1_agreement:.1f}%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("examples/output"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    original, copy = make_outputs(args.tokens, args.vocab, args.seed)
    print(f"logits: {args.tokens:,} tokens x {args.vocab:,} words, {original.dtype}, "
          f"{original.nbytes / 2**20:,.0f} MiB each")

    t0 = time.perf_counter()
    # KL(softmax(original) || softmax(copy)) for every token, from the logits
    kl = klfast.kl(original, copy, input="logits")
    seconds = time.perf_counter() - t0
    agree = original.argmax(axis=1) == copy.argmax(axis=1)
    summary = klfast.summary(kl, top1_agree=agree)
    print(f"klfast: per-token KL in {seconds:.3f} s")
    print("summary of KL(original || copy), nats:")
    print(summary)

    n = min(CHECKED_TOKENS, args.tokens)
    want = reference_kl(original[:n], copy[:n])
    err = np.max(np.abs(kl[:n] - want) / want)
    print(f"max relative difference from scipy in float64 (first {n} tokens): {err:.1e}")

    path = args.out / "model_outputs_kl.png"
    plot(kl, summary, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
