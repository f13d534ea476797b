"""The ``klfast`` command: score the rows of files in batch pipelines.

    klfast score P.npy Q.npy --measure kl --out scores.npy
    klfast score P.npy Q.npy --measure kl --summary --summary-out summary.json
    klfast score base.npy quant.npy --input logits --measure kl --summary

Rows are read, scored and written a chunk at a time, so memory stays bounded
whatever the file size (``.npy`` inputs are memory-mapped). The output is
written to a hidden temporary file next to OUT and renamed at the end: a failed
or interrupted run (Ctrl-C, SIGTERM, SIGHUP) leaves nothing behind; so is the
summary's JSON (--summary-out), and its table goes to stdout. User errors
print one line ``klfast: error: <file>: <problem>`` and exit with status 2.
"""
import argparse
import math
import os
import signal
import sys
import time

import numpy as np

from . import __version__
from ._io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    STOP_SIGNALS,
    InputError,
    JsonWriter,
    PairsWriter,
    ScoreWriter,
    default_chunk_rows,
    format_duration,
    _reason,
    open_rows,
)
from ._core.summary import SummaryAccumulator, format_table
from ._core.validate import (
    DEFAULT_EPS,
    INPUT_FORMS,
    explain_form_row,
    invalid_row_message,
    result_dtype,
)

MEASURES = ("kl", "jeffreys", "entropy", "cross_entropy", "jensen_shannon")
EXIT_USAGE = 2

_MAIN_EPILOG = """\
commands:
  score     score each row (distribution) of P against Q; see `klfast score --help`
  pairwise  every row of P against every row of Q, or each row's nearest;
            see `klfast pairwise --help`

examples:
  klfast score model.npy reference.npy --measure kl --out kl.parquet
  klfast pairwise docs.npy topics.npy --measure js --topk 10 --out nn.parquet
"""

PAIRWISE_MEASURES = ("kl", "jeffreys", "cross_entropy", "jensen_shannon", "js")

_PAIRWISE_DESCRIPTION = """\
Score every distribution (row) of P against every row of Q: row i of the
output holds D(P_i || Q_j) for every j (kl, jeffreys, cross_entropy,
jensen_shannon or js; the formulas of `klfast score`). With --topk K, row i
holds instead the K smallest of them, ascending (ties by the smaller index),
and their indices into Q: memory stays bounded by the rows of Q, the chunk
and K, whatever the number of pairs.

P is read a chunk of rows at a time; Q is loaded whole. Without Q, P is
scored against itself (and loaded whole).
"""

_PAIRWISE_EPILOG = f"""\
input formats: those of `klfast score` ({", ".join(INPUT_FORMATS)}).

output formats (OUT, by extension): {", ".join(OUTPUT_FORMATS)}
  the matrix: .npy of shape (rows of P, rows of Q); .parquet one record per
  row of P, a fixed-size list column named after the measure; .csv one line
  per row of P after a header q0,q1,...
  with --topk K: .npy a structured array (fields index and value, K each);
  .parquet list columns index and <measure>; .csv index0..,<measure>0.. .

examples:
  klfast pairwise docs.npy topics.npy --measure kl --out kl.npy
  klfast pairwise docs.npy topics.npy --measure js --topk 10 --out nn.parquet
  klfast pairwise docs.parquet --measure jeffreys --topk 5 --out near.csv

exit status: as `klfast score`: 0 on success, 2 on bad input or options (one
line on stderr, no output file), 130 on Ctrl-C, 128+N on signal N.
"""

_SCORE_DESCRIPTION = """\
Score each distribution (row) of P against the matching row of Q, or against
a single reference row Q, and write one score per row to OUT.

  kl             KL(p || q) = sum p log(p / q)
  jeffreys       KL(p || q) + KL(q || p)
  cross_entropy  -sum p log q
  entropy        -sum p log p          (takes P only)
  jensen_shannon (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2

Inside the logarithms p and q are floored at --eps (jensen_shannon needs no
floor); terms with p == 0 are 0. Rows must be distributions: a row that does
not sum to 1 within 1e-3 is an error; use --normalize for counts and
histograms, or --no-sum-check to score rows as given.

Model outputs: --input logits (or log_probs) reads each row as logits
(softmax(x / T) is the distribution, T from --temperature) or as natural
logs of probabilities, without making a softmax array; --input FORM_P,FORM_Q
gives one form per input. float16 files are read as they are and computed
in float32.

--summary prints the count, mean (with its standard error), min, percentiles
1, 5, 50, 95, 99 and 99.9 and max (with its row) of the scores on stdout;
--summary-out writes them as JSON. With either, --out may be left out. With
--input logits or log_probs (for P or Q) the summary also gives the top-1
agreement: the share of rows whose largest entry is at the same position in
P and Q (the first of ties), found while each chunk is in memory.
"""

