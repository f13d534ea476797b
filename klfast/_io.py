"""Rows from files and scores to files, for the command line and the Dask path.

Readers give an array-like of rows (``shape``, ``dtype``, slicing by rows)
whose memory is bounded by the slice: ``.npy`` (and an uncompressed ``.npz``
member) is memory-mapped a slice at a time, Parquet and CSV are streamed and
must be sliced in row order. Only a compressed ``.npz`` member is loaded whole.
Every input is opened once and must be a regular file (a FIFO or a device could
block or never end), and sizes a header declares are checked against the file
before anything is allocated. Writers fill ``.npy``, Parquet or CSV in row
order and publish the file only on ``commit()``: until then it is a hidden
temporary file in the target's directory, which ``discard()`` removes; the
summary's JSON is written the same way.

Problems a user can fix raise :class:`InputError`, whose text names the file.
"""
import io
import json
import math
import os
import signal
import stat
import struct
import tempfile
import zipfile

import numpy as np

INPUT_FORMATS = (".npy", ".npz", ".parquet", ".csv")
OUTPUT_FORMATS = (".npy", ".parquet", ".csv")


class InputError(Exception):
    """A problem with one file or option, worded for the user: ``"<file>: <problem>"``."""

    def __init__(self, where, problem=None):
        super().__init__(where if problem is None else f"{where}: {problem}")


# ---------------------------------------------------------------- readers


def _extension(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def _open_regular(path):
    """``path`` opened once, in binary; anything but a regular file is refused.

    Opening with O_NONBLOCK keeps a FIFO from blocking the open itself; fstat
    on the open descriptor then tells what was opened (no race with a rename).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as e:
        raise InputError(path, f"cannot open ({_reason(e)})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(path, "is a directory, not a file")
        raise InputError(path, "is not a regular file (a FIFO, socket or device); "
                               "klfast reads regular files only")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def open_rows(path, *, key=None, columns=None, header=None, chunk_rows=None, exclude=()):
    """The array in ``path``: an ndarray or a row reader (``NpyRows``,
    ``ParquetRows``, ``CsvRows``); any number of dimensions for ``.npy`` and
    ``.npz``. ``header`` (None: decide, refusing ambiguity; True; False) is
    for CSV; Parquet and CSV are read ``chunk_rows`` rows at a time (default:
    :func:`default_chunk_rows`). ``exclude``: table columns that are not part
    of the distributions chosen by default (a mask column)."""
    ext = _extension(path)
    if ext not in INPUT_FORMATS:
        raise InputError(path, f"unknown input format {ext or '(no extension)'!r}; "
                               f"expected one of {', '.join(INPUT_FORMATS)}")
    f = _open_regular(path)
    try:
        if ext == ".npy":
            return _open_npy(path, f, 0, os.fstat(f.fileno()).st_size)
        if ext == ".npz":
            return _open_npz(path, f, key)
        if ext == ".parquet":
            return ParquetRows(path, f, columns, chunk_rows, exclude)
        return CsvRows(path, f, columns, header, chunk_rows, exclude)
    except BaseException:
        f.close()
        raise


def _npy_header(path, f, what):
    """(shape, fortran_order, dtype) from the .npy header at ``f``'s position."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:  # 2.0 and 3.0 differ only in the header's text encoding
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, zipfile.BadZipFile) as e:
        raise InputError(path, f"{what} ({_reason(e)})") from None
    if any(n < 0 for n in shape):
        raise InputError(path, f"{what} (its header declares the shape {shape})")
    if dtype.hasobject:
        raise InputError(path, f"dtype {dtype} is not supported (need real numbers)")
    return shape, fortran, dtype


def _declared_bytes(path, shape, dtype, available, what):
    """Bytes the header declares; more than the file holds is an error."""
    n_bytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if n_bytes > available:
        raise InputError(path, f"{what} (its header declares {'x'.join(map(str, shape))} "
                               f"{dtype} values, {n_bytes:,} bytes, but only {available:,} "
                               f"bytes follow)")
    return n_bytes


