"""Typed use of klfast's public API: ``mypy --strict`` must accept this file.

tests/test_typing.py type-checks it against the installed package (its stubs
and py.typed); pytest does not collect it (no ``test_`` prefix). Annotated
assignments pin the return types the stubs promise.
"""
from typing import Any

import numpy as np
from numpy.typing import NDArray

import klfast
from klfast.datasets import worm_teeth

Scores = NDArray[np.floating[Any]] | np.floating[Any]


def scores(p: NDArray[np.float64], q: list[float]) -> list[Scores]:
    return [
        klfast.kl(p, q),
        klfast.kl(p, q, axis=-1, eps=1e-9, base=2, normalize=True, check_sums=False,
                  num_threads=None),
        klfast.jeffreys(p, q, base=2.0, num_threads=2),
        klfast.cross_entropy(p, q, eps=0.0),
        klfast.entropy(p, normalize=False),
        klfast.jensen_shannon(p, q, distance=True, base=None),
    ]


def with_out(p: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.empty(p.shape[0])
    klfast.kl(p, p[0], out=out, keepdims=False)
    klfast.entropy(p, out=out)
    return out


def kept(p: NDArray[np.float64]) -> tuple[int, ...]:
    return klfast.entropy(p, keepdims=True).shape


def losses(target: NDArray[np.float64], logits: NDArray[np.float64]) -> float:
    mean: np.floating[Any] = klfast.kl_loss(target, logits)
    total = klfast.cross_entropy_loss(target, logits, reduction="sum", temperature=2.0)
    rows: Scores = klfast.kl_loss(target, logits, reduction="none")
    loss, grad = klfast.kl_loss(target, logits, return_grad=True, target_is_logits=False)
    grad_shape: tuple[int, ...] = grad.shape
    # a gradient buffer reused from step to step
    _, same = klfast.kl_loss(target, logits, return_grad=True, grad_out=grad)
    rows_and_grad: tuple[Scores, NDArray[np.floating[Any]]] = klfast.cross_entropy_loss(
        target, logits, reduction="none", return_grad=True, eps=1e-12, axis=-1)
    return float(mean + total + loss) + float(np.sum(rows)) + len(grad_shape) + len(rows_and_grad)


def all_pairs(p: NDArray[np.float64], q: NDArray[np.float64]) -> int:
    matrix: NDArray[np.floating[Any]] = klfast.pairwise(p, q, "kl", eps=1e-9, num_threads=2)
    same = klfast.pairwise(p, measure="js", distance=True, out=np.empty((3, 3)))
    indices, values = klfast.pairwise(p, q, "jensen_shannon", topk=5, base=2.0)
    first: NDArray[np.int64] = indices
    return int(matrix.shape[0] + same.shape[0] + first.shape[1] + values.shape[1])


def config() -> tuple[str, float, int]:
    klfast.show_config()
    return klfast.__version__, klfast.DEFAULT_EPS, klfast.default_num_threads()


def teeth() -> NDArray[np.int64]:
    return worm_teeth() + klfast.datasets.worm_teeth()



def summaries(scores: NDArray[np.float64]) -> dict[str, int | float | None]:
    whole: klfast.ScoreSummary = klfast.summary(scores, where=scores > 0)
    accumulator = klfast.SummaryAccumulator(n_rows=len(scores))
    accumulator.update(scores[:10], top1_agree=scores[:10] > 0.5)
    accumulator.update(scores[10:], top1_agree=scores[10:] > 0.5)
    chunked = accumulator.result()
    count: int = whole.count
    row: int | None = chunked.argmax
    median: float = whole.percentiles[50.0]
    share: float | None = chunked.top1_agreement
    return {"count": count, "row": row, "median": median, "share": share, **whole.to_dict()}