_SCORE_EPILOG = f"""\
input formats (P and Q):
  .npy      memory-mapped a chunk at a time: files larger than RAM are fine
  .npz      one array, chosen with --key when the archive holds several; an
            uncompressed member (np.savez) is memory-mapped, a compressed one
            (np.savez_compressed) is loaded whole
  .parquet  one list / fixed-size-list column (a row per record), or numeric
            columns (a category per column) chosen with --columns; streamed
            --chunk-rows records at a time
  .csv      one row per line, streamed; a header line or not: by default the
            first line is a header if none of its fields is a number and data
            if all are and one is not an integer (0.2,0.8); otherwise (0,1,2
            is what pandas writes as a header, and also a row of counts) say
            which with --header or --no-header
  Inputs must be regular files (not FIFOs or devices).
  Q may be a single reference row: a 1-D .npy or a one-row file.

output formats (OUT, by extension): {", ".join(OUTPUT_FORMATS)}
  one score per row; a column named after the measure in .parquet and .csv.

examples:
  klfast score p.npy q.npy --measure kl --out kl.npy
  klfast score p.npy ref.npy --measure jeffreys --base 2 --out j.csv
  klfast score counts.parquet --columns c0,c1,c2 --normalize --measure entropy --out h.parquet
  klfast score p.npz q.npz --key probs --measure cross_entropy --out ce.npy
  klfast score base.npy quant.npy --measure kl --summary --summary-out kl.json
  klfast score base_logits.npy quant_logits.npy --input logits --measure kl --summary
  klfast score base.npy quant.npy --input logits -m kl --where tokens.npy --summary
  klfast score preds.parquet labels.parquet --columns probs --where valid -m kl --out kl.npy
  klfast score teacher.npy student.npy --input logits --temperature 2 -m kl --out kl.npy
  klfast score /shared/p.npy /shared/q.npy --measure kl --out kl.npy \\
      --dask-scheduler tcp://scheduler:8786

summary (--summary, --summary-out FILE.json):
  the same numbers as klfast.summary() in Python, bit for bit whatever
  --chunk-rows, --threads or --dask-scheduler; percentiles by numpy's default
  ("linear") method. The scores are kept in memory for the percentiles:
  8 bytes per row. In the JSON, an infinite value is the string "inf";
  top1_agreement is null unless --input names logits or log_probs, and then
  the JSON also holds "input" (the form of P and of Q) and "temperature".

exit status: 0 on success, 2 on bad input or options (one line on stderr,
no output file), 130 on Ctrl-C, 128+N on signal N (143 SIGTERM, 129 SIGHUP);
a stopped run leaves no output and no temporary file.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2."""

    def error(self, message):
        sys.stderr.write(f"klfast: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _forms(text):
    forms = tuple(form.strip() for form in text.split(","))
    if len(forms) > 2 or not all(form in INPUT_FORMS for form in forms):
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(INPUT_FORMS)}, or FORM_P,FORM_Q, got {text!r}")
    return forms


