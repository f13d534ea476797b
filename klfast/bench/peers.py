"""What the benchmarks time: inputs, klfast, its peers and the read floor.

Shared by ``benchmarks/`` (pytest-benchmark) and ``python -m klfast.bench`` so
both time exactly the same expressions. Not public API.

A *peer* computes one measure of klfast with another library. ``prepare``
returns a zero-argument callable (the timed part) or raises
:class:`Unsupported`. Optional libraries are imported only when a peer is
prepared, so a missing one costs nothing until it is asked for.

Expressions (``P``: the rows, ``Q``: the rows or one reference row):

=====================  =====================================================
scipy                  ``rel_entr(P, Q).sum(-1)`` (Jeffreys: plus
                       ``rel_entr(Q, P).sum(-1)``); entropy
                       ``entr(P).sum(-1)``; cross-entropy
                       ``-xlogy(P, Q).sum(-1)``; Jensen-Shannon
                       ``scipy.spatial.distance.jensenshannon(P, Q,
                       axis=-1) ** 2`` (it normalises the rows and returns
                       the distance, squared here; the inputs' rows already
                       sum to 1)
scipy.stats.entropy    ``entropy(P, Q, axis=-1)`` (normalises the rows)
numpy                  ``(P * np.log(P / Q)).sum(-1)``; with zeros in the
                       input the floored form ``np.maximum(x, eps)`` inside
                       the log (the plain one gives NaN at 0 / 0);
                       Jensen-Shannon with ``m = 0.5 * (P + Q)``:
                       ``0.5 * (where(P > 0, P * log(P / m), 0)
                       + where(Q > 0, Q * log(Q / m), 0)).sum(-1)``
numexpr                ``evaluate("where(P > 0, P * log(P / Q), 0)").sum(-1)``
                       (Jensen-Shannon: the numpy expression in one
                       ``evaluate``, ``m`` inline)
numba                  a ``parallel=True, fastmath=True`` row loop with a
                       float64 accumulator and the eps rule
torch                  ``torch.xlogy(P, P / Q).sum(-1)`` on CPU tensors
                       sharing memory with the arrays (floored with zeros)
numkong                ``numkong.kld(P, Q)`` (single-threaded SIMD; its log
                       is approximate and it adds 1e-7 to every entry)
read floor             ``klfast._diagnostics.read_floor``: read and sum both
                       inputs once (P twice for entropy and a reference row,
                       which costs one pass)
=====================  =====================================================

Jensen-Shannon has no ``eps``; scipy.stats.entropy, torch and numkong do not
compute it. Its accuracy reference is the numpy expression in float64 (see
:func:`reference`), the others' is the scipy one.
"""
import math
from dataclasses import dataclass

import numpy as np

import klfast
from klfast import _diagnostics, _kernels
from klfast._core.engine import MIN_PARALLEL_ELEMENTS

EPS_MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy")  # the ones with an eps floor
MEASURES = EPS_MEASURES + ("jensen_shannon",)
EPS = klfast.DEFAULT_EPS
ZERO_FRACTION = 0.1


class Unsupported(Exception):
    """This peer cannot compute this case (or its library is not installed)."""


@dataclass(frozen=True)
class Shape:
    """``n_rows`` distributions of length ``k``; with ``ref_row`` Q is one row
    of shape ``(k,)`` broadcast against P; with ``cols`` each distribution is
    a column of a C-ordered ``(k, n_rows)`` array (scored along axis 0: the
    same memory as a Fortran-ordered ``(n_rows, k)`` array, which is what the
    peers are given)."""

    n_rows: int
    k: int
    ref_row: bool = False
    cols: bool = False

    SUFFIXES = {"": {}, "ref": {"ref_row": True}, "cols": {"cols": True}}

    @classmethod
    def parse(cls, text):
        """``"100000x1000"``; ``"100000x1000:ref"`` for one reference row,
        ``"10x5000000:cols"`` for distributions stored as columns."""
        body, _, suffix = text.strip().partition(":")
        if suffix not in cls.SUFFIXES:
            raise ValueError(f"shape {text!r}: the suffixes are ':ref' and ':cols'")
        try:
            n_rows, k = (int(x.replace("_", "").replace(",", "")) for x in body.lower().split("x"))
        except ValueError:
            raise ValueError(f"shape {text!r}: expected ROWSxCOLS, e.g. 100000x1000") from None
        if n_rows < 1 or k < 1:
            raise ValueError(f"shape {text!r}: sizes must be >= 1")
        return cls(n_rows, k, **cls.SUFFIXES[suffix])

    @property
    def full(self):
        """P and Q are both whole matrices in C order (no reference row, no columns)."""
        return not (self.ref_row or self.cols)

    @property
    def key(self):
        return f"{self.n_rows}x{self.k}" + (":ref" if self.ref_row else ":cols" if self.cols else "")

    @property
    def label(self):
        if self.ref_row:
            return f"({self.k:,},) vs {self.n_rows:,} x {self.k:,}"
        if self.cols:
            return f"{self.n_rows:,} columns of {self.k:,}"
        return f"{self.n_rows:,} x {self.k:,}"

    @property
    def elements(self):
        return self.n_rows * self.k


