# Type stubs of klfast's public API (PEP 561; the package ships py.typed).
#
# The functions reduce along ``axis``: an N-D input gives an array of the
# broadcast shape without that axis, and 1-D inputs give a numpy scalar, so the
# call returns ``ndarray | floating`` (with ``out=``, ``out`` itself; with
# ``keepdims=True``, an array). One signature per measure rather than overloads
# on ``out``/``keepdims``: mypy then names a wrong argument in its error.
# (dask arrays are accepted too and give a lazy dask array; dask is not typed,
# so these stubs describe the numpy calls.)
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import datasets as datasets

__all__ = [
    "DEFAULT_EPS",
    "SUM_TOLERANCE",
    "ScoreSummary",
    "SummaryAccumulator",
    "__version__",
    "cross_entropy",
    "cross_entropy_loss",
    "default_num_threads",
    "entropy",
    "jensen_shannon",
    "jeffreys",
    "kl",
    "kl_loss",
    "pairwise",
    "show_config",
    "summary",
]

__version__: Final[str]
DEFAULT_EPS: Final[float]
SUM_TOLERANCE: Final[float]

_Array: TypeAlias = NDArray[np.floating[Any]]
_Scores: TypeAlias = NDArray[np.floating[Any]] | np.floating[Any]
_Reduction: TypeAlias = Literal["none", "sum", "mean"]
# input=: one form for every input, or one per input in argument order
_Form: TypeAlias = Literal["probs", "log_probs", "logits"]
_Input: TypeAlias = _Form | tuple[_Form, ...]
_LossInput: TypeAlias = Literal["logits"] | tuple[_Form, Literal["logits"]]

def default_num_threads() -> int: ...
def show_config() -> None: ...

# kl, jeffreys, cross_entropy: two inputs, eps

def kl(
    p: ArrayLike, q: ArrayLike, *, axis: int = ..., eps: float = ...,
    base: float | None = ..., normalize: bool = ..., check_sums: bool = ...,
    keepdims: bool = ..., out: NDArray[Any] | None = ..., num_threads: int | None = ...,
    input: _Input = ..., temperature: float = ..., where: ArrayLike | None = ...,
) -> _Scores: ...

def jeffreys(
    p: ArrayLike, q: ArrayLike, *, axis: int = ..., eps: float = ...,
    base: float | None = ..., normalize: bool = ..., check_sums: bool = ...,
    keepdims: bool = ..., out: NDArray[Any] | None = ..., num_threads: int | None = ...,
    input: _Input = ..., temperature: float = ..., where: ArrayLike | None = ...,
) -> _Scores: ...

def cross_entropy(
    p: ArrayLike, q: ArrayLike, *, axis: int = ..., eps: float = ...,
    base: float | None = ..., normalize: bool = ..., check_sums: bool = ...,
    keepdims: bool = ..., out: NDArray[Any] | None = ..., num_threads: int | None = ...,
    input: _Input = ..., temperature: float = ..., where: ArrayLike | None = ...,
) -> _Scores: ...

# entropy: one input

def entropy(
    p: ArrayLike, *, axis: int = ..., eps: float = ..., base: float | None = ...,
    normalize: bool = ..., check_sums: bool = ..., keepdims: bool = ...,
    out: NDArray[Any] | None = ..., num_threads: int | None = ...,
    input: _Form | tuple[_Form] = ..., temperature: float = ...,
    where: ArrayLike | None = ...,
) -> _Scores: ...

# jensen_shannon: no eps; distance=True returns the square root

def jensen_shannon(
    p: ArrayLike, q: ArrayLike, *, axis: int = ..., base: float | None = ...,
    normalize: bool = ..., check_sums: bool = ..., distance: bool = ...,
    keepdims: bool = ..., out: NDArray[Any] | None = ..., num_threads: int | None = ...,
    input: _Input = ..., temperature: float = ..., where: ArrayLike | None = ...,
) -> _Scores: ...

# the losses: "sum" and "mean" give a scalar, "none" the per-row values;
# return_grad=True gives (loss, grad), grad of the shape of logits (written into
# grad_out when one is given)