def _name_list(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def build_parser():
    parser = _Parser(
        prog="klfast",
        description="Row-wise KL, Jeffreys, entropy and cross-entropy of large arrays.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"klfast {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # listed for --help; main() hands `klfast demo ...` to klfast.__main__
    commands.add_parser("demo", help="score a generated batch with klfast and scipy "
                                     "(the README's demo; klfast demo --help)")
    score = commands.add_parser(
        "score",
        help="score the rows of P against Q",
        description=_SCORE_DESCRIPTION,
        epilog=_SCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("P", help="file of distributions, one per row "
                                 f"({', '.join(INPUT_FORMATS)})")
    score.add_argument("Q", nargs="?", help="file of the same shape, or a single reference "
                                            "row; omitted for --measure entropy")
    score.add_argument("--measure", "-m", required=True, choices=MEASURES,
                       help="what to compute for each row")
    score.add_argument("--out", "-o", metavar="OUT",
                       help=f"output file ({', '.join(OUTPUT_FORMATS)}), replaced atomically; "
                            f"required unless --summary or --summary-out is given")
    score.add_argument("--summary", action="store_true",
                       help="print summary statistics of the scores on stdout (count, mean "
                            "and standard error, min, percentiles, max and its row)")
    score.add_argument("--summary-out", metavar="FILE.json",
                       help="write the summary statistics to FILE.json, replaced atomically")
    score.add_argument("--input", "-i", type=_forms, default=("probs",), metavar="FORM",
                       help="what the rows hold: probs (probabilities, the default), "
                            "log_probs (their natural logs) or logits; FORM_P,FORM_Q for "
                            "one form per input")
    score.add_argument("--temperature", "-t", type=_finite_float, default=None, metavar="T",
                       help="divide the logits by T before the softmax (inputs given as "
                            "logits only; default: 1)")
    score.add_argument("--where", metavar="MASK.npy|COLUMN",
                       help="score only the rows where the mask is True: a bool .npy file "
                            "(one entry per row), or else a column of P's Parquet (bool) or "
                            "CSV (0/1) table; the other rows are not read, are NaN in OUT "
                            "and are left out of the summary (e.g. padding tokens)")
    score.add_argument("--eps", type=_finite_float, default=DEFAULT_EPS, metavar="E",
                       help="floor for p and q inside the logarithms; 0 gives exact values, "
                            "possibly inf; jensen_shannon ignores it (default: %(default)g)")
    score.add_argument("--base", type=_finite_float, default=None, metavar="B",
                       help="logarithm base, e.g. 2 for bits (default: e, nats)")
    score.add_argument("--normalize", action="store_true",
                       help="divide each row by its sum first (counts, histograms)")
    score.add_argument("--no-sum-check", dest="check_sums", action="store_false",
                       help="score rows as given even when they do not sum to 1 (by "
                            "default such a row is an error, unless --normalize)")
    score.add_argument("--axis", type=int, default=-1, choices=(0, 1, -1), metavar="A",
                       help="axis along which each distribution lies: -1 or 1 for rows "
                            "(default), 0 for columns (Parquet/CSV are then loaded whole)")
    score.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="kernel threads (default: all cores this process may use)")
    score.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="R",
                       help="rows scored per chunk; bounds memory (default: about 8 million "
                            "values per chunk)")
    score.add_argument("--dask-scheduler", metavar="ADDRESS",
                       help="score on a running Dask cluster, e.g. tcp://host:8786; inputs "
                            "must be .npy files at a path every worker can read")
    score.add_argument("--key", type=_name_list, metavar="K",
                       help="array name in .npz inputs; K applies to P and Q, or give "
                            "KP,KQ for different names")
    score.add_argument("--columns", type=_name_list, metavar="C1,C2,...",
                       help="Parquet/CSV columns holding a distribution: one list column, or "
                            "several numeric columns (one category each)")
    header = score.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the first line of a CSV input is a header (implied by --columns)")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the first line of a CSV input is data")
    talk = score.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true",
                      help="print nothing on stderr but errors (no progress bar, no "
                           "closing line); --summary still prints its table on stdout")
    talk.add_argument("--progress", action="store_true",
                      help="show the progress bar even when stderr is not a terminal")
    _add_pairwise(commands)
    return parser


def _add_pairwise(commands):
    pairs = commands.add_parser(
        "pairwise",
        help="every row of P against every row of Q (or each row's nearest)",
        description=_PAIRWISE_DESCRIPTION,
        epilog=_PAIRWISE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pairs.add_argument("P", help=f"file of distributions, one per row ({', '.join(INPUT_FORMATS)})")
    pairs.add_argument("Q", nargs="?", help="file of distributions to score P against; "
                                            "omitted: P against itself")
    pairs.add_argument("--measure", "-m", required=True, choices=PAIRWISE_MEASURES,
                       help="what to compute for each pair (js: jensen_shannon)")
    pairs.add_argument("--out", "-o", required=True, metavar="OUT",
                       help=f"output file ({', '.join(OUTPUT_FORMATS)}), replaced atomically")
    pairs.add_argument("--topk", type=_positive_int, default=None, metavar="K",
                       help="keep each row's K smallest divergences and their indices")
    pairs.add_argument("--distance", action="store_true",
                       help="jensen_shannon: the square root (a metric)")
    pairs.add_argument("--eps", type=_finite_float, default=DEFAULT_EPS, metavar="E",
                       help="floor for p and q inside the logarithms (default: %(default)g)")
    pairs.add_argument("--base", type=_finite_float, default=None, metavar="B",
                       help="logarithm base, e.g. 2 for bits (default: e, nats)")
    pairs.add_argument("--normalize", action="store_true",
                       help="divide each row by its sum first (counts, histograms)")
    pairs.add_argument("--no-sum-check", dest="check_sums", action="store_false",
                       help="score rows as given even when they do not sum to 1")
    pairs.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="threads (default: all cores this process may use)")
    pairs.add_argument("--chunk-rows", type=_positive_int, default=None, metavar="R",
                       help="rows of P scored per chunk; bounds memory")
    pairs.add_argument("--key", type=_name_list, metavar="K",
                       help="array name in .npz inputs; K for P and Q, or KP,KQ")
    pairs.add_argument("--columns", type=_name_list, metavar="C1,C2,...",
                       help="Parquet/CSV columns holding a distribution")
    header = pairs.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the first line of a CSV input is a header")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the first line of a CSV input is data")
    talk = pairs.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true",
                      help="print nothing but errors (no progress bar, no summary)")
    talk.add_argument("--progress", action="store_true",
                      help="show the progress bar even when stderr is not a terminal")