@dataclass(frozen=True)
class Case:
    measure: str
    dtype: str
    shape: Shape
    zeros: bool

    @property
    def label(self):
        zeros = ", 10% zeros" if self.zeros else ""
        return f"{self.measure} {self.dtype} {self.shape.label}{zeros}"

    def bytes_read(self):
        """Bytes a single pass over the inputs reads."""
        item = np.dtype(self.dtype).itemsize
        n = self.shape.elements
        if self.measure == "entropy":
            return n * item
        return (n + (self.shape.k if self.shape.ref_row else n)) * item


def make_inputs(shape, dtype, zeros, seed=0):
    """P of ``shape`` and Q (same shape, or one row with ``shape.ref_row``),
    rows normalised to sum 1. With ``zeros``, 10 % of the entries are exactly
    0 in both P and Q at the same places (so KL stays finite and every peer
    agrees); for a reference row the zeros are 10 % of the columns.
    Peak memory: the two inputs plus one boolean mask (with ``shape.cols``,
    plus a transposed copy of one input while it is made)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    p = rng.random((shape.n_rows, shape.k), dtype=dtype)
    q = rng.random((1 if shape.ref_row else shape.n_rows, shape.k), dtype=dtype)
    # random() can return exactly 0 (float32: 1 in 2**24): shift, so inputs
    # without zeros have none and the plain numpy expression stays finite
    p += dtype.type(1e-3)
    q += dtype.type(1e-3)
    if zeros:
        if shape.ref_row:
            cols = rng.random(shape.k) < ZERO_FRACTION
            cols[0] = False  # no row is all zeros
            p[:, cols] = 0
            q[:, cols] = 0
        else:
            for r0 in range(0, shape.n_rows, max(1, (1 << 22) // shape.k)):
                block = slice(r0, r0 + max(1, (1 << 22) // shape.k))
                mask = rng.random(p[block].shape) < ZERO_FRACTION
                mask[:, 0] = False
                p[block][mask] = 0
                q[block][mask] = 0
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    if shape.cols:  # each row becomes a column of a (k, n_rows) array
        p = np.ascontiguousarray(p.T).T
        q = np.ascontiguousarray(q.T).T
    return p, (q[0] if shape.ref_row else q)


# -- the peers ---------------------------------------------------------------

class Peer:
    name = ""
    library = None          # module whose version the report lists
    threaded = False        # takes a thread count
    approximate = False     # documented approximation: loose agreement check
    measures = MEASURES

    def available(self):
        try:
            self._import()
        except ImportError:
            return False
        return True

    def _import(self):
        return None

    def prepare(self, case, p, q, threads):
        """A zero-argument callable computing ``case`` on ``p``, ``q``.

        Global thread settings (numexpr, numba, torch) are made here, so call
        the result before preparing another peer of the same library."""
        if case.measure not in self.measures:
            raise Unsupported(f"{self.name} has no {case.measure}")
        try:
            mod = self._import()
        except ImportError as exc:
            raise Unsupported(f"{self.name} is not installed ({exc})") from None
        return self._prepare(mod, case, p, q, threads)

    def tolerance(self, dtype):
        """(rtol, atol) for agreement with klfast."""
        if self.approximate:
            return 5e-2, 1e-4
        return (1e-4, 1e-6) if np.dtype(dtype) == np.float32 else (1e-9, 1e-12)

    def label(self, threads):
        return f"{self.name} ({threads} thr)" if self.threaded else self.name


class KlfastPeer(Peer):
    name = "klfast"
    threaded = True

    def _prepare(self, mod, case, p, q, threads):
        fn = getattr(klfast, case.measure)
        if threads == klfast.default_num_threads():
            threads = None  # the call users make
        axis = -1
        if case.shape.cols:  # the (k, n_rows) arrays, along axis 0, as users call it
            p, q, axis = p.T, q.T, 0
        if case.measure == "entropy":
            return lambda: fn(p, axis=axis, num_threads=threads)
        return lambda: fn(p, q, axis=axis, num_threads=threads)


class KlfastIsaPeer(KlfastPeer):
    """klfast with its kernels forced to one instruction-set level (as
    ``KLFAST_ISA`` does): shows what each level, and the vectorisation, buys."""

    def __init__(self, level):
        self.level = level
        self.name = f"klfast[{level}]"

    def available(self):
        return self.level in getattr(_kernels, "supported_isas", lambda: ())()

    def _prepare(self, mod, case, p, q, threads):
        if not self.available():
            raise Unsupported(f"this CPU or build has no {self.level} level")
        _kernels.set_isa(self.level)  # global: restore with restore_isa() after timing
        return super()._prepare(mod, case, p, q, threads)


def use_isa(level):
    """Force klfast's kernels to ``level`` (for a KlfastIsaPeer's samples)."""
    _kernels.set_isa(level)


def restore_isa():
    """Back to the level klfast chose at import (after a KlfastIsaPeer)."""
    if hasattr(_kernels, "set_isa"):
        _kernels.set_isa(_DEFAULT_ISA)


_DEFAULT_ISA = _kernels.get_isa() if hasattr(_kernels, "get_isa") else None


class ReadFloor(Peer):
    name = "read floor"
    threaded = True

    def _prepare(self, mod, case, p, q, threads):
        if case.measure == "entropy" or case.shape.ref_row:
            second = p  # same cache lines: one pass over memory, like the kernel
        else:
            second = q
        if case.shape.cols:  # the same bytes, in memory order
            p, second = p.T, second.T
        if not (p.flags.c_contiguous and second.flags.c_contiguous):
            raise Unsupported("read floor needs C-contiguous inputs")
        # klfast runs small inputs on one thread; so does its floor
        small = MIN_PARALLEL_ELEMENTS
        if case.shape.elements < small or case.shape.n_rows < 2:
            threads = 1
        return lambda: _diagnostics.read_floor(p, second, threads)


class ScipyPeer(Peer):
    name = "scipy"
    library = "scipy"

    def _import(self):
        import scipy.special
        return scipy.special

    def _prepare(self, sp, case, p, q, threads):
        m = case.measure
        if m == "kl":
            return lambda: sp.rel_entr(p, q).sum(axis=-1)
        if m == "jeffreys":
            return lambda: sp.rel_entr(p, q).sum(axis=-1) + sp.rel_entr(q, p).sum(axis=-1)
        if m == "entropy":
            return lambda: sp.entr(p).sum(axis=-1)
        if m == "jensen_shannon":
            from scipy.spatial.distance import jensenshannon
            return lambda: jensenshannon(p, q, axis=-1) ** 2
        return lambda: -sp.xlogy(p, q).sum(axis=-1)


class ScipyStatsPeer(Peer):
    name = "scipy.stats.entropy"
    library = "scipy"
    measures = EPS_MEASURES

    def _import(self):
        import scipy.stats
        return scipy.stats

    def _prepare(self, st, case, p, q, threads):
        m = case.measure
        if m == "kl":
            return lambda: st.entropy(p, q, axis=-1)
        if m == "jeffreys":
            return lambda: st.entropy(p, q, axis=-1) + st.entropy(q, p, axis=-1)
        if m == "entropy":
            return lambda: st.entropy(p, axis=-1)
        return lambda: st.entropy(p, axis=-1) + st.entropy(p, q, axis=-1)


class NumpyPeer(Peer):
    name = "numpy"
    library = "numpy"

    def _import(self):
        return np

    def _prepare(self, np_, case, p, q, threads):
        m = case.measure
        eps = p.dtype.type(EPS)
        if case.zeros:  # 0 * log(0 / 0) is NaN: the floored form is the correct one
            def fl(x):
                return np.maximum(x, eps)
        else:
            def fl(x):
                return x

        def run(expr):
            def call():
                with np.errstate(divide="ignore", invalid="ignore"):
                    return expr()
            return call

        if m == "jensen_shannon":  # no eps: m > 0 wherever P or Q is
            def js():
                mid = 0.5 * (p + q)
                return 0.5 * (np.where(p > 0, p * np.log(p / mid), 0)
                              + np.where(q > 0, q * np.log(q / mid), 0)).sum(axis=-1)
            return run(js)
        if m == "kl":
            return run(lambda: (p * np.log(fl(p) / fl(q))).sum(axis=-1))
        if m == "jeffreys":
            return run(lambda: ((p - q) * np.log(fl(p) / fl(q))).sum(axis=-1))
        if m == "entropy":
            return run(lambda: -(p * np.log(fl(p))).sum(axis=-1))
        return run(lambda: -(p * np.log(fl(q))).sum(axis=-1))


class NumexprPeer(Peer):
    name = "numexpr"
    library = "numexpr"
    threaded = True
    _EXPR = {
        "kl": "where(P > 0, P * log(P / Q), 0)",
        "jeffreys": "where(P != Q, (P - Q) * log(P / Q), 0)",
        "entropy": "where(P > 0, -P * log(P), 0)",
        "cross_entropy": "where(P > 0, -P * log(Q), 0)",
        # halved after the sum: a float constant would make float32 inputs float64
        "jensen_shannon": "where(P > 0, P * log(2 * P / (P + Q)), 0)"
                          " + where(Q > 0, Q * log(2 * Q / (P + Q)), 0)",
    }

    def _import(self):
        import numexpr
        return numexpr

    def _prepare(self, ne, case, p, q, threads):
        expr = self._EXPR[case.measure]
        env = {"P": p, "Q": q}

        ne.set_num_threads(threads)  # global: set here, not in the timed call
        if case.measure == "jensen_shannon":
            return lambda: 0.5 * ne.evaluate(expr, local_dict=env).sum(axis=-1)
        return lambda: ne.evaluate(expr, local_dict=env).sum(axis=-1)


_NUMBA_KERNELS = {}


def _numba_kernels():
    """Compile the numba row loops once per process (lazily: numba is optional):
    one loop, specialised per measure by its jitted, inlined term."""
    if _NUMBA_KERNELS:
        return _NUMBA_KERNELS
    import numba

    def row_loop(term, uses_q=True):
        @numba.njit(parallel=True, fastmath=True, nogil=True)
        def loop(p, q, eps):
            n, k = p.shape
            out = np.empty(n, dtype=np.float64)
            q_step = 1 if q.shape[0] > 1 else 0  # 0: one reference row
            for i in numba.prange(n):
                qi = i * q_step
                s = 0.0
                for j in range(k):
                    b = np.float64(q[qi, j]) if uses_q else 0.0
                    s += term(np.float64(p[i, j]), b, eps)
                out[i] = s
            return out
        return loop

    term = numba.njit(inline="always", fastmath=True)

    @term
    def kl(a, b, eps):
        return a * np.log(max(a, eps) / max(b, eps)) if a > 0.0 else 0.0

    @term
    def jeffreys(a, b, eps):
        return (a - b) * np.log(max(a, eps) / max(b, eps)) if a != b else 0.0

    @term
    def entropy(a, b, eps):
        return -a * np.log(max(a, eps)) if a > 0.0 else 0.0

    @term
    def cross_entropy(a, b, eps):
        return -a * np.log(max(b, eps)) if a > 0.0 else 0.0

    @term
    def jensen_shannon(a, b, eps):  # no eps: m > 0 wherever p or q is
        m = 0.5 * (a + b)
        return 0.5 * ((a * np.log(a / m) if a > 0.0 else 0.0) +
                      (b * np.log(b / m) if b > 0.0 else 0.0))

    _NUMBA_KERNELS.update(kl=row_loop(kl), jeffreys=row_loop(jeffreys),
                          entropy=row_loop(entropy, uses_q=False),
                          cross_entropy=row_loop(cross_entropy),
                          jensen_shannon=row_loop(jensen_shannon))
    return _NUMBA_KERNELS


class NumbaPeer(Peer):
    name = "numba"
    library = "numba"
    threaded = True

    def _import(self):
        import numba
        return numba

    def _prepare(self, numba, case, p, q, threads):
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise Unsupported(f"numba was started with {numba.config.NUMBA_NUM_THREADS} threads")
        kernel = _numba_kernels()[case.measure]
        q2 = q.reshape(1, -1) if q.ndim == 1 else q

        numba.set_num_threads(threads)
        return lambda: kernel(p, q2, EPS).astype(p.dtype, copy=False)


class TorchPeer(Peer):
    name = "torch"
    library = "torch"
    threaded = True
    measures = EPS_MEASURES

    def _import(self):
        import torch
        return torch

    def _prepare(self, torch, case, p, q, threads):
        tp = torch.from_numpy(p)
        tq = torch.from_numpy(q)
        m = case.measure
        if case.zeros:
            def ratio():
                return tp.clamp_min(EPS) / tq.clamp_min(EPS)
        else:
            def ratio():
                return tp / tq
        if m == "kl":
            def expr():
                return torch.xlogy(tp, ratio()).sum(-1)
        elif m == "jeffreys":
            def expr():
                return ((tp - tq) * torch.log(ratio())).sum(-1)
        elif m == "entropy":
            def expr():
                return -torch.xlogy(tp, tp).sum(-1)
        else:
            def expr():
                return -torch.xlogy(tp, tq).sum(-1)

        torch.set_num_threads(threads)

        def call():
            with torch.inference_mode():
                return expr().numpy()
        return call


class NumkongPeer(Peer):
    name = "numkong"
    library = "numkong"
    approximate = True
    measures = ("kl", "jeffreys")

    def _import(self):
        import numkong
        return numkong

    def _prepare(self, nk, case, p, q, threads):
        if case.shape.cols:
            raise Unsupported("numkong's kld takes rows, not columns")
        qq = np.broadcast_to(q, p.shape) if case.shape.ref_row else q
        if case.measure == "kl":
            return lambda: np.asarray(nk.kld(p, qq))
        return lambda: np.asarray(nk.kld(p, qq)) + np.asarray(nk.kld(qq, p))


KLFAST = KlfastPeer()
READ_FLOOR = ReadFloor()
SCIPY = ScipyPeer()
NUMPY = NumpyPeer()
PEERS = (KLFAST, READ_FLOOR, SCIPY, ScipyStatsPeer(), NUMPY, NumexprPeer(),
         NumbaPeer(), TorchPeer(), NumkongPeer())
PEERS_BY_NAME = {peer.name: peer for peer in PEERS}


def reference_peer(measure):
    """The peer whose expression is the accuracy reference: scipy's, except for
    Jensen-Shannon, where scipy's ``jensenshannon`` renormalises the rows and
    takes a square root: the plain numpy expression."""
    return NUMPY if measure == "jensen_shannon" else SCIPY


def reference(case, p, q):
    """The reference expression on float64 copies, row block by row block:
    the accuracy reference (independent of klfast, exact for float32 inputs)."""
    peer = reference_peer(case.measure)
    block = max(1, (1 << 20) // case.shape.k)
    out = np.empty(case.shape.n_rows, dtype=np.float64)
    q64 = q.astype(np.float64) if case.shape.ref_row else None
    for r0 in range(0, case.shape.n_rows, block):
        r1 = min(r0 + block, case.shape.n_rows)
        pb = p[r0:r1].astype(np.float64)
        qb = q64 if q64 is not None else q[r0:r1].astype(np.float64)
        out[r0:r1] = peer.prepare(case, pb, qb, 1)()
    return out


def library_versions():
    """Versions of the libraries the peers use (None: not installed)."""
    import importlib
    import importlib.metadata
    import platform

    versions = {"python": platform.python_version(), "klfast": klfast.__version__}
    for name in ("numpy", "scipy", "numexpr", "numba", "torch", "numkong", "matplotlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def agreement(result, expected, dtype, peer):
    """(ok, max relative difference) of ``result`` against ``expected``."""
    result = np.asarray(result, dtype=np.float64).reshape(-1)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    if result.shape != expected.shape:
        return False, math.inf
    rtol, atol = peer.tolerance(dtype)
    ok = bool(np.allclose(result, expected, rtol=rtol, atol=atol))
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.abs(result - expected) / np.maximum(np.abs(expected), 1e-300)
    finite = np.isfinite(result).all() and np.isfinite(expected).all()
    return ok and bool(finite), float(np.max(diff)) if diff.size else 0.0
