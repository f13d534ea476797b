"""Wrong uses of klfast's API: ``mypy --strict`` must reject each marked line.

tests/test_typing.py checks that mypy reports an error on every line marked
``# error: <what the message must name>``, and on no other line.
"""
import klfast

p = [0.5, 0.5]
q = [0.25, 0.75]

klfast.kl(p, q, base="two")  # error: "base"
klfast.entropy(p, normalize="yes")  # error: "normalize"
klfast.jensen_shannon(p, q, num_threads=1.5)  # error: "num_threads"
klfast.kl_loss(p, q, reduction="batchmean")  # error: "kl_loss"
klfast.cross_entropy(p, q, eps=None)  # error: "eps"
klfast.kl(p, q, tolerance=1e-3)  # error: "tolerance"
klfast.summary([0.1, 0.2], [True, False])  # error: "summary"
klfast.summary([0.1, 0.2]).mean = 0.0  # error: "mean"
klfast.pairwise(p, q, "bhattacharyya")  # error: "pairwise"