class _Progress:
    """Rows done, rows/s and ETA on one self-overwriting stderr line."""

    INTERVAL = 0.2  # seconds between redraws

    def __init__(self, n_rows, enabled, stream=sys.stderr):
        self.n_rows = n_rows
        self.enabled = enabled
        self.stream = stream
        self.start = time.perf_counter()
        self._last = -math.inf
        self._width = 0

    def update(self, done, final=False):
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.INTERVAL and not final):
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        eta = (self.n_rows - done) / rate if rate > 0 else math.inf
        frac = done / self.n_rows if self.n_rows else 1.0
        bar = "#" * int(frac * 24)
        line = (f"[{bar:<24}] {done:,}/{self.n_rows:,} rows {frac:6.1%}  "
                f"{rate:,.0f} rows/s  ETA {format_duration(eta)}")
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        if final:
            self.stream.write("\n")
        self.stream.flush()


class _Input:
    """One input file as rows: ``rows`` is 2-D (n, k) with rows sliceable."""

    def __init__(self, path, rows):
        self.path = path
        self.rows = rows

    @property
    def shape(self):
        return self.rows.shape

    @property
    def dtype(self):
        return self.rows.dtype


def _load(path, key, args):
    array = open_rows(path, key=key, columns=args.columns, header=args.header,
                      chunk_rows=args.chunk_rows, exclude=_where_column(args))
    axis = args.axis
    if array.ndim == 0 or array.ndim > 2:
        raise InputError(path, f"expected a 1-D or 2-D array, got shape {array.shape}")
    if np.dtype(array.dtype).kind not in "biuf":
        raise InputError(path, f"dtype {array.dtype} is not supported (need real numbers)")
    if array.ndim == 1:
        return _Input(path, array.reshape(1, -1))
    if axis == 0:  # distributions are columns
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        array = array.T
    return _Input(path, array)


def _check_options(args):
    if args.measure == "entropy" and args.Q is not None:
        raise InputError(args.Q, "entropy takes P only; remove Q")
    if args.measure != "entropy" and args.Q is None:
        raise InputError(f"{args.measure} needs P and Q; Q is missing")
    if args.eps < 0:
        raise InputError("--eps", f"must be >= 0, got {args.eps:g}")
    if args.base is not None and not (args.base > 0 and args.base != 1):
        raise InputError("--base", f"must be > 0 and != 1, got {args.base:g}")
    if args.key is not None and len(args.key) > 2:
        raise InputError("--key", "give one name, or two (KP,KQ)")
    n_inputs = 1 if args.measure == "entropy" else 2
    if len(args.input) > n_inputs:
        raise InputError("--input", f"{args.measure} takes one input; give one form")
    args.forms = args.input * n_inputs if len(args.input) == 1 else args.input
    if args.temperature is not None:
        if not args.temperature > 0:
            raise InputError("--temperature", f"must be > 0, got {args.temperature:g}")
        if "logits" not in args.forms:
            raise InputError("--temperature", "divides logits, but no input is logits "
                                              "(add --input logits)")
    if _where_column(args):
        _check_where_column(args)
    # top-1 agreement is for model outputs: logits or log-probabilities
    args.top1 = n_inputs == 2 and args.forms != ("probs", "probs")
    if args.out is None and not (args.summary or args.summary_out):
        raise InputError("--out", "required (or --summary / --summary-out for the summary "
                                  "statistics alone)")
    if args.out is not None and args.summary_out is not None \
            and _same_file(args.out, args.summary_out):
        raise InputError("--summary-out", f"{args.summary_out} is also --out; write the "
                                          f"summary to another file")


def _check_shapes(p, q):
    if q is None:
        return False
    n, k = p.shape
    if q.shape[1] != k:
        raise InputError(q.path, f"distributions have {q.shape[1]} values but those of "
                                 f"{p.path} have {k}")
    if q.shape[0] == 1 and n != 1:
        return True  # a single reference row
    if q.shape[0] != n:
        raise InputError(q.path, f"has {q.shape[0]} distributions but {p.path} has {n} "
                                 f"(Q needs as many as P, or exactly one)")
    return False


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def _check_out_is_no_input(out, inputs, what="the scores"):
    for path in inputs:
        if path is not None and _same_file(out, path):
            raise InputError(out, f"is the input file {path}; write {what} to another file")


CLI_SUM_HINT = ("use --normalize to divide each row by its sum, or --no-sum-check to score "
                "the rows as they are")