@overload
def kl_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["sum", "mean"] = ...,
    return_grad: Literal[False] = ..., eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: None = ..., where: ArrayLike | None = ...,
) -> np.floating[Any]: ...
@overload
def kl_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["none"],
    return_grad: Literal[False] = ..., eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: None = ..., where: ArrayLike | None = ...,
) -> _Scores: ...
@overload
def kl_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["sum", "mean"] = ...,
    return_grad: Literal[True], eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> tuple[np.floating[Any], _Array]: ...
@overload
def kl_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["none"],
    return_grad: Literal[True], eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> tuple[_Scores, _Array]: ...
@overload
def kl_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: _Reduction = ..., return_grad: bool = ...,
    eps: float = ..., axis: int = ..., num_threads: int | None = ...,
    grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> _Scores | tuple[_Scores, _Array]: ...

@overload
def cross_entropy_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["sum", "mean"] = ...,
    return_grad: Literal[False] = ..., eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: None = ..., where: ArrayLike | None = ...,
) -> np.floating[Any]: ...
@overload
def cross_entropy_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["none"],
    return_grad: Literal[False] = ..., eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: None = ..., where: ArrayLike | None = ...,
) -> _Scores: ...
@overload
def cross_entropy_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["sum", "mean"] = ...,
    return_grad: Literal[True], eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> tuple[np.floating[Any], _Array]: ...
@overload
def cross_entropy_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: Literal["none"],
    return_grad: Literal[True], eps: float = ..., axis: int = ...,
    num_threads: int | None = ..., grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> tuple[_Scores, _Array]: ...
@overload
def cross_entropy_loss(
    target: ArrayLike, logits: ArrayLike, *, input: _LossInput | None = ...,
    temperature: float = ...,
    target_is_logits: bool = ..., reduction: _Reduction = ..., return_grad: bool = ...,
    eps: float = ..., axis: int = ..., num_threads: int | None = ...,
    grad_out: _Array | None = ..., where: ArrayLike | None = ...,
) -> _Scores | tuple[_Scores, _Array]: ...

# summary statistics of scores (any shape; where= and top1_agree= are bool
# arrays broadcast against them)

@dataclass(frozen=True)
class ScoreSummary:
    count: int
    mean: float
    stderr: float
    min: float
    p1: float
    p5: float
    median: float
    p95: float
    p99: float
    p99_9: float
    max: float
    argmax: int | None
    top1_agreement: float | None = ...
    @property
    def percentiles(self) -> dict[float, float]: ...
    def to_dict(self) -> dict[str, int | float | None]: ...

class SummaryAccumulator:
    def __init__(self, n_rows: int | None = ...) -> None: ...
    def update(
        self, scores: ArrayLike, *, where: ArrayLike | None = ...,
        top1_agree: ArrayLike | None = ...,
    ) -> None: ...
    def result(self) -> ScoreSummary: ...

def summary(
    scores: ArrayLike, *, where: ArrayLike | None = ..., top1_agree: ArrayLike | None = ...,
) -> ScoreSummary: ...

# all pairs: the (n, m) matrix, or with topk=k the (indices, values) of each
# row's k nearest

_Measure: TypeAlias = Literal["kl", "jeffreys", "cross_entropy", "jensen_shannon", "js"]

@overload
def pairwise(
    P: ArrayLike, Q: ArrayLike | None = ..., measure: _Measure = ..., *, eps: float = ...,
    base: float | None = ..., normalize: bool = ..., check_sums: bool = ...,
    distance: bool = ..., out: NDArray[Any] | None = ..., topk: None = ...,
    num_threads: int | None = ...,
) -> _Array: ...
@overload
def pairwise(
    P: ArrayLike, Q: ArrayLike | None = ..., measure: _Measure = ..., *, eps: float = ...,
    base: float | None = ..., normalize: bool = ..., check_sums: bool = ...,
    distance: bool = ..., out: None = ..., topk: int, num_threads: int | None = ...,
) -> tuple[NDArray[np.int64], _Array]: ...