def _open_npy(path, f, start, end, what="not a valid .npy file"):
    """The .npy array stored in bytes start:end of ``f``."""
    f.seek(start)
    shape, fortran, dtype = _npy_header(path, f, what)
    offset = f.tell()
    n_bytes = _declared_bytes(path, shape, dtype, end - offset, what)
    if n_bytes == 0:
        return np.empty(shape, dtype=dtype)
    return NpyRows(path, f, offset, shape, dtype, fortran)


class NpyRows:
    """A .npy array in a file, memory-mapped a slice of rows at a time.

    A 2-D C-order array maps only the rows asked for, so the address space in
    use stays bounded by the slice; other layouts are mapped whole, once.
    """

    ndim = property(lambda self: len(self.shape))

    def __init__(self, path, f, offset, shape, dtype, fortran):
        self.path, self._file, self._offset = path, f, offset
        self.shape, self.dtype, self._fortran = tuple(shape), dtype, fortran
        self._whole = None

    def _map(self, offset, shape, order="C"):
        try:
            return np.memmap(self._file, dtype=self.dtype, mode="r", offset=offset,
                             shape=shape, order=order)
        except (OSError, MemoryError) as e:  # e.g. ENOMEM under a capped address space
            raise InputError(self.path, f"cannot memory-map {math.prod(shape) * self.dtype.itemsize:,}"
                                        f" bytes ({_reason(e)})") from None

    def whole(self):
        """The whole array, memory-mapped."""
        if self._whole is None:
            self._whole = self._map(self._offset, self.shape, "F" if self._fortran else "C")
        return self._whole

    def __getitem__(self, rows):
        if (self.ndim != 2 or self._fortran or not isinstance(rows, slice)
                or rows.step not in (None, 1)):
            return self.whole()[rows]
        r0, r1, _ = rows.indices(self.shape[0])
        r1 = max(r0, r1)
        if r1 == r0 or self.shape[1] == 0:
            return np.empty((r1 - r0, self.shape[1]), dtype=self.dtype)
        row_bytes = self.shape[1] * self.dtype.itemsize
        return self._map(self._offset + r0 * row_bytes, (r1 - r0, self.shape[1]))

    def reshape(self, *shape):
        return self.whole().reshape(*shape)

    @property
    def T(self):
        return self.whole().T

    def __array__(self, dtype=None, copy=None):
        whole = self.whole()
        return whole if dtype is None else whole.astype(dtype, copy=False)


def _open_npz(path, f, key):
    """One array of a .npz archive: an uncompressed member is memory-mapped
    like a .npy file; a compressed one is read whole, after its declared size
    was checked against the archive."""
    try:
        archive = zipfile.ZipFile(f)
        members = {name[:-4] if name.endswith(".npy") else name: archive.getinfo(name)
                   for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(path, f"not a valid .npz file ({_reason(e)})") from None
    keys = list(members)
    if key is None:
        if len(keys) != 1:
            raise InputError(path, f"holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                                   f"choose one with --key")
        key = keys[0]
    if key not in members:
        raise InputError(path, f"has no array {key!r} (it holds {', '.join(keys) or 'none'})")
    info = members[key]
    what = f"array {key!r} is not a valid .npy member"
    size = os.fstat(f.fileno()).st_size
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise InputError(path, f"not a valid .npz file (bad header of {info.filename!r})")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        return _open_npy(path, f, start, min(size, start + info.compress_size), what)
    try:
        with archive.open(info) as member:
            shape, fortran, dtype = _npy_header(path, member, what)
            n_bytes = _declared_bytes(path, shape, dtype, info.file_size - member.tell(), what)
            data = member.read(n_bytes)
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            RuntimeError) as e:  # RuntimeError: an encrypted member
        raise InputError(path, f"cannot read array {key!r} ({_reason(e)})") from None
    if len(data) != n_bytes:
        raise InputError(path, f"{what} (it holds {len(data):,} of its {n_bytes:,} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


class _StreamedRows:
    """Rows read front to back, ``chunk_rows`` at a time: slices must come in order."""

    ndim = 2

    def _init_stream(self):
        self._next_row = 0
        self._pending = None  # rows read but not yet handed out
        self._batches = self._read_batches()

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"{type(self).__name__} supports row slices only")
        r0, r1, _ = rows.indices(self.shape[0])
        r1 = max(r0, r1)
        if r0 != self._next_row:
            raise RuntimeError(f"{type(self).__name__}: rows must be read in order")
        parts, wanted = [], r1 - r0
        while wanted:
            if self._pending is None or not len(self._pending):
                self._pending = next(self._batches, None)
                if self._pending is None:
                    raise InputError(self.path, f"declares {self.shape[0]:,} rows but holds "
                                                f"{self._next_row:,}")
            take = self._pending[:wanted]
            self._pending = self._pending[wanted:]
            parts.append(take)
            wanted -= len(take)
            self._next_row += len(take)
        if not parts:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __array__(self, dtype=None, copy=None):
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype, copy=False)

    @property
    def T(self):
        return np.asarray(self).T

    def reshape(self, *shape):
        return np.asarray(self).reshape(*shape)