def _reference_row(q, form, normalize, check_sums):
    """The single row of ``q``, in memory and checked in its ``form`` (its
    errors name Q)."""
    row = np.array(q.rows[0:1])
    if form == "probs":
        message = invalid_row_message(row, None, normalize, (0,), (q.path,),
                                      check_sums=check_sums, sum_hint=CLI_SUM_HINT)
    else:
        message = explain_form_row(q.path, form, row[0], 0, normalize, check_sums)
    if message:
        raise InputError(message)
    return row[0]


def score(args, stderr=sys.stderr, stdout=None):
    """Run ``klfast score``; returns the number of rows scored."""
    _check_options(args)
    mask_file = None if _where_column(args) else args.where
    inputs = tuple(x for x in (args.P, args.Q, mask_file) if x is not None)
    if args.out is not None:
        _check_out_is_no_input(args.out, inputs)
    if args.summary_out is not None:
        _check_out_is_no_input(args.summary_out, inputs, "the summary")
    keys = args.key or [None]
    p = _load(args.P, keys[0], args)
    q = None if args.Q is None else _load(args.Q, keys[-1], args)
    single_q = _check_shapes(p, q)
    n_rows, k = p.shape
    args.mask = _load_where(args.where, n_rows, args)
    q_dtype = p.dtype if q is None else q.dtype
    dtype = result_dtype(np.dtype(p.dtype), np.dtype(q_dtype))
    interactive = stderr.isatty() if hasattr(stderr, "isatty") else False
    progress = _Progress(n_rows, (args.progress or interactive) and not args.quiet, stderr)
    writer = _Outputs(args, n_rows, dtype)
    try:  # at once: from here on, any exit must remove the temporary files
        q_row = (_reference_row(q, args.forms[-1], args.normalize, args.check_sums)
                 if single_q else None)
        if args.dask_scheduler:
            _score_on_dask(args, p, q, q_row, writer, progress)
        else:
            _score_locally(args, p, q, q_row, writer, progress)
        progress.update(n_rows, final=True)
        result = writer.commit()
    except BaseException:
        writer.discard()
        raise
    seconds = time.perf_counter() - progress.start
    if not args.quiet:
        written = [path for path in (args.out, args.summary_out) if path is not None]
        target = f" -> {', '.join(written)}" if written else ""
        stderr.write(f"klfast: {args.measure} of {n_rows:,} rows x {k:,} in {seconds:.2f} s "
                     f"({n_rows / max(seconds, 1e-9):,.0f} rows/s){target}\n")
    if args.summary:
        stdout = sys.stdout if stdout is None else stdout
        stdout.write(format_table(result, f"{args.measure} of {_describe_inputs(args)}") + "\n")
        stdout.flush()
    return n_rows


def _where_column(args):
    """The column --where names (a value not ending in .npy), as a tuple."""
    where = getattr(args, "where", None)
    return () if where is None or where.lower().endswith(".npy") else (where,)


def _load_where(path, n_rows, args):
    """--where: a bool .npy file of one entry per row, memory-mapped, or a
    column of P's table read a chunk at a time (or None)."""
    if path is None:
        return None
    if _where_column(args):
        return _MaskColumn(args, n_rows)
    try:
        mask = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise InputError(path, f"--where: not a readable .npy file ({e})") from None
    if mask.dtype != np.bool_ or mask.shape != (n_rows,):
        raise InputError(path, f"--where: expected bool of shape ({n_rows},), one entry per "
                               f"row, got {mask.dtype} of shape {mask.shape}")
    return mask


def _check_where_column(args):
    """What --where COLUMN needs of the other options (before any file is read)."""
    name = args.where
    if not args.P.lower().endswith((".parquet", ".csv")):
        raise InputError("--where", f"{name!r} is neither a .npy mask file nor a column: "
                                    f"{args.P} is not a Parquet or CSV table")
    if args.axis == 0:
        raise InputError("--where", "a mask column needs rows as distributions (not --axis 0)")
    if args.dask_scheduler:
        raise InputError("--where", "a mask column is not supported with --dask-scheduler; "
                                    "give a bool .npy file")
    if args.P.lower().endswith(".csv") and args.header is False:
        raise InputError("--where", "a mask column needs the CSV header line naming it "
                                    "(not --no-header)")
    if args.columns is not None and name in args.columns:
        raise InputError("--where", f"column {name!r} is also in --columns")


