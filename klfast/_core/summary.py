"""Summary statistics of a vector of scores, the same for any chunking.

:func:`summary` summarises a whole vector; :class:`SummaryAccumulator` takes
it a chunk at a time (the command line's ``--summary``) and gives the same
bits, whatever the chunk sizes, the thread count or the Dask partitioning:

* sums are exact: every float64 is an integer multiple of 2^-1074, so a sum
  is kept as a Python integer (in units of 2^-1126, see :func:`exact_sum`)
  and rounded once, at the end. Exact addition is associative, so the
  order and grouping of the values cannot change a bit of the result;
* the mean is that exact sum divided by the count, correctly rounded; the
  standard error comes from the exact sum of the rounded squared deviations
  from that mean, so it needs the mean first: a second pass over the kept
  values;
* percentiles are order statistics of the whole vector, which the
  accumulator keeps (8 bytes per included row, as float64): they are exact,
  and no streaming sketch with bounded memory can promise that;
* min, max and the first index of the max do not depend on the order in
  which chunks are compared, as long as they come in row order.

This module imports only numpy and the standard library.
"""
import dataclasses
import math
import numbers

import numpy as np

PERCENTILES = (1.0, 5.0, 50.0, 95.0, 99.0, 99.9)
"""The percentiles a summary reports (50 is the median)."""

# exact_sum: x = mantissa * 2**(bin - _UNIT_EXPONENT) with |mantissa| < 2**53
_UNIT_EXPONENT = 1126  # 1074 (the smallest subnormal is 2**-1074) + 52
_N_BINS = 2098  # np.frexp exponents -1073...1024, shifted by 1073
_HALF_BITS = 26  # a mantissa is split into hi * 2**26 + lo, |hi| < 2**27, lo < 2**26
# Values per exact block: bincount adds |hi| < 2**27 in float64, exactly while
# every partial sum stays below 2**53; 2**18 values also bound the temporaries.
_BLOCK = 1 << 18


def exact_sum(values):
    """The exact sum of finite float64 ``values`` (1-D), as an integer number
    of units 2**-1126.

    ``np.frexp`` writes each value as ``m * 2**e`` with ``0.5 <= |m| < 1``,
    so ``m * 2**53`` is an integer of at most 53 bits and the value is that
    integer times ``2**(e - 53)``. The integers are summed per exponent with
    ``np.bincount`` in float64, split in two halves of 26 and 27 bits so that
    every partial sum is an integer below 2**53 (hence exact whatever the
    order), then the per-exponent sums are shifted into place as Python
    integers.
    """
    total = 0
    for start in range(0, len(values), _BLOCK):
        mantissa, exponent = np.frexp(values[start:start + _BLOCK])
        mantissa = (mantissa * 2.0 ** 53).astype(np.int64)  # exact
        bins = (exponent + 1073).astype(np.intp)
        hi = np.bincount(bins, weights=(mantissa >> _HALF_BITS).astype(np.float64),
                         minlength=_N_BINS)
        lo = np.bincount(bins, weights=(mantissa & ((1 << _HALF_BITS) - 1)).astype(np.float64),
                         minlength=_N_BINS)
        for b in np.flatnonzero((hi != 0.0) | (lo != 0.0)):
            total += ((int(hi[b]) << _HALF_BITS) + int(lo[b])) << int(b)
    return total


def _as_values(x, name):
    """``x`` as a numpy array of real numbers (any shape), or a TypeError naming it."""
    if x is None:
        raise TypeError(f"{name} is required (got None)")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; pass {name}.data with "
                        f"where=~numpy.ma.getmaskarray({name}) to leave the masked values out")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (float, int or bool), got dtype "
                        f"{arr.dtype}")
    return arr


