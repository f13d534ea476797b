"""Rows from files and scores to files, for the command line and the Dask path.

Readers give a 2-D array-like of rows (``shape``, ``dtype``, slicing by rows)
without loading the file when the format allows it: ``.npy`` is memory-mapped,
Parquet is read one row group at a time. ``.npz`` and CSV are loaded whole
(CSV is meant for small data). Writers fill ``.npy``, Parquet or CSV in row
order and publish the file only on ``commit()``: until then it is a hidden
temporary file in the target's directory, which ``discard()`` removes.

Problems a user can fix raise :class:`InputError`, whose text names the file.
"""
import math
import os
import tempfile
import zipfile

import numpy as np

from . import _api

INPUT_FORMATS = (".npy", ".npz", ".parquet", ".csv")
OUTPUT_FORMATS = (".npy", ".parquet", ".csv")


class InputError(Exception):
    """A problem with one file or option, worded for the user: ``"<file>: <problem>"``."""

    def __init__(self, where, problem=None):
        super().__init__(where if problem is None else f"{where}: {problem}")


def invalid_row_message(p, q, normalize, start=(), names=("p", "q"), check_sums=False):
    """Explain the first invalid row of a block, numbered in the whole array.

    ``p`` and ``q`` (``q`` may be None) hold distributions along their last
    axis and broadcast against each other; ``start`` is the index of the
    block's first row in the whole (broadcast) array of rows. Used after the
    kernel reported an invalid row, so it may cost a pass over the block.
    Returns None when no row is invalid.
    """
    p = np.asarray(p)
    pairs = [(names[0], p)]
    if q is not None:
        q = np.asarray(q)
        pairs.append((names[1], q))
    outer = np.broadcast_shapes(*(x.shape[:-1] for _, x in pairs))
    suspect = np.zeros(outer, dtype=bool)
    for _, x in pairs:
        suspect |= _suspect_rows(x, normalize, check_sums)
    for local in np.argwhere(suspect):
        local = tuple(int(i) for i in local)
        where = tuple(s + i for s, i in zip(start, local)) if start else local
        index = where if len(where) > 1 else (where[0] if where else 0)
        for name, x in pairs:
            row = np.broadcast_to(x, outer + x.shape[-1:])[local]
            message = _api._explain(name, row, index, normalize, check_sums)
            if message:
                return message
    return None


def _suspect_rows(x, normalize, check_sums=False):
    """Rows of ``x`` the kernel may reject (a superset is fine: each is checked)."""
    with np.errstate(invalid="ignore", over="ignore"):
        values = x.astype(np.float64, copy=False)
        bad = ~(np.isfinite(values) & (values >= 0)).all(axis=-1)
        if normalize:
            total = values.sum(axis=-1)
            bad |= ~(np.isfinite(total) & (total > 0))
        elif check_sums:
            bad |= ~(np.abs(values.sum(axis=-1) - 1.0) <= _api.SUM_TOLERANCE)
    return bad


# ---------------------------------------------------------------- readers