class _MaskColumn:
    """--where COLUMN: the bool column of P's Parquet table (0/1 in a CSV
    table), read a chunk of rows at a time beside the distributions."""

    def __init__(self, args, n_rows):
        name = self.name = args.where
        self.path = args.P
        csv = args.P.lower().endswith(".csv")
        try:
            self._rows = open_rows(args.P, columns=[name], header=args.header,
                                   chunk_rows=args.chunk_rows)
        except InputError as e:  # no such column, most likely
            raise InputError(f"--where {name}", str(e)) from None
        if not (self._rows.dtype == np.bool_ or csv):
            raise InputError(args.P, f"--where: column {name!r} holds {self._rows.dtype}, "
                                     f"not bool")
        if self._rows.shape[0] != n_rows:  # a CSV line with a missing field
            raise InputError(args.P, f"--where: column {name!r} has {self._rows.shape[0]:,} "
                                     f"entries for {n_rows:,} rows")

    def __getitem__(self, rows):
        values = self._rows[rows][:, 0]
        if values.dtype == np.bool_:
            return values
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = rows.start + int(np.flatnonzero(bad)[0])
            raise InputError(self.path, f"--where: column {self.name!r} holds "
                                        f"{values[bad][0]:g} in row {row}; a mask is 0 or 1")
        return values == 1


def _describe_inputs(args):
    return args.P if args.Q is None else f"{args.P} against {args.Q}"


class _Outputs:
    """Where the scores go: the score file (--out), the summary statistics
    (--summary, --summary-out), or both; the scoring loops see one writer.
    Every file is created (as a temporary file) before scoring starts, and
    published only by :meth:`commit`."""

    def __init__(self, args, n_rows, dtype):
        self.dtype = np.dtype(dtype)
        self.rows_written = 0
        self._args = args
        self._summary = (SummaryAccumulator(n_rows) if args.summary or args.summary_out
                         else None)
        self._json = self._scores = None
        try:
            if args.summary_out is not None:
                self._json = JsonWriter(args.summary_out)
            if args.out is not None:
                self._scores = ScoreWriter(args.out, n_rows, dtype, args.measure)
        except BaseException:
            self.discard()
            raise

    def write(self, scores, top1_agree=None, where=None):
        if self._scores is not None:
            self._scores.write(scores)
        if self._summary is not None:
            try:
                self._summary.update(scores, where=where, top1_agree=top1_agree)
            except ValueError as e:  # a NaN score
                raise InputError("--summary", f"{e}") from None
        self.rows_written += len(scores)

    def commit(self):
        """Publish every file; returns the summary (or None)."""
        result = None if self._summary is None else self._summary.result()
        if self._json is not None:
            args = self._args
            forms = {}
            if args.top1:
                forms = {"input": list(args.forms), "temperature": args.temperature or 1.0}
            self._json.write({"measure": args.measure, "p": args.P, "q": args.Q, **forms,
                              "percentile_method": "linear", **result.to_dict()})
        if self._scores is not None:
            self._scores.commit()
        if self._json is not None:
            self._json.commit()
        return result

    def discard(self):
        for writer in (self._scores, self._json):
            if writer is not None:
                writer.discard()


class InvalidValues(ValueError):
    """A row with a negative, NaN or infinite value (or a zero sum with
    --normalize); the message names the file and the row in the whole file."""


def _options(args):
    return dict(eps=0.0 if args.measure == "jensen_shannon" else args.eps, base=args.base,
                normalize=args.normalize, check_sums=args.check_sums, num_threads=args.threads,
                input=args.forms, temperature=args.temperature or 1.0, top1=args.top1)


def _score_chunk(measure, p_rows, q_rows, first_row, names, options, out=None, where=None):
    """Scores of rows ``first_row...`` of the input files, as klfast computes
    them (NaN where ``where`` is False), and whether the top-1 entries of P
    and Q agree in each row (None unless ``options["top1"]``): found while
    the rows are in memory."""
    from ._core.measures import reduce

    o = options
    if where is not None and out is not None:
        out[...] = np.nan  # rows left out: NaN, not the last chunk's scores
    try:
        scores = reduce(measure, p_rows, q_rows, -1, o["eps"], o["base"], o["normalize"],
                        o["check_sums"], False, out, o["num_threads"], o["input"],
                        o["temperature"], where=where, names=names, start=(first_row,))
    except ValueError as e:
        message = None
        # the command line's hint (it scans every row: not with --where)
        if o["input"] == ("probs",) * len(o["input"]) and where is None:
            message = invalid_row_message(p_rows, q_rows, o["normalize"], (first_row,), names,
                                          check_sums=o["check_sums"], sum_hint=CLI_SUM_HINT)
        raise InvalidValues(message or str(e)) from None
    agree = None
    if o["top1"]:
        agree = _top1(p_rows) == _top1(q_rows)
    return scores, agree