class ParquetRows(_StreamedRows):
    """Rows of a Parquet file, streamed ``chunk_rows`` records at a time
    (also within a row group), with pyarrow APIs of every version the
    ``parquet`` extra allows, and without pandas.

    The distributions are either one list or fixed-size-list column (each cell
    one row), or numeric columns (each record one row, one column per
    category). ``columns`` chooses; by default the only list column, or else
    every column when all are numeric.
    """

    def __init__(self, path, f, columns=None, chunk_rows=None, exclude=()):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(path, "reading Parquet needs pyarrow: "
                                   "pip install 'klfast[parquet]'") from None
        self.path = path
        try:
            # Stream within a row group: pre_buffer (the default in newer pyarrow)
            # reads whole row groups, and buffer_size=0 reads whole column chunks.
            self._file = pq.ParquetFile(f, buffer_size=1 << 16, pre_buffer=False)
            schema = self._file.schema_arrow
            meta = self._file.metadata
        except (pa.ArrowException, OSError, ValueError) as e:
            raise InputError(path, f"not a valid Parquet file ({_reason(e)})") from None
        names = list(schema.names)
        is_list = {n: _is_list_type(schema.field(n).type) for n in names}
        if columns is None:
            names = [n for n in names if n not in exclude]
            lists = [n for n in names if is_list[n]]
            if len(lists) == 1:
                columns = lists
            elif lists:
                raise InputError(path, f"has several list columns ({', '.join(lists)}); "
                                       f"choose one with --columns")
            else:
                columns = names
            if not columns:
                raise InputError(path, f"has no columns besides the mask column {exclude[0]!r}")
        missing = [c for c in columns if c not in is_list]
        if missing:
            raise InputError(path, f"no column {missing[0]!r} (columns: {', '.join(is_list)})")
        if any(is_list[c] for c in columns) and len(columns) > 1:
            raise InputError(path, "--columns takes one list column or several numeric columns")
        self.columns = list(columns)
        self._list = is_list[self.columns[0]]
        value_types = ([schema.field(self.columns[0]).type.value_type] if self._list
                       else [schema.field(c).type for c in self.columns])
        for name, t in zip(self.columns, value_types):
            if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
                raise InputError(path, f"column {name!r} holds {t}, not numbers")
        # the numpy dtype of each type, as pyarrow converts it (no pandas needed)
        self.dtype = np.result_type(*(pa.array([], type=t).to_numpy(zero_copy_only=False).dtype
                                      for t in value_types))
        n_rows = meta.num_rows
        if n_rows < 0 or n_rows != sum(meta.row_group(i).num_rows
                                       for i in range(meta.num_row_groups)):
            raise InputError(path, "not a valid Parquet file (its row counts disagree)")
        k = self._first_list_length(n_rows) if self._list else len(self.columns)
        self.shape = (n_rows, k)
        self._chunk_rows = chunk_rows or default_chunk_rows(k)
        self._init_stream()

    def _first_list_length(self, n_rows):
        import pyarrow as pa
        import pyarrow.compute as pc

        if n_rows == 0:
            return 0
        try:
            batch = next(self._file.iter_batches(batch_size=1, columns=self.columns))
        except (pa.ArrowException, OSError, ValueError, StopIteration) as e:
            raise InputError(self.path, f"cannot read row 0 ({_reason(e)})") from None
        if batch.column(0).null_count:
            raise InputError(self.path, f"column {self.columns[0]!r}: row 0 is null")
        return int(pc.list_value_length(batch.column(0)).to_numpy(zero_copy_only=False)[0])

    def _read_batches(self):
        import pyarrow as pa

        first_row = 0
        batches = self._file.iter_batches(batch_size=self._chunk_rows, columns=self.columns,
                                          use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError, ValueError) as e:
                raise InputError(self.path, f"cannot read rows from {first_row:,} "
                                            f"({_reason(e)})") from None
            if batch is None:
                return
            rows = self._to_numpy(batch, first_row)
            first_row += len(rows)
            yield rows

    def _to_numpy(self, batch, first_row):
        import pyarrow.compute as pc

        k = self.shape[1]
        if not self._list:
            out = np.empty((batch.num_rows, len(self.columns)), dtype=self.dtype)
            for j, name in enumerate(self.columns):
                column = batch.column(j)
                if column.null_count:
                    raise InputError(self.path, f"column {name!r} has null values")
                out[:, j] = column.to_numpy(zero_copy_only=False)
            return out
        column = batch.column(0)
        name = self.columns[0]
        if column.null_count:
            row = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(self.path, f"column {name!r}: row {row} is null")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != k).any():
            j = int(np.flatnonzero(lengths != k)[0])
            raise InputError(self.path, f"column {name!r}: row {first_row + j} has "
                                        f"{lengths[j]} values, row 0 has {k}")
        values = column.flatten()
        if values.null_count:
            raise InputError(self.path, f"column {name!r} has null values")
        return values.to_numpy(zero_copy_only=False).astype(self.dtype, copy=False).reshape(
            len(column), k)