def _extension(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def _check_readable(path):
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.isdir(path):
        raise InputError(path, "is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied")


def open_rows(path, *, key=None, columns=None):
    """The array in ``path``: an ndarray (memory-mapped for ``.npy``) or,
    for Parquet, a :class:`ParquetRows`; any number of dimensions."""
    ext = _extension(path)
    if ext not in INPUT_FORMATS:
        raise InputError(path, f"unknown input format {ext or '(no extension)'!r}; "
                               f"expected one of {', '.join(INPUT_FORMATS)}")
    _check_readable(path)
    if ext == ".npy":
        return _open_npy(path)
    if ext == ".npz":
        return _open_npz(path, key)
    if ext == ".parquet":
        return ParquetRows(path, columns)
    return _open_csv(path, columns)


def _open_npy(path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise InputError(path, f"not a valid .npy file ({_reason(e)})") from None


def _open_npz(path, key):
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if key is None:
                if len(keys) != 1:
                    raise InputError(path, f"holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                                           f"choose one with --key")
                key = keys[0]
            if key not in keys:
                raise InputError(path, f"has no array {key!r} (it holds {', '.join(keys) or 'none'})")
            return archive[key]
    except InputError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not a valid .npz file ({_reason(e)})") from None


def _open_csv(path, columns):
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read CSV ({_reason(e)})") from None
    if not first.strip():
        raise InputError(path, "CSV file is empty")
    fields = [field.strip() for field in first.split(",")]
    header = not all(_is_number(field) for field in fields)
    usecols = None
    if columns is not None:
        if not header:
            raise InputError(path, "--columns needs a CSV header line naming the columns")
        missing = [c for c in columns if c not in fields]
        if missing:
            raise InputError(path, f"no column {missing[0]!r} (columns: {', '.join(fields)})")
        usecols = [fields.index(c) for c in columns]
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=int(header), usecols=usecols,
                          ndmin=2, dtype=np.float64, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot parse CSV ({_reason(e)})") from None
    if data.size == 0:
        raise InputError(path, "CSV file has no data rows")
    return data


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _reason(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class ParquetRows:
    """Rows of a Parquet file, read a row group at a time.

    The distributions are either one list or fixed-size-list column (each cell
    one row), or numeric columns (each record one row, one column per
    category). ``columns`` chooses; by default the only list column, or else
    every column when all are numeric.
    """

    def __init__(self, path, columns=None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            self._file = pq.ParquetFile(path)
            schema = self._file.schema_arrow
        except (pa.ArrowException, OSError) as e:
            raise InputError(path, f"not a valid Parquet file ({_reason(e)})") from None
        names = list(schema.names)
        is_list = {n: _is_list_type(schema.field(n).type) for n in names}
        if columns is None:
            lists = [n for n in names if is_list[n]]
            if len(lists) == 1:
                columns = lists
            elif lists:
                raise InputError(path, f"has several list columns ({', '.join(lists)}); "
                                       f"choose one with --columns")
            else:
                columns = names
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(path, f"no column {missing[0]!r} (columns: {', '.join(names)})")
        if any(is_list[c] for c in columns) and len(columns) > 1:
            raise InputError(path, "--columns takes one list column or several numeric columns")
        self.columns = list(columns)
        self._list = is_list[self.columns[0]]
        value_types = ([schema.field(self.columns[0]).type.value_type] if self._list
                       else [schema.field(c).type for c in self.columns])
        for name, t in zip(self.columns, value_types):
            if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
                raise InputError(path, f"column {name!r} holds {t}, not numbers")
        self.dtype = np.result_type(*(t.to_pandas_dtype() for t in value_types))
        meta = self._file.metadata
        self._group_starts = np.cumsum([0] + [meta.row_group(i).num_rows
                                              for i in range(meta.num_row_groups)])
        n_rows = int(self._group_starts[-1])
        if self._list:
            k = self._first_list_length(n_rows)
        else:
            k = len(self.columns)
        self.shape = (n_rows, k)
        self.ndim = 2
        self._cached = (None, None)

    def _first_list_length(self, n_rows):
        if n_rows == 0:
            return 0
        batch = next(self._file.iter_batches(batch_size=1, columns=self.columns))
        cell = batch.column(0)[0]
        if not cell.is_valid:
            raise InputError(self.path, f"column {self.columns[0]!r}: row 0 is null")
        return len(cell)

    def _group(self, i):
        if self._cached[0] != i:
            import pyarrow as pa

            try:
                table = self._file.read_row_group(i, columns=self.columns)
            except (pa.ArrowException, OSError) as e:
                raise InputError(self.path, f"cannot read row group {i} ({_reason(e)})") from None
            self._cached = (i, self._to_numpy(table, int(self._group_starts[i])))
        return self._cached[1]

    def _to_numpy(self, table, first_row):
        import pyarrow.compute as pc

        k = self.shape[1]
        if not self._list:
            for name in self.columns:
                if table.column(name).null_count:
                    raise InputError(self.path, f"column {name!r} has null values")
            out = np.empty((table.num_rows, k), dtype=self.dtype)
            for j, name in enumerate(self.columns):
                out[:, j] = table.column(name).to_numpy()
            return out
        column = table.column(0).combine_chunks()
        if column.null_count:
            row = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(self.path, f"column {self.columns[0]!r}: row {row} is null")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != k).any():
            j = int(np.flatnonzero(lengths != k)[0])
            raise InputError(self.path, f"column {self.columns[0]!r}: row {first_row + j} has "
                                        f"{lengths[j]} values, row 0 has {k}")
        values = column.flatten()
        if values.null_count:
            raise InputError(self.path, f"column {self.columns[0]!r} has null values")
        return values.to_numpy(zero_copy_only=False).reshape(len(column), k)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        """Rows ``rows`` (a slice with step 1) as an ndarray."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("ParquetRows supports row slices only")
        r0, r1, _ = rows.indices(self.shape[0])
        r1 = max(r0, r1)
        first = int(np.searchsorted(self._group_starts, r0, side="right")) - 1
        parts = []
        g = max(first, 0)
        while r0 < r1:
            start = int(self._group_starts[g])
            block = self._group(g)
            stop = min(r1, start + len(block))
            parts.append(block[r0 - start:stop - start])
            r0 = stop
            g += 1
        if not parts:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __array__(self, dtype=None, copy=None):
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype, copy=False)


def _is_list_type(t):
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


# ---------------------------------------------------------------- writers


class ScoreWriter:
    """Writes ``n_rows`` scores, in order, to a temporary file next to
    ``path``; :meth:`commit` renames it to ``path``, :meth:`discard` removes it."""

    def __init__(self, path, n_rows, dtype, name):
        ext = _extension(path)
        if ext not in OUTPUT_FORMATS:
            raise InputError(path, f"unknown output format {ext or '(no extension)'!r}; "
                                   f"expected one of {', '.join(OUTPUT_FORMATS)}")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise InputError(path, f"directory {directory} does not exist")
        if os.path.isdir(path):
            raise InputError(path, "is a directory")
        self.path = path
        self.ext = ext
        self.n_rows = n_rows
        self.dtype = np.dtype(dtype)
        self.name = name
        self.rows_written = 0
        try:
            fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=".klfast-", suffix=ext)
        except OSError as e:
            raise InputError(path, f"cannot write here ({_reason(e)})") from None
        os.close(fd)
        self._pending = []
        if ext == ".npy":
            self._file = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=self.dtype,
                                                   shape=(n_rows,))
        elif ext == ".csv":
            self._file = open(self.tmp, "w", encoding="utf-8")
            self._file.write(name + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = pa.schema([(name, pa.from_numpy_dtype(self.dtype))])
            self._file = pq.ParquetWriter(self.tmp, self._schema)

    # Parquet row groups of about this many rows, whatever the chunk size.
    PARQUET_GROUP_ROWS = 1 << 20

    def write(self, scores):
        scores = np.asarray(scores, dtype=self.dtype)
        r0 = self.rows_written
        if self.ext == ".npy":
            self._file[r0:r0 + len(scores)] = scores
        elif self.ext == ".csv":
            fmt = "%.9g" if self.dtype == np.float32 else "%.17g"
            np.savetxt(self._file, scores, fmt=fmt)
        else:
            self._pending.append(scores.copy())
            if sum(map(len, self._pending)) >= self.PARQUET_GROUP_ROWS:
                self._flush_parquet()
        self.rows_written += len(scores)

    def _flush_parquet(self):
        import pyarrow as pa

        if self._pending:
            values = np.concatenate(self._pending)
            self._pending = []
            self._file.write_table(pa.table({self.name: values}, schema=self._schema))

    def _close(self):
        if self._file is None:
            return
        if self.ext == ".npy":
            self._file.flush()
            del self._file
        elif self.ext == ".parquet":
            self._flush_parquet()
            self._file.close()
        else:
            self._file.close()
        self._file = None

    def commit(self):
        if self.rows_written != self.n_rows:
            raise RuntimeError(f"klfast: wrote {self.rows_written} of {self.n_rows} scores")
        self._close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(self.tmp, self.path)

    def discard(self):
        try:
            self._close()
        except Exception:  # the file is removed anyway
            pass
        self._file = None
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def default_chunk_rows(k):
    """Rows per chunk: about 8 Mi elements (64 MB of float64) per input."""
    return max(1, (1 << 23) // max(k, 1))


def format_duration(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