def _top1(rows):
    """The position of each row's largest entry (the first of ties, -0.0 and
    0.0 being equal), as np.argmax; rows without NaN (the kernels refuse them)."""
    if rows.dtype != np.float16:
        return np.argmax(rows, axis=-1)
    # numpy's float16 argmax is scalar code: float16 sign-magnitude bits as
    # integers in the floats' order (negatives mirrored, -0.0 onto 0), whose
    # argmax is vectorised; 2-3x faster on 32,000-entry rows
    bits = rows.view(np.int16)
    sign = bits >> 15
    key = sign & 0x7FFF
    key ^= bits
    key -= sign
    return np.argmax(key, axis=-1)


def _score_locally(args, p, q, q_row, writer, progress):
    n_rows, k = p.shape
    chunk = args.chunk_rows or default_chunk_rows(k)
    buffer = np.empty(min(chunk, n_rows), dtype=writer.dtype)
    names = (p.path, None if q is None else q.path)
    for r0 in range(0, n_rows, chunk):
        r1 = min(n_rows, r0 + chunk)
        q_rows = None if q is None else (q_row if q_row is not None else q.rows[r0:r1])
        where = None if args.mask is None else np.asarray(args.mask[r0:r1])
        try:
            out, agree = _score_chunk(args.measure, p.rows[r0:r1], q_rows, r0, names,
                                      _options(args), out=buffer[:r1 - r0], where=where)
        except InvalidValues as e:
            raise InputError(str(e)) from None
        writer.write(out, agree, where)
        progress.update(r1)


def _npy_rows(path, r0, r1, axis):
    """Rows r0:r1 of a .npy file, memory-mapped (a 1-D file is one row)."""
    array = np.load(path, mmap_mode="r")
    if array.ndim == 1:
        return array[None, :]
    return (array.T if axis == 0 else array)[r0:r1]


def _score_file_rows(r0, r1, *, measure, p_path, q, axis, names, options, where_path=None):
    """One Dask task: read rows r0:r1 of P (and Q, unless ``q`` is the
    reference row itself, and the --where mask) from the shared files and
    score them. Reading in the task that scores keeps P and Q rows on one
    worker: nothing but the scores crosses the network."""
    p_rows = _npy_rows(p_path, r0, r1, axis)
    q_rows = q if q is None or isinstance(q, np.ndarray) else _npy_rows(q, r0, r1, axis)
    where = None if where_path is None else np.load(where_path, mmap_mode="r")[r0:r1]
    return _score_chunk(measure, p_rows, q_rows, r0, names, options, where=where)