def _is_list_type(t):
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class CsvRows(_StreamedRows):
    """Rows of a CSV file of numbers, one distribution per line, parsed
    ``chunk_rows`` lines at a time. Blank lines and lines starting with ``#``
    are skipped; a UTF-8 byte-order mark is ignored.

    The first line is a header when ``header`` is True, data when False; when
    None it is a header if none of its fields is a number, data if all are and
    one is not an integer, and otherwise (``0,1,2`` is what pandas writes as
    a header, and also a row of counts) an error asks for --header or
    --no-header: a row is never dropped or added by a guess.
    """

    def __init__(self, path, f, columns=None, header=None, chunk_rows=None, exclude=()):
        self.path = path
        self._text = io.TextIOWrapper(f, encoding="utf-8-sig", newline=None)
        first = next(self._lines(), None)
        if first is None:
            raise InputError(path, "CSV file is empty")
        line_number, text = first
        fields = [field.strip() for field in text.split(",")]
        if columns is not None and header is None:
            header = True
        if header is None:
            numbers = [_is_number(field) for field in fields]
            if not any(numbers):
                header = True
            elif all(numbers) and not all(_is_integer(field) for field in fields):
                header = False
            else:
                raise InputError(path, f"line {line_number} ({_shorten(text)}) could be a "
                                       f"header or a row of data; say which with --header "
                                       f"or --no-header")
        self._skip = line_number if header else line_number - 1  # lines before the data
        self._usecols = None
        if columns is None and header and any(c in fields for c in exclude):
            columns = [c for c in fields if c not in exclude]
            if not columns:
                raise InputError(path, f"has no columns besides the mask column {exclude[0]!r}")
        if columns is not None:
            if not header:
                raise InputError(path, "--columns needs a CSV header line naming the columns")
            missing = [c for c in columns if c not in fields]
            if missing:
                raise InputError(path, f"no column {missing[0]!r} (columns: {', '.join(fields)})")
            self._usecols = [fields.index(c) for c in columns]
        n_rows, k = 0, None
        for number, text in self._data_lines():
            n_rows += 1
            if k is None:
                k = len(self._usecols or text.split(","))
        if n_rows == 0:
            raise InputError(path, "CSV file has no data rows")
        self.dtype = np.dtype(np.float64)
        self.shape = (n_rows, k)
        self._chunk_rows = chunk_rows or default_chunk_rows(k)
        self._init_stream()

    def _lines(self):
        """(line number, text) of the lines holding data, from the start."""
        self._text.seek(0)
        try:
            for number, text in enumerate(self._text, start=1):
                stripped = text.strip()
                if stripped and not stripped.startswith("#"):
                    yield number, stripped
        except (UnicodeDecodeError, OSError) as e:
            raise InputError(self.path, f"cannot read CSV ({_reason(e)})") from None

    def _data_lines(self):
        for number, text in self._lines():
            if number > self._skip:
                yield number, text

    def _read_batches(self):
        lines = self._data_lines()
        while True:
            block = [line for _, line in zip(range(self._chunk_rows), lines)]
            if not block:
                return
            yield self._parse(block)

    def _parse(self, block):
        texts = [text for _, text in block]
        try:
            rows = np.loadtxt(texts, delimiter=",", usecols=self._usecols, ndmin=2,
                              dtype=np.float64, comments=None)
            if rows.shape[1] == self.shape[1]:
                return rows
        except ValueError:
            pass
        width = self.shape[1]
        for number, text in block:  # find the line to blame
            try:
                row = np.loadtxt([text], delimiter=",", usecols=self._usecols, ndmin=2,
                                 dtype=np.float64, comments=None)
            except ValueError as e:
                raise InputError(self.path, f"cannot parse CSV line {number} "
                                            f"({_reason(e)})") from None
            if row.shape[1] != width:
                raise InputError(self.path, f"cannot parse CSV line {number} (it has "
                                            f"{row.shape[1]} values, the first has {width})")
        raise InputError(self.path, "cannot parse CSV")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_integer(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def _shorten(text, width=40):
    return text if len(text) <= width else text[:width - 3] + "..."


def _reason(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ---------------------------------------------------------------- writers

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def _check_target(path):
    """An output file may be written at ``path``: its directory exists and it
    is not a directory itself."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(path, f"directory {directory} does not exist")
    if os.path.isdir(path):
        raise InputError(path, "is a directory")


def _temporary_beside(path, ext):
    """``(fd, name)`` of a new hidden temporary file in ``path``'s directory
    (so that renaming it to ``path`` is atomic)."""
    directory = os.path.dirname(os.path.abspath(path))
    # No signal may land between creating the file and noting its name.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return tempfile.mkstemp(dir=directory, prefix=".klfast-", suffix=ext)
    except OSError as e:
        raise InputError(path, f"cannot write here ({_reason(e)})") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _publish(tmp, path):
    """Rename the temporary file ``tmp`` to ``path``, with the permissions a
    new file gets (mkstemp creates 0600)."""
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(path, f"cannot write ({_reason(e)})") from None


def _remove(tmp):
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


class ScoreWriter:
    """Writes ``n_rows`` scores, in order, to a temporary file next to
    ``path``; :meth:`commit` renames it to ``path``, :meth:`discard` removes it.
    The file grows as scores are written: nothing is allocated for rows an
    input only declares."""

    def __init__(self, path, n_rows, dtype, name):
        ext = _extension(path)
        if ext not in OUTPUT_FORMATS:
            raise InputError(path, f"unknown output format {ext or '(no extension)'!r}; "
                                   f"expected one of {', '.join(OUTPUT_FORMATS)}")
        _check_target(path)
        if ext == ".parquet":
            try:
                import pyarrow.parquet  # noqa: F401
            except ImportError:
                raise InputError(path, "writing Parquet needs pyarrow: "
                                       "pip install 'klfast[parquet]'") from None
        self.path = path
        self.ext = ext
        self.n_rows = n_rows
        self.dtype = np.dtype(dtype)
        self.name = name
        self.rows_written = 0
        self._file = None
        self._pending = []
        fd, self.tmp = _temporary_beside(path, ext)
        try:
            self._open(fd)
        except BaseException:
            self.discard()
            raise

    def _open(self, fd):
        if self.ext == ".npy":
            self._file = os.fdopen(fd, "wb")
            np.lib.format.write_array_header_2_0(self._file, {
                "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                "shape": (self.n_rows,)})
        elif self.ext == ".csv":
            self._file = open(fd, "w", encoding="utf-8")
            self._file.write(self.name + "\n")
        else:
            os.close(fd)
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = pa.schema([(self.name, pa.from_numpy_dtype(self.dtype))])
            self._file = pq.ParquetWriter(self.tmp, self._schema)

    # Parquet row groups of about this many rows, whatever the chunk size.
    PARQUET_GROUP_ROWS = 1 << 20

    def write(self, scores):
        scores = np.asarray(scores, dtype=self.dtype)
        if self.rows_written + len(scores) > self.n_rows:
            raise RuntimeError(f"klfast: more than {self.n_rows} scores")
        if self.ext == ".npy":
            self._file.write(np.ascontiguousarray(scores).tobytes())
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
        if self.ext == ".parquet":
            self._flush_parquet()
        file, self._file = self._file, None
        file.close()

    def commit(self):
        if self.rows_written != self.n_rows:
            raise RuntimeError(f"klfast: wrote {self.rows_written} of {self.n_rows} scores")
        try:
            self._close()
        except OSError as e:
            raise InputError(self.path, f"cannot write ({_reason(e)})") from None
        _publish(self.tmp, self.path)

    def discard(self):
        try:
            if self._file is not None:
                self._file.close()
        except Exception:  # the file is removed anyway
            pass
        self._file = None
        _remove(self.tmp)


class JsonWriter:
    """One JSON document, written to a temporary file next to ``path`` when
    created (so an unwritable place fails before any work) and published by
    :meth:`commit`, or removed by :meth:`discard`. Strict JSON: an infinite
    number is written as the string "inf" or "-inf", NaN as null."""

    def __init__(self, path):
        ext = _extension(path)
        if ext != ".json":
            raise InputError(path, f"unknown summary format {ext or '(no extension)'!r}; "
                                   f"expected .json")
        _check_target(path)
        self.path = path
        fd, self.tmp = _temporary_beside(path, ext)
        os.close(fd)

    def write(self, document):
        try:
            with open(self.tmp, "w", encoding="utf-8") as f:
                json.dump(_strict_json(document), f, indent=2, allow_nan=False)
                f.write("\n")
        except OSError as e:
            raise InputError(self.path, f"cannot write ({_reason(e)})") from None

    def commit(self):
        _publish(self.tmp, self.path)

    def discard(self):
        _remove(self.tmp)


def _strict_json(value):
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class PairsWriter(ScoreWriter):
    """Writes the pairs of ``n_rows`` rows of P, in order: the full matrix
    (``width`` values per row, ``topk`` None) or each row's ``topk``
    nearest (indices and values). Published by :meth:`commit` like
    :class:`ScoreWriter`.

    * ``.npy``: the (n_rows, width) matrix; with ``topk`` a structured array
      of n_rows records with fields ``index`` (int64, topk) and ``value``.
    * ``.parquet``: one record per row of P: a fixed-size list column named
      after the measure (and ``index`` with ``topk``).
    * ``.csv``: one line per row of P: ``q0,q1,...`` (the matrix) or
      ``index0,...,<measure>0,...`` (top-k) after a header line.
    """

    def __init__(self, path, n_rows, dtype, name, width, topk=None):
        self.width = width
        self.topk = topk
        super().__init__(path, n_rows, dtype, name)

    def _record_dtype(self):
        return np.dtype([("index", np.int64, (self.topk,)), ("value", self.dtype, (self.topk,))])

    def _open(self, fd):
        if self.ext == ".npy":
            self._file = os.fdopen(fd, "wb")
            if self.topk is None:
                header = {"descr": np.lib.format.dtype_to_descr(self.dtype),
                          "shape": (self.n_rows, self.width)}
            else:
                header = {"descr": np.lib.format.dtype_to_descr(self._record_dtype()),
                          "shape": (self.n_rows,)}
            np.lib.format.write_array_header_2_0(self._file, {**header, "fortran_order": False})
        elif self.ext == ".csv":
            self._file = open(fd, "w", encoding="utf-8")
            if self.topk is None:
                names = [f"q{j}" for j in range(self.width)]
            else:
                names = ([f"index{j}" for j in range(self.topk)]
                         + [f"{self.name}{j}" for j in range(self.topk)])
            self._file.write(",".join(names) + "\n")
        else:
            os.close(fd)
            import pyarrow as pa
            import pyarrow.parquet as pq

            size = self.width if self.topk is None else self.topk
            fields = [(self.name, pa.list_(pa.from_numpy_dtype(self.dtype), size))]
            if self.topk is not None:
                fields.insert(0, ("index", pa.list_(pa.int64(), size)))
            self._schema = pa.schema(fields)
            self._file = pq.ParquetWriter(self.tmp, self._schema)

    def write(self, values, indices=None):
        values = np.asarray(values, dtype=self.dtype)
        if self.rows_written + len(values) > self.n_rows:
            raise RuntimeError(f"klfast: more than {self.n_rows} rows")
        if self.ext == ".npy":
            if self.topk is None:
                self._file.write(np.ascontiguousarray(values).tobytes())
            else:
                records = np.empty(len(values), dtype=self._record_dtype())
                records["index"] = indices
                records["value"] = values
                self._file.write(records.tobytes())
        elif self.ext == ".csv":
            fmt = "%.9g" if self.dtype == np.float32 else "%.17g"
            if self.topk is None:
                np.savetxt(self._file, values.reshape(len(values), -1), fmt=fmt, delimiter=",")
            else:
                for index_row, value_row in zip(indices, values):
                    self._file.write(",".join([str(int(i)) for i in index_row]
                                              + [fmt % v for v in value_row]) + "\n")
        else:
            self._pending.append((values.copy(), None if indices is None else indices.copy()))
            if sum(len(v) for v, _ in self._pending) * max(self.width, 1) >= (1 << 23):
                self._flush_parquet()
        self.rows_written += len(values)

    def _flush_parquet(self):
        import pyarrow as pa

        if not self._pending:
            return
        size = self.width if self.topk is None else self.topk
        values = np.concatenate([v for v, _ in self._pending]).reshape(-1)
        columns = {self.name: pa.FixedSizeListArray.from_arrays(pa.array(values), size)}
        if self.topk is not None:
            indices = np.concatenate([i for _, i in self._pending]).reshape(-1)
            columns = {"index": pa.FixedSizeListArray.from_arrays(pa.array(indices), size),
                       **columns}
        self._pending = []
        self._file.write_table(pa.table(columns, schema=self._schema))


def default_chunk_rows(k):
    """Rows per chunk: about 8 Mi elements (64 MB of float64) per input."""
    return max(1, (1 << 23) // max(k, 1))


def format_duration(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