def _as_mask(where, shape, name):
    """``where`` as a bool array of ``shape`` (broadcast), or None for all."""
    if where is None:
        return None
    if isinstance(where, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; pass a plain bool array")
    mask = np.asarray(where)
    if mask.dtype != np.bool_:
        if mask.size == 0:  # [] is float64
            mask = mask.astype(np.bool_)
        else:
            raise TypeError(f"{name} must be an array of bools, got dtype {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {mask.shape} does not broadcast to the scores' "
                         f"shape {shape}") from None


def _check_no_nan(values, positions, offset, name):
    if values.dtype.kind != "f":
        return
    nan = np.isnan(values)
    if nan.any():
        j = int(np.flatnonzero(nan)[0])
        row = offset + int(positions[j] if positions is not None else j)
        raise ValueError(f"{name}: row {row} is NaN; a summary needs numbers (klfast's scores "
                         f"of valid inputs are never NaN): leave such rows out with where=")


def _lerp(a, b, t):
    """numpy's "linear" interpolation between order statistics ``a <= b``,
    term for term (so finite results are numpy's bits); where numpy's formula
    meets an infinity (``inf * 0``, ``inf - inf``) the limit is taken instead."""
    if math.isinf(a) or math.isinf(b):
        if a == b or t == 0.0:
            return a
        if a == -math.inf and b == math.inf:
            return math.nan
        return a if math.isinf(a) else b
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


def _percentiles(values, qs):
    """Percentiles ``qs`` of ``values`` by numpy's default ("linear") method;
    ``values`` is partitioned in place (an order the result does not depend on)."""
    n = len(values)
    points = []
    for q in qs:
        h = (n - 1) * (q / 100.0)  # numpy: (n - 1) * (q / 100), in float64
        lo = min(int(math.floor(h)), n - 1)
        points.append((lo, h - lo if h < n - 1 else 0.0))
    kth = sorted({i for lo, _ in points for i in (lo, min(lo + 1, n - 1))})
    values.partition(kth)
    return tuple(_lerp(float(values[lo]), float(values[min(lo + 1, n - 1)]), t)
                 for lo, t in points)


@dataclasses.dataclass(frozen=True)
class ScoreSummary:
    """Summary statistics of scores; :func:`summary` and
    :meth:`SummaryAccumulator.result` make them.

    Scores are taken as float64, with -0.0 as 0.0. Undefined statistics are
    NaN (every float with ``count == 0``; ``stderr`` with ``count == 1`` or
    an infinite score), ``argmax`` is None with ``count == 0``, and
    ``top1_agreement`` is None unless top-1 agreement was
    given. ``to_dict()`` gives the fields with NaN as None, for JSON.

    Attributes
    ----------
    count : int
        Number of scores summarised (rows left out by ``where`` not counted).
    mean : float
        Their exact sum divided by ``count``, correctly rounded.
    stderr : float
        Standard error of the mean, ``std / sqrt(count)`` with the sample
        standard deviation ``std = sqrt(sum((x - mean)**2) / (count - 1))``.
    min, max : float
        Smallest and largest score.
    p1, p5, median, p95, p99, p99_9 : float
        Percentiles 1, 5, 50, 95, 99 and 99.9 by numpy's default ("linear")
        method: with the scores sorted as ``x[0] <= ... <= x[n-1]`` and
        ``h = (n - 1) * q / 100``, ``x[floor(h)]`` interpolated linearly
        towards ``x[floor(h) + 1]`` by ``h - floor(h)``, bit for bit
        ``np.percentile(scores, q)``; between an infinite and another score
        the limit is taken where numpy's formula would give NaN.
    argmax : int or None
        Index of the first largest score, counted in the scores as given
        (flattened in C order; masked-out rows count).
    top1_agreement : float or None
        Share of the rows summarised whose top-1 categories agree.
    """

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
    top1_agreement: float | None = None

    @property
    def percentiles(self):
        """``{1.0: p1, 5.0: p5, 50.0: median, 95.0: p95, 99.0: p99, 99.9: p99_9}``."""
        return dict(zip(PERCENTILES, (self.p1, self.p5, self.median, self.p95, self.p99,
                                      self.p99_9)))

    def to_dict(self):
        """The fields as a dict for ``json.dumps``: NaN becomes None (null);
        an infinite score stays a float (``json.dumps(..., allow_nan=False)``
        refuses it; the command line writes it as the string "inf")."""
        return {field.name: _none_if_nan(getattr(self, field.name))
                for field in dataclasses.fields(self)}

    def __str__(self):
        return format_table(self)


def _none_if_nan(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def format_table(result, title=None):
    """The summary as an aligned, readable table (what ``print`` shows)."""
    def number(value):
        return "-" if value is None or math.isnan(value) else f"{value:.6g}"

    lines = [] if title is None else [title]
    lines.append(f"  count    {result.count:,}")
    stderr = "" if math.isnan(result.stderr) else f"  (standard error {result.stderr:.2g})"
    lines.append(f"  mean     {number(result.mean)}{stderr}")
    lines.append(f"  min      {number(result.min)}")
    for label, value in (("p1", result.p1), ("p5", result.p5), ("median", result.median),
                         ("p95", result.p95), ("p99", result.p99), ("p99.9", result.p99_9)):
        lines.append(f"  {label:<8} {number(value)}")
    at = "" if result.argmax is None else f"  (row {result.argmax:,})"
    lines.append(f"  max      {number(result.max)}{at}")
    if result.top1_agreement is not None:
        lines.append(f"  top-1    {number(100.0 * result.top1_agreement)}% of rows agree")
    return "\n".join(lines)


def _sum_of_squared_deviations(values, mean, exponent=0):
    """The exact sum of ``((x - mean) * 2**exponent)**2``, each square rounded
    to float64, in units of 2**-1126; None if a square overflows."""
    squares = 0
    scale = 2.0 ** exponent
    with np.errstate(over="ignore"):
        for start in range(0, len(values), _BLOCK):
            deviations = values[start:start + _BLOCK] * scale - mean * scale
            deviations *= deviations
            if not np.isfinite(deviations).all():
                return None
            squares += exact_sum(deviations)
    return squares


class SummaryAccumulator:
    """Summary statistics of scores given a chunk at a time, in row order.

    ``result()`` is bitwise the same as ``summary(all_scores, where=...)``
    for any split of the scores into chunks. The included scores are kept
    (8 bytes each, as float64) for the percentiles and the standard error:
    memory grows like the score vector itself, which is ``k`` times smaller
    than inputs of ``k`` categories.

    Parameters
    ----------
    n_rows : int, optional
        The number of scores to come, if known: the storage, which doubles as
        scores arrive, then never grows beyond it. Nothing is allocated up
        front, so a count a file only declares costs nothing.

    Examples
    --------
    >>> import numpy as np, klfast
    >>> scores = np.array([0.5, 0.1, 0.9, 0.3])
    >>> acc = klfast.SummaryAccumulator()
    >>> acc.update(scores[:3]); acc.update(scores[3:])
    >>> acc.result() == klfast.summary(scores)
    True
    """

    def __init__(self, n_rows=None):
        if n_rows is not None and (isinstance(n_rows, bool)
                                   or not isinstance(n_rows, numbers.Integral) or n_rows < 0):
            raise TypeError(f"n_rows must be None or an int >= 0, got {n_rows!r}")
        self._n_rows = None if n_rows is None else int(n_rows)
        self._values = np.empty(0, dtype=np.float64)
        self._count = 0  # values kept in self._values
        self._rows_seen = 0  # rows given, included or not: the offset of the next chunk
        self._sum = 0  # exact sum of the finite values, in units of 2**-1126
        self._n_posinf = 0
        self._n_neginf = 0
        self._max = -math.inf
        self._argmax = None
        self._min = math.inf
        self._top1 = None  # None: never given; else the number of agreeing rows

    def update(self, scores, *, where=None, top1_agree=None):
        """Add the next chunk of scores (any shape, flattened in C order).

        Parameters
        ----------
        scores : array_like of real numbers
            The next scores; NaN is a ``ValueError`` naming the row.
        where : array_like of bool, optional
            Scores to include (broadcast against ``scores``); the others are
            neither read nor counted, but count for the row numbers.
        top1_agree : array_like of bool, optional
            For each score, whether the top-1 categories of its two
            distributions agree; give it with every chunk or with none.
        """
        x = _as_values(scores, "scores").reshape(-1)
        n_given = len(x)
        mask = _as_mask(where, x.shape, "where")
        agree = None
        if top1_agree is not None:
            agree = _as_mask(top1_agree, x.shape, "top1_agree")
            if self._top1 is None and self._rows_seen:
                raise ValueError("top1_agree: given for this chunk but not for the previous "
                                 "ones; give it with every chunk or with none")
        elif self._top1 is not None:
            raise ValueError("top1_agree: given for the previous chunks but not for this one")
        positions = None
        if mask is not None:
            positions = np.flatnonzero(mask)
            x = x[positions]
            if agree is not None:
                agree = agree[positions]
        _check_no_nan(x, positions, self._rows_seen, "scores")
        self._add(x, positions)
        if agree is not None:
            self._top1 = (self._top1 or 0) + int(np.count_nonzero(agree))
        self._rows_seen += n_given

    def _add(self, x, positions):
        n = len(x)
        if n == 0:
            return
        if self._count + n > len(self._values):
            capacity = max(4096, 2 * len(self._values))
            if self._n_rows is not None:
                capacity = min(capacity, self._n_rows)
            grown = np.empty(max(self._count + n, capacity), dtype=np.float64)
            grown[:self._count] = self._values[:self._count]
            self._values = grown
        kept = self._values[self._count:self._count + n]
        kept[...] = x
        # -0.0 + 0.0 is +0.0: one zero, so that no statistic depends on which
        # of two equal zeros comes first
        np.add(kept, 0.0, out=kept)
        self._count += n
        finite = np.isfinite(kept)
        if finite.all():
            self._sum += exact_sum(kept)
        else:
            self._sum += exact_sum(kept[finite])
            self._n_posinf += int(np.count_nonzero(kept == math.inf))
            self._n_neginf += int(np.count_nonzero(kept == -math.inf))
        j = int(np.argmax(kept))
        if self._argmax is None or kept[j] > self._max:  # strict: the first max stays
            self._max = float(kept[j])
            self._argmax = self._rows_seen + int(positions[j] if positions is not None else j)
        self._min = min(self._min, float(kept.min()))

    def result(self):
        """The :class:`ScoreSummary` of every score given so far."""
        n = self._count
        top1 = None if self._top1 is None else (self._top1 / n if n else math.nan)
        if n == 0:
            nan = math.nan
            return ScoreSummary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, None,
                                top1)
        values = self._values[:n]
        if self._n_posinf and self._n_neginf:
            mean = math.nan
        elif self._n_posinf or self._n_neginf:
            mean = math.inf if self._n_posinf else -math.inf
        else:
            mean = self._sum / (n << _UNIT_EXPONENT)  # int / int: correctly rounded
        if n == 1 or not math.isfinite(mean):
            stderr = math.nan
        else:
            squares, scale = _sum_of_squared_deviations(values, mean), 0
            if squares is None:  # a square above 1.8e308: again, scaled by 2**-600
                squares, scale = _sum_of_squared_deviations(values, mean, -600), 600
            stderr = math.ldexp(math.sqrt(squares / ((n * (n - 1)) << _UNIT_EXPONENT)), scale)
        # the percentiles last: they reorder the kept values, which changes nothing above
        p1, p5, median, p95, p99, p99_9 = _percentiles(values, PERCENTILES)
        return ScoreSummary(n, mean, stderr, self._min, p1, p5, median, p95, p99, p99_9,
                            self._max, self._argmax, top1)


def summary(scores, *, where=None, top1_agree=None):
    """Summary statistics of scores: count, mean and its standard error, min,
    percentiles 1, 5, 50 (median), 95, 99 and 99.9, max and where it is.

    The results are the same, bit for bit, however the scores were computed
    or split: the sums behind the mean and the standard error are exact and
    rounded once; the percentiles are those of the whole vector.

    Parameters
    ----------
    scores : array_like of real numbers, any shape
        Typically the row scores of ``klfast.kl`` and the other measures; a
        dask array is computed first (the scores, one per row, are gathered).
        Computed in float64. NaN is refused (``ValueError`` naming the row).
    where : array_like of bool, optional
        Scores to include, broadcast against ``scores``; the others are
        neither read nor counted. All excluded gives ``count == 0``.
    top1_agree : array_like of bool, optional
        For each score, whether the top-1 categories of its two distributions
        agree (e.g. ``p.argmax(-1) == q.argmax(-1)``); the summary then
        reports the share of included rows that agree.

    Returns
    -------
    ScoreSummary
        A frozen dataclass; ``to_dict()`` for JSON, ``print()`` for a table.
        With no scores (``count == 0``) every statistic is NaN and
        ``argmax`` is None; with one, ``stderr`` is NaN.

    Raises
    ------
    ValueError
        A NaN score (naming its row), or a ``where`` that does not broadcast.
    TypeError
        Scores that are not real numbers, a masked array, or a ``where`` or
        ``top1_agree`` that is not boolean.

    Notes
    -----
    ``mean`` is the exact sum divided by ``count``, correctly rounded (within
    half an ulp of ``math.fsum(scores) / count``'s exact value).
    ``stderr = sqrt(sum((x - mean)**2) / (count - 1) / count)``, with the
    squared deviations rounded to float64 and summed exactly. Infinite scores
    (``eps=0`` may give them) make ``mean`` infinite and ``stderr`` NaN.
    Percentiles follow numpy's default method ("linear"), see
    :class:`ScoreSummary`. Memory: one float64 copy of the included scores.

    Examples
    --------
    >>> import numpy as np, klfast
    >>> s = klfast.summary(np.array([0.5, 0.1, 0.9, 0.3]))
    >>> s.count, s.mean, s.median, s.max, s.argmax
    (4, 0.45, 0.4, 0.9, 2)
    """
    if type(scores).__module__.split(".")[0] == "dask" or \
            type(where).__module__.split(".")[0] == "dask":
        from .. import dask as klfast_dask  # dask is imported only here

        return klfast_dask.summary(scores, where=where, top1_agree=top1_agree)
    x = _as_values(scores, "scores")
    accumulator = SummaryAccumulator(x.size)
    accumulator.update(x, where=where, top1_agree=top1_agree)
    return accumulator.result()