def _score_on_dask(args, p, q, q_row, writer, progress):
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError("--dask-scheduler", "needs dask: pip install 'klfast[dask]'") from None

    for x in (p, q):  # (a --where column is refused before; a mask file is .npy)
        if x is not None and not x.path.lower().endswith(".npy"):
            raise InputError(x.path, "--dask-scheduler reads .npy files only "
                                     "(from a path every worker can read)")
    n_rows, k = p.shape
    chunk = args.chunk_rows or default_chunk_rows(k)
    try:
        client = Client(args.dask_scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError("--dask-scheduler", f"cannot connect to {args.dask_scheduler} "
                                             f"({reason})") from None
    names = (p.path, None if q is None else q.path)
    with client:
        if q is None:
            q_arg = None
        elif q_row is not None:
            q_arg = client.scatter(q_row, broadcast=True)
        else:
            q_arg = os.path.abspath(q.path)
        starts = list(range(0, n_rows, chunk))
        futures = client.map(_score_file_rows, starts, [min(n_rows, r0 + chunk) for r0 in starts],
                             measure=args.measure, p_path=os.path.abspath(p.path), q=q_arg,
                             axis=args.axis, names=names, options=_options(args),
                             where_path=None if args.mask is None else os.path.abspath(args.where),
                             pure=False)
        try:
            for future in futures:  # in row order; the cluster runs them in parallel
                try:
                    scores, agree = future.result()
                except InvalidValues as e:
                    raise InputError(str(e)) from None
                r0 = writer.rows_written
                where = None if args.mask is None else np.asarray(args.mask[r0:r0 + len(scores)])
                writer.write(scores, agree, where)
                progress.update(writer.rows_written)
        finally:
            client.cancel(futures)


def _pairwise_chunk(p_rows, q_rows, first_row, names, args):
    """Pairs of rows ``first_row...`` of P against Q: the matrix, or (indices,
    values); an invalid row is an InputError naming the file and its row."""
    import klfast

    measure = "jensen_shannon" if args.measure == "js" else args.measure
    options = dict(base=args.base, normalize=args.normalize, check_sums=args.check_sums,
                   num_threads=args.threads, topk=args.topk, distance=args.distance)
    if measure != "jensen_shannon":
        options["eps"] = args.eps
    try:
        return klfast.pairwise(p_rows, q_rows, measure, **options)
    except ValueError as e:
        for name, rows, start in ((names[0], p_rows, first_row), (names[1], q_rows, 0)):
            if rows is None:
                continue
            message = invalid_row_message(rows, None, args.normalize, (start,), (name,),
                                          check_sums=args.check_sums, sum_hint=CLI_SUM_HINT)
            if message:
                raise InputError(message) from None
        raise InputError(str(e)) from None


def pairwise(args, stderr=None):
    """Run ``klfast pairwise``; returns the number of rows of P scored."""
    stderr = sys.stderr if stderr is None else stderr
    if args.key is not None and len(args.key) > 2:
        raise InputError("--key", "give one name, or two (KP,KQ)")
    if args.eps < 0:
        raise InputError("--eps", f"must be >= 0, got {args.eps:g}")
    if args.base is not None and not (args.base > 0 and args.base != 1):
        raise InputError("--base", f"must be > 0 and != 1, got {args.base:g}")
    if args.distance and args.measure not in ("js", "jensen_shannon"):
        raise InputError("--distance", "is for --measure jensen_shannon (js)")
    _check_out_is_no_input(args.out, (args.P, args.Q))
    args.axis = -1
    keys = args.key or [None]
    p = _load(args.P, keys[0], args)
    q = None if args.Q is None else _load(args.Q, keys[-1], args)
    n_rows, k = p.shape
    if q is not None and q.shape[1] != k:
        raise InputError(q.path, f"distributions have {q.shape[1]} values but those of "
                                 f"{p.path} have {k}")
    # Q whole in memory (P too when it is scored against itself)
    q_rows = np.asarray(q.rows if q is not None else p.rows)
    m = q_rows.shape[0]
    if args.topk is not None and args.topk > m:
        raise InputError("--topk", f"{args.topk} is more than the {m} rows of "
                                   f"{(q or p).path}")
    dtype = result_dtype(np.dtype(p.dtype), np.dtype(q_rows.dtype))
    interactive = stderr.isatty() if hasattr(stderr, "isatty") else False
    progress = _Progress(n_rows, (args.progress or interactive) and not args.quiet, stderr)
    measure = "jensen_shannon" if args.measure == "js" else args.measure
    writer = PairsWriter(args.out, n_rows, dtype, measure, m, args.topk)
    names = (p.path, None if q is None else q.path)
    try:
        if q is None and args.topk is None:
            # P against itself: one call, so symmetric measures are exactly symmetric
            result = _pairwise_chunk(q_rows, None, 0, names, args)
            for r0 in range(0, n_rows, max(1, default_chunk_rows(m))):
                writer.write(result[r0:r0 + default_chunk_rows(m)])
                progress.update(writer.rows_written)
        else:
            chunk = args.chunk_rows or max(1, default_chunk_rows(max(k, m)))
            for r0 in range(0, n_rows, chunk):
                r1 = min(n_rows, r0 + chunk)
                rows = q_rows[r0:r1] if q is None else p.rows[r0:r1]
                result = _pairwise_chunk(rows, q_rows, r0, names, args)
                if args.topk is None:
                    writer.write(result)
                else:
                    writer.write(result[1], indices=result[0])
                progress.update(r1)
        progress.update(n_rows, final=True)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    seconds = time.perf_counter() - progress.start
    if not args.quiet:
        what = f"top {args.topk} of " if args.topk else ""
        stderr.write(f"klfast: {measure} {what}{n_rows:,} x {m:,} pairs (k = {k:,}) in "
                     f"{seconds:.2f} s -> {args.out}\n")
    return n_rows


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (removing the temporary file) and exit 128+N."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    # Only the first signal unwinds: later ones must not interrupt the cleanup.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


def main(argv=None):
    """Entry point of the ``klfast`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        from .__main__ import main as demo

        return demo(argv[1:], prog="klfast demo")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # e.g. under nohup
            signal.signal(s, _stop)
    try:
        if args.command == "pairwise":
            pairwise(args)
        else:
            score(args)
    except InputError as e:
        return _fail(str(e))
    except MemoryError:
        return _fail("out of memory; a smaller --chunk-rows needs less")
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{e.strerror or _reason(e)}")
    except KeyboardInterrupt:
        sys.stderr.write("klfast: interrupted; no output written\n")
        return 130
    except Stopped as e:
        sys.stderr.write(f"klfast: stopped by {signal.Signals(e.signum).name}; "
                         f"no output written\n")
        return 128 + e.signum
    return 0


def _fail(message):
    sys.stderr.write(f"klfast: error: {message}\n")
    return EXIT_USAGE


if __name__ == "__main__":
    # Run the module's importable twin, so Dask pickles klfast.cli functions
    # by reference, not __main__ ones by value.
    from klfast.cli import main as _main

    sys.exit(_main())
