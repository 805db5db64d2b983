"""The CSV engine every Open Images file reader shares: segments, a quote guard, checks, formats.

A file kind (boxes, image-level labels, image metadata, predictions) is a `Format`: its required and
optional columns (found by header name; names may carry surrounding spaces), which ones pyarrow reads
dictionary-encoded or typed, and a `build` function that turns one parsed batch into that kind's
table while it adds every failing row to a `Checks`. The engine does the rest, the same way for all:

* Segments. The file is read in segments of about `chunk_bytes`, each cut at a line end, and each
  segment is parsed by `pyarrow.csv.read_csv` with the numeric columns typed, its blocks in parallel
  when a core is free for pyarrow's threads (`parse_threads`). A row of the wrong field count, or a
  text that is not a number, stops this fast parse, so a segment where either happens is parsed
  again exactly (single thread, rejected rows numbered, numbers as text) and only that segment: the
  rows before and after it keep the fast path.
* The quote guard. A `"` that opens a field and never closes would make any CSV parser take every
  later line into that field (or lose sync between pyarrow's block splitter and its parser). Before a
  segment reaches pyarrow, every line holding a quote is matched against the CSV field grammar; a line
  whose quotes do not close on it (nor, for formats whose values may hold newlines, on the next lines
  of a record with the header's field count) is replaced by an empty row of the same field count and
  reported as one bad row ("unclosed or stray quote"), naming its field. Segments without a quote
  skip the guard (one memchr) and are parsed with quoting off.
* A thread of its own. When a core is free (`parse_threads`), segments are read, guarded, parsed
  and built on a prefetch thread (`prefetch.prefetched`), one ahead of the segment the caller is
  walking: pyarrow's parse runs without the GIL, so on two cores the next segment is parsed while
  Python walks this one. Only the verdict on bad rows (raise, or count in the report) is given in
  the caller's thread, in order.
* Line numbers. Rows are numbered by physical line (header = 1), exact across segments, blank lines,
  rows pyarrow rejects and quoted newlines (the guard knows every record it let span lines).
* Bad rows. In strict mode the earliest bad row of a segment raises `AnnotationError` naming file,
  line and field; in lenient mode each bad row is skipped and counted under its first failing check
  in a `ReadReport`, with a few "file:line: field: message" examples.

Checks are columnar: each returns a mask over the batch (numpy, from pyarrow compute), and a row's
message is only written for the few examples kept.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from oi_models.io import arrow_arrays
from oi_models.io import image_ids
from oi_models.io import prefetch
from oi_models.io.errors import AnnotationError
from oi_models.io.report import ReadReport

DEFAULT_CHUNK_BYTES = 16 << 20
# pyarrow's parse unit inside a segment: segments of several blocks are parsed in parallel.
_BLOCK_BYTES = 1 << 20
# A quoted value may span lines (image titles) but not without bound: a record still open after this
# many bytes is a stray quote, not a value.
_MAX_RECORD_BYTES = 1 << 16

STRING = pa.string()
DICT = pa.dictionary(pa.int32(), pa.string())
_NUMBER_RE = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_INTEGER_RE = r"^[+-]?[0-9]+$"

STRAY_QUOTE = "unclosed or stray quote"
WRONG_FIELDS = "wrong number of fields"

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Formats and checks.


@dataclasses.dataclass(frozen=True)
class Format:
  """One file kind: its columns and how a parsed batch becomes its table.

  Attributes:
    name: for messages ("boxes", "image labels", ...).
    required: columns the header must have.
    optional: columns read when present.
    all_or_none: optional columns that come together (XClick points).
    dictionary: columns with few distinct values, read dictionary-encoded.
    build: (batch: dict[name, pa.Array], checks: Checks, context: dict) -> table of all batch
      rows (or, when it sets `checks.unit_rows`, of all units: Kaggle detections).
    multiline: quoted values may hold newlines (image titles). Off for the others: a newline there
      is an error either way, and the guard then ends the quote at the line's end.
    numeric: columns the fast parse types directly (a value that does not parse sends the segment
      to the exact parse, where the column is text and the bad value is checked and reported).
  """

  name: str
  required: tuple[str, ...]
  optional: tuple[str, ...]
  all_or_none: tuple[str, ...]
  dictionary: frozenset
  build: Callable
  multiline: bool = False
  numeric: dict = dataclasses.field(default_factory=dict)


class Checks:
  """Failures of one batch, in check order.

  A check is (reason, field, mask, describe(i) -> message, unit_rows). `mask` is over the batch rows,
  or, for a check added with `unit_rows`, over the units of the built table (the detections of a
  Kaggle row): unit i belongs to row unit_rows[i], and a bad unit drops that unit only.
  """

  def __init__(self, n: int):
    self.n = n
    self.items: list[tuple] = []
    self.adjusted: list[tuple[str, np.ndarray]] = []  # (change, rows changed)
    self.unit_rows: np.ndarray | None = None  # set by a build whose table rows are units

  def add(self, reason: str, field: str, mask: np.ndarray, describe: Callable[[int], str],
          unit_rows: np.ndarray | None = None) -> None:
    if mask.any():
      self.items.append((reason, field, mask, describe, unit_rows))

  def bad(self) -> np.ndarray:
    bad = np.zeros(self.n, bool)
    for _, _, mask, _, unit_rows in self.items:
      if unit_rows is None:
        bad |= mask
    return bad

  def bad_units(self, bad_rows: np.ndarray) -> np.ndarray | None:
    """Units to drop: those of bad rows and those failing a unit check; None without units."""
    if self.unit_rows is None:
      return None
    bad = bad_rows[self.unit_rows]
    for _, _, mask, _, unit_rows in self.items:
      if unit_rows is not None:
        bad |= mask
    return bad


def raw(column: pa.Array, row: int):
  """A field's value as text; numbers parsed by the fast pass print as their shortest text."""
  value = column[row].as_py()
  if isinstance(value, float):
    return str(np.float32(value)) if column.type == pa.float32() else repr(value)
  return str(value) if isinstance(value, int) else value


def describe(column: pa.Array, message: str) -> Callable[[int], str]:
  return lambda row: f"{raw(column, row)!r} {message}"


null_mask = arrow_arrays.null_mask


def indices(column: pa.Array) -> np.ndarray:
  """A dictionary column's indices, -1 where empty."""
  return arrow_arrays.values(column.indices, -1)


def floats(column: pa.Array, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(`dtype` values with NaN for empty, empty mask, not-a-finite-number mask) of a column.

  Text may carry surrounding spaces (as pandas, which the official tools read with, accepts).
  """
  target = pa.from_numpy_dtype(np.dtype(dtype))
  if pa.types.is_dictionary(column.type):
    values, _, bad = floats(column.dictionary, dtype)
    codes = indices(column)
    values = np.append(values, np.asarray(np.nan, dtype))
    return values[codes], codes < 0, np.append(bad, False)[codes]
  empty = null_mask(column)
  if pa.types.is_floating(column.type):
    values = column if column.type == target else pc.cast(column, target)
    bad = np.zeros(len(column), bool)
  else:
    try:
      values = pc.cast(column, target)
      bad = np.zeros(len(column), bool)
    except pa.ArrowInvalid:
      ok = pc.fill_null(pc.match_substring_regex(column, _NUMBER_RE), False)
      values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, column, pa.scalar(None, STRING))),
                       target)
      bad = ~arrow_arrays.values(ok) & ~empty
  values = arrow_arrays.values(values, np.nan)
  finite = np.isfinite(values)
  if not finite.all():
    values = values.copy()
    bad |= ~finite & ~empty
    values[bad] = np.nan
  elif not values.flags.writeable:
    values = values.copy()
  return values, empty, bad


def integers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(int64 values, -1 for empty; not-an-integer mask) of a string column."""
  try:
    values = pc.cast(column, pa.int64())
    bad = np.zeros(len(column), bool)
  except pa.ArrowInvalid:
    ok = pc.fill_null(pc.match_substring_regex(column, _INTEGER_RE), False)
    values = pc.cast(pc.if_else(ok, column, pa.scalar(None, STRING)), pa.int64())
    bad = ~arrow_arrays.values(ok) & ~null_mask(column)
  return arrow_arrays.values(values, -1).astype(np.int64), bad


def dictionary_codes(column: pa.Array, lookup: Callable[[str], int]) -> np.ndarray:
  """Codes of a dictionary column through `lookup` of its (few) distinct values; -2 = empty."""
  mapping = np.fromiter((lookup(v) for v in column.dictionary.to_pylist()), np.int64,
                        len(column.dictionary))
  return np.append(mapping, -2)[indices(column)]


def as_dictionary(column: pa.Array) -> pa.Array:
  return column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)


class Vocab:
  """MID or Source vocabulary: a LabelMap's fixed order, or first-seen order across chunks.

  With `strip`, values are looked up without surrounding spaces (prediction files).
  """

  def __init__(self, label_map=None, strip: bool = False):
    self.fixed = label_map is not None
    self.items: tuple = tuple(label_map.mids) if self.fixed else ()
    self._index = {m: i for i, m in enumerate(self.items)}
    self._strip = strip

  def lookup(self, value: str) -> int:
    if self._strip:
      value = value.strip()
    index = self._index.get(value)
    if index is None:
      if self.fixed:
        return -1
      index = self._index[value] = len(self._index)
      self.items += (value,)
    return index

  def codes(self, column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes with -1 for empty or unknown, empty mask, unknown mask)."""
    codes = dictionary_codes(as_dictionary(column), self.lookup)
    empty, unknown = codes == -2, codes == -1
    codes[empty] = -1
    return codes.astype(np.int32), empty, unknown


def check_image_ids(batch: dict, checks: Checks, name: str = "ImageID") -> np.ndarray:
  """uint64 keys of the ImageID column; adds blank lines, empty and malformed ImageIDs."""
  column = batch[name]
  keys, bad = image_ids.column_keys(column)
  empty = null_mask(column)
  if empty.any():
    blank = empty.copy()
    for other in batch.values():
      blank &= null_mask(other)
    checks.add("blank line", "row", blank, lambda row: "no values")
    checks.add(f"missing {name}", name, empty & ~blank, lambda row: "empty")
  checks.add(f"bad {name}", name, bad & ~empty, describe(column, "is not 16 hex digits"))
  return keys


def check_mids(batch: dict, vocab: Vocab, checks: Checks) -> np.ndarray:
  column = batch["LabelName"]
  codes, empty, unknown = vocab.codes(column)
  checks.add("missing LabelName", "LabelName", empty, lambda row: "empty")
  checks.add("unknown MID", "LabelName", unknown, describe(column, "is not in the label map"))
  return codes


def check_fraction(batch: dict, name: str, checks: Checks, default: float) -> np.ndarray:
  """A number in [0, 1] (Confidence); `default` where absent or empty (NaN: empty is an error)."""
  if name not in batch:
    return np.full(checks.n, default, np.float32)
  column = batch[name]
  values, empty, bad = floats(column)
  checks.add(f"bad {name}", name, bad, describe(column, "is not a number"))
  if np.isnan(default):
    checks.add(f"missing {name}", name, empty, lambda row: "empty")
  elif empty.any():
    values[empty] = default
  outside = (values < 0) | (values > 1)  # NaN compares False.
  checks.add(f"{name} outside [0, 1]", name, outside, describe(column, "is outside [0, 1]"))
  return values


def source_codes(batch: dict, vocab: Vocab, n: int) -> np.ndarray:
  if "Source" not in batch:
    return np.full(n, -1, np.int8)
  return vocab.codes(batch["Source"])[0].astype(np.int8)


def text(batch: dict, name: str) -> np.ndarray:
  """Object array of str, '' when empty; a dictionary column's rows share its str objects."""
  column = batch[name]
  if pa.types.is_dictionary(column.type):
    values = np.array(column.dictionary.to_pylist() + [""], object)
    return values[indices(column)]
  return pc.fill_null(column, "").to_numpy(zero_copy_only=False)


# ------------------------------------------------------------------------------------------------
# Header.


def read_header(path) -> list[str]:
  """The header's column names as written (a BOM removed); an empty file is an error."""
  with open(path, "rb") as f:
    first = f.readline()
  line = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
  if not line.strip():
    raise AnnotationError(path, 1, "header", "empty file: no header line")
  if _stray_field(line.encode()) is not None:
    raise AnnotationError(path, 1, "header", f"{STRAY_QUOTE}: {line[:80]!r}")
  return next(csv.reader([line]))


def columns(path, fmt: Format, wanted: Sequence[str] | None = None) -> dict[str, str]:
  """{name as written in the header: column name} of the columns to read; missing required raise.

  Header names are matched without surrounding spaces. `wanted` narrows the columns read (a
  projection); required columns outside it need not be present.
  """
  header = read_header(path)
  names = {raw_name.strip(): raw_name for raw_name in header}
  required = fmt.required if wanted is None else tuple(n for n in fmt.required if n in wanted)
  for name in required:
    if name not in names:
      raise AnnotationError(path, 1, name, f"required column missing from the {fmt.name} header "
                            f"{','.join(header)}")
  clicks = [name for name in fmt.all_or_none if name in names]
  if clicks and len(clicks) < len(fmt.all_or_none):
    missing = [name for name in fmt.all_or_none if name not in names]
    raise AnnotationError(path, 1, missing[0], f"column missing: the header has {clicks[0]} but "
                          f"not {','.join(missing)}")
  readable = fmt.required + fmt.optional + fmt.all_or_none
  if wanted is not None:
    readable = tuple(n for n in readable if n in wanted)
  return {names[name]: name for name in readable if name in names}


# ------------------------------------------------------------------------------------------------
# The quote guard.

# One field as pyarrow reads it: quoted ("" is a quote inside; text after the closing quote is
# kept), or unquoted (a quote inside it is an ordinary character), or empty.
_FIELD = rb'(?:"(?:[^"]|"")*+"[^,\r\n]*+|[^,"\r\n][^,\r\n]*+|)'
_RECORD = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*+\r?")
_FIELD_AT = re.compile(_FIELD + rb"(?:(,)|\r?\Z)")


def _stray_field(record: bytes) -> int | None:
  """Index of the field whose quote does not close in `record`; None when the record is sound.

  A record is unsound exactly when a field opens with a quote that is still open at its end.
  """
  if _RECORD.fullmatch(record):
    return None
  pos = field = 0
  while True:
    match = _FIELD_AT.match(record, pos)
    if match is None or not match.group(1):
      return field
    pos, field = match.end(), field + 1


def _num_fields(record: bytes) -> int:
  """Fields of a sound record."""
  pos = fields = 0
  while True:
    match = _FIELD_AT.match(record, pos)
    fields += 1
    if match is None or not match.group(1):
      return fields
    pos = match.end()


@dataclasses.dataclass
class _Guarded:
  """A segment after the guard: its bytes, and where its stray and multi-line records are.

  Places are 0-based line indices within the segment (physical lines, as read).
  """

  data: bytes | memoryview  # A view of the bytes as read when they hold no quote.
  strays: list  # (line index, field index, line text)
  multiline: list  # (line index where the record starts, newlines inside the record)
  has_quotes: bool


def _guard(data: bytes, num_fields: int, multiline: bool, more: Callable[[], bytes]) -> _Guarded:
  """Neutralizes every line whose quote does not close (see the module docstring).

  `more()` returns the next line of the file (b"" at its end): a multi-line record may need it.
  """
  pos = data.find(b'"')
  if pos < 0:
    return _Guarded(data, [], [], False)
  pieces, strays, spans = [], [], []
  copied = 0
  counted, line_index = 0, 0  # newlines counted in data[:counted]
  marker = b"," * (num_fields - 1)
  while pos >= 0:
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    end = len(data) if end < 0 else end
    line = data[start:end]
    field = _stray_field(line)
    if field is None:
      pos = data.find(b'"', end)
      continue
    line_index += data.count(b"\n", counted, start)
    counted = start
    if multiline:
      record_end, data = _extend_record(data, start, end, num_fields, more)
      if record_end is not None:
        spans.append((line_index, data.count(b"\n", start, record_end)))
        pos = data.find(b'"', record_end)
        continue
    text = line.rstrip(b"\r")
    pieces += [data[copied:start], marker + line[len(text):]]
    copied = end
    strays.append((line_index, field, text.decode("utf-8", "replace")))
    pos = data.find(b'"', end)
  pieces.append(data[copied:])
  return _Guarded(b"".join(pieces), strays, spans, True)


def _extend_record(data: bytes, start: int, end: int, num_fields: int,
                   more: Callable[[], bytes]) -> tuple[int | None, bytes]:
  """(end of a sound record of `num_fields` fields spanning lines from `start`, or None; data).

  Only a line holding a quote can close the open one, so lines without one are stepped over: a
  stray quote costs a search to the next quote, not a match per line.
  """
  while True:
    quote = data.find(b'"', end)
    while quote < 0:
      searched = len(data)
      line = more()
      if not line or searched - start > _MAX_RECORD_BYTES:
        return None, data
      data += line
      quote = data.find(b'"', searched)
    end = data.find(b"\n", quote)
    end = len(data) if end < 0 else end
    if end - start > _MAX_RECORD_BYTES:
      return None, data
    record = data[start:end]
    if _RECORD.fullmatch(record):
      return (end if _num_fields(record) == num_fields else None), data


# ------------------------------------------------------------------------------------------------
# The streaming engine.


def parse_threads(window: float = 0.1) -> bool:
  """Whether a read uses threads (pyarrow's, and the prefetch thread): only when a core is free.

  Parsing is most of a read, and threads spread it over the cores that are free. On a machine whose
  cores are all busy they only share the time this process gets, and the hand-offs between them
  cost more than they gain: at a load average of 10 on 2 cores a single-threaded read of a 3M-row
  box file took 0.56-0.67x the wall time of one on pyarrow's threads, and at a load of 4-5.6 a read
  without the prefetch thread took a median 6.8 s (4.2 CPU-s) against 8.9 s (4.9 CPU-s) with it
  (six runs each; the thread's GIL hand-offs wait on the cores' other work).

  The idle CPU time over the `window` seconds before a read starts decides (`/proc/stat`): at least
  half a core idle. The 1-minute load average (the fallback where `/proc/stat` is missing) remembers
  a minute of the past, this process's own earlier reads included: a second full-size read right
  after a first, on an otherwise idle machine, saw a load of 1.6 on 2 cores and ran without threads.
  """
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  if cores < 2:
    return False
  idle = _idle_cores(window)
  if idle is None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    idle = cores - load
  return min(idle, cores) >= 0.5


def _idle_cores(window: float) -> float | None:
  """Cores' worth of idle time (idle + iowait) over `window` seconds; None without /proc/stat."""

  def times():
    with open("/proc/stat", "rb") as f:
      fields = f.readline().split()  # "cpu user nice system idle iowait irq softirq steal ..."
    counts = [int(x) for x in fields[1:9]]
    return sum(counts), counts[3] + counts[4]

  try:
    with open("/proc/stat", "rb") as f:
      cpus = sum(1 for line in f if re.match(rb"cpu\d", line))
    total0, idle0 = times()
    time.sleep(window)
    total1, idle1 = times()
  except (OSError, ValueError, IndexError):
    return None
  if total1 <= total0 or not cpus:
    return None  # The clock ticks (10 ms) did not move: no measurement.
  return cpus * (idle1 - idle0) / (total1 - total0)


@dataclasses.dataclass
class Chunk:
  """One segment's kept rows, and each kept row's physical line (computed on demand)."""

  table: object
  rows: np.ndarray | None  # parser-row index in the segment of each kept row; None: all rows kept
  records_of: Callable[[np.ndarray], np.ndarray]  # parser-row indices -> record numbers
  lines: "_LineMap"

  def line(self, kept_row: int) -> int:
    row = kept_row if self.rows is None else self.rows[kept_row]
    return self.lines.line(int(self.records_of(np.asarray([row]))[0]))


@dataclasses.dataclass
class _Built:
  """One segment parsed and built, before the verdict on its bad rows."""

  table: object  # Every row (or unit) of the segment, bad ones included.
  checks: Checks
  records_of: Callable[[np.ndarray], np.ndarray]  # parser-row indices -> record numbers
  invalid: list  # (record, line text, expected fields, actual fields) of rows pyarrow rejected
  records: int  # Records in the segment, rejected ones included.


class _LineMap:
  """Record number -> physical line: records that span lines shift every later record."""

  def __init__(self):
    self._at: list[int] = []  # records spanning lines, ascending
    self._cumulative: list[int] = []  # newlines inside them, cumulative
    # Segments are made (and their records added) on the prefetch thread, ahead of the consumer
    # asking for lines of earlier ones.
    self._lock = threading.Lock()

  def add(self, record: int, newlines: int) -> None:
    with self._lock:
      self._at.append(record)
      self._cumulative.append((self._cumulative[-1] if self._cumulative else 0) + newlines)

  def line(self, record: int) -> int:
    with self._lock:
      if not self._at:
        return int(record)
      before = int(np.searchsorted(self._at, record, side="left"))
      return int(record + (self._cumulative[before - 1] if before else 0))


class _Stream:
  """Reads one file segment by segment and turns each into a validated table chunk."""

  def __init__(self, path, fmt: Format, context: dict, strict: bool, report: ReadReport,
               chunk_bytes: int, wanted: Sequence[str] | None = None):
    self.path, self.fmt, self.context, self.strict = str(path), fmt, context, strict
    self.report = report
    if not report.path:
      report.path = self.path
    self.header = read_header(path)
    self.names = columns(path, fmt, wanted)  # as written -> canonical
    self.chunk_bytes = max(int(chunk_bytes), 1)
    # A file of one segment has nothing to prefetch, and its parse is short next to the window
    # that decides (`parse_threads`).
    self.threads = os.path.getsize(path) > self.chunk_bytes and parse_threads()
    self.lines = _LineMap()
    self.records_read = 0  # Records of the segments made so far (on the prefetch thread).
    self._read_buffer: bytearray | None = None  # Reused by every segment (see _read).
    self._parse_buffer: pa.Buffer | None = None  # Reused by every parse (see _arrow_owned).

  def __iter__(self) -> Iterator[Chunk]:
    yielded = False
    # Segments are read, guarded, parsed and built on a thread of their own (when a core is free
    # for it), one ahead of the one being consumed; only the verdict on bad rows (raise or count)
    # is given here, in order.
    segments = (prefetch.prefetched(self._built_segments, name="oi_models-csv") if self.threads
                else self._built_segments())
    for built in segments:
      chunk = self._verdict(built)
      if len(chunk.table) or not yielded:
        yielded = True
        yield chunk
    if not yielded:
      empty = _Guarded(b"", [], [], False)
      yield self._verdict(self._build(empty, self._empty_batch(), self.records_read + 2))

  def _built_segments(self) -> Iterator[_Built]:
    """Every segment of the file, parsed and built (run on the prefetch thread)."""
    with open(self.path, "rb") as f:
      f.readline()  # The header.
      data = self._read(f)
      while data:
        built = self._build(*self._prepare(f, data), self.records_read + 2)
        self.records_read += built.records
        # The next segment is read before this one is handed over, while the caller waits for it:
        # read later, each system call's return would wait for the caller's Python to let go of
        # the GIL (up to the 5 ms switch interval), 10-20 ms a segment measured.
        data = self._read(f)
        yield built

  def _prepare(self, f, data: memoryview) -> tuple[_Guarded, pa.RecordBatch | None]:
    """A segment guarded, and its fast parse (None when it needs the exact one)."""
    if data.obj.find(b'"', 0, len(data)) < 0:
      guarded = _Guarded(data, [], [], False)
    else:
      guarded = _guard(data.tobytes(), len(self.header), self.fmt.multiline, f.readline)
    try:
      return guarded, self._parse(guarded, True, [])
    except pa.ArrowInvalid:
      return guarded, None

  def _read(self, f) -> memoryview:
    """About `chunk_bytes` of whole lines (the file's last line may lack its end); empty at the end.

    A read that ends inside a line is cut after its last newline and the file is sought back to
    it, so the segment is the bytes as read (no second copy to complete its last line). Segments
    are read into one buffer, reused: the view returned is valid until the next read.
    """
    if self._read_buffer is None:
      self._read_buffer = bytearray(self.chunk_bytes)
    data = self._read_buffer
    read = end = f.readinto(data)
    if read == self.chunk_bytes:  # Not the file's end.
      end = data.rfind(b"\n") + 1
      if not end:  # One line longer than a segment.
        data = bytes(data) + f.readline()
        end = len(data)
      else:
        f.seek(end - read, os.SEEK_CUR)
    return memoryview(data)[:end]

  def _own(self, data) -> pa.Buffer:
    copy, self._parse_buffer = _arrow_owned(data, self._parse_buffer)
    return copy

  def _types(self, typed: bool) -> dict:
    types = {}
    for raw_name, name in self.names.items():
      types[raw_name] = DICT if name in self.fmt.dictionary else STRING
      if typed and name in self.fmt.numeric:
        types[raw_name] = self.fmt.numeric[name]
    return types

  def _parse(self, guarded: _Guarded, typed: bool, invalid: list) -> pa.RecordBatch:
    """The fast parse (`typed`: numbers typed, a rejected row fails it) or the exact one."""
    def on_invalid(row) -> str:
      invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
      return "skip"

    table = pa_csv.read_csv(
        self._own(guarded.data),
        read_options=pa_csv.ReadOptions(use_threads=typed and self.threads,
                                        block_size=_BLOCK_BYTES, column_names=self.header),
        parse_options=pa_csv.ParseOptions(
            quote_char='"' if guarded.has_quotes else False,
            newlines_in_values=self.fmt.multiline and bool(guarded.multiline),
            ignore_empty_lines=False, invalid_row_handler=None if typed else on_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types=self._types(typed), include_columns=list(self.names),
            strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True))
    table = table.combine_chunks()
    arrays = [column.chunk(0) if column.num_chunks else pa.array([], column.type)
              for column in table.columns]
    names = [self.names[raw_name] for raw_name in table.column_names]
    return pa.RecordBatch.from_arrays(arrays, names=names)

  def _build(self, guarded: _Guarded, batch: pa.RecordBatch | None,
             first_record: int) -> _Built:
    """A segment's table and checks; parses it exactly if `batch` is None."""
    invalid: list = []
    if batch is None:
      try:
        batch = self._parse(guarded, False, invalid)
      except pa.ArrowInvalid as e:
        raise AnnotationError(self.path, self.lines.line(first_record), "file",
                              f"CSV parse error: {e}") from None
    n = batch.num_rows
    for offset, newlines in guarded.multiline:
      self.lines.add(_record_at(guarded, first_record, offset), newlines)
    # Record number of each returned row: rows pyarrow rejected hold numbers too.
    rejected = first_record - 1 + np.asarray([number for number, *_ in invalid], np.int64)
    thresholds = rejected - first_record - np.arange(len(rejected))

    def records_of(rows: np.ndarray) -> np.ndarray:
      return first_record + rows + np.searchsorted(thresholds, rows, side="right")

    checks = Checks(n)
    self._add_strays(guarded, first_record, rejected, checks)
    table = self.fmt.build(dict(zip(batch.schema.names, batch.columns)), checks, self.context)
    invalid = [(first_record + number - 1, *rest) for number, *rest in invalid]
    return _Built(table, checks, records_of, invalid, n + len(invalid))

  def _verdict(self, built: _Built) -> Chunk:
    """The segment's kept rows: strict mode raises for its first bad row, lenient counts them."""
    checks, records_of, invalid, table = built.checks, built.records_of, built.invalid, built.table
    if self.strict:
      self._raise_first(checks, records_of, invalid)
    self._count(checks, records_of, invalid)
    bad = checks.bad()
    bad_units = checks.bad_units(bad)
    if bad_units is None:
      keep = kept_rows = np.flatnonzero(~bad)
    else:
      keep = np.flatnonzero(~bad_units)
      kept_rows = checks.unit_rows[keep]
    self.report.rows_read += built.records
    self.report.rows_kept += int(checks.n - bad.sum())
    for change, changed in checks.adjusted:
      self.report.adjusted[change] += int((changed & ~bad).sum())
    if len(keep) < len(table):
      table = table.take(keep)
    elif bad_units is None:
      kept_rows = None
    return Chunk(table, kept_rows, records_of, self.lines)

  def _add_strays(self, guarded: _Guarded, first_record: int, rejected: np.ndarray,
                  checks: Checks) -> None:
    if not guarded.strays:
      return
    messages = {}
    for line_index, field, line in guarded.strays:
      record = _record_at(guarded, first_record, line_index)
      row = record - first_record - int(np.searchsorted(rejected, record))
      name = self.header[field].strip() if field < len(self.header) else "row"
      messages[row] = (name, f"{STRAY_QUOTE}: {line[:80]!r}")
    # One check per field named, so strict mode and examples say which field.
    for name in dict.fromkeys(field for field, _ in messages.values()):
      mask = np.zeros(checks.n, bool)
      mask[[row for row, (field, _) in messages.items() if field == name]] = True
      checks.add(STRAY_QUOTE, name, mask, lambda row: messages[row][1])

  def _empty_batch(self) -> pa.RecordBatch:
    arrays = [pa.array([], DICT if name in self.fmt.dictionary else STRING)
              for name in self.names.values()]
    return pa.RecordBatch.from_arrays(arrays, names=list(self.names.values()))

  def _raise_first(self, checks: Checks, records_of, invalid: list) -> None:
    """Strict mode: raises for the segment's earliest bad row."""
    best = None  # (record, field, message)
    for _, field, mask, describe_row, unit_rows in checks.items:
      unit = int(np.flatnonzero(mask)[0])
      row = unit if unit_rows is None else int(unit_rows[unit])
      record = int(records_of(np.asarray([row]))[0])
      if best is None or record < best[0]:
        best = (record, field, describe_row(unit))
    if invalid and (best is None or invalid[0][0] < best[0]):
      record, line, expected, actual = invalid[0]
      best = (record, "row", _wrong_fields(line, expected, actual))
    if best is not None:
      raise AnnotationError(self.path, self.lines.line(best[0]), best[1], best[2])

  def _count(self, checks: Checks, records_of, invalid: list) -> None:
    """Lenient mode: counts each bad row (or unit) under its first failing check, with examples."""
    taken = np.zeros(checks.n, bool)
    taken_units = None
    for reason, field, mask, describe_row, unit_rows in checks.items:
      if unit_rows is None:
        units = np.flatnonzero(mask & ~taken)
        taken |= mask
      else:
        if taken_units is None:
          taken_units = np.zeros(len(unit_rows), bool)
        units = np.flatnonzero(mask & ~taken_units & ~taken[unit_rows])
        taken_units |= mask
      if not len(units):
        continue
      examples = []
      for unit in units[:self.report.wants_examples(reason)]:
        row = unit if unit_rows is None else unit_rows[unit]
        record = int(records_of(np.asarray([row]))[0])
        examples.append(f"{self.path}:{self.lines.line(record)}: {field}: "
                        f"{describe_row(int(unit))}")
      self.report.skip(reason, len(units), examples)
    for record, line, expected, actual in invalid:
      example = []
      if self.report.wants_examples(WRONG_FIELDS):
        example = [f"{self.path}:{self.lines.line(record)}: row: "
                   f"{_wrong_fields(line, expected, actual)}"]
      self.report.skip(WRONG_FIELDS, 1, example)


def _arrow_owned(data, buffer: pa.Buffer | None) -> tuple[pa.Buffer, pa.Buffer]:
  """(`data` copied into memory pyarrow owns, for `read_csv`; the buffer, to pass next time).

  pyarrow's threads let go of their slices of the input after `read_csv` has returned. Were the
  input a Python object (`pa.py_buffer`), the last one to let go would take the GIL to release
  it; a thread taking the GIL while the interpreter finalizes is ended by pthread_exit, which
  aborts the process from inside pyarrow ("terminate called without an active exception": seen
  when a read ended by an error just before exit). `buffer` is reused when large enough: fresh
  memory for every segment cost the kernel's zeroing of its pages (8% of a read's CPU time). Reuse
  is safe: a segment is built (its numbers and text taken out of pyarrow's arrays) before the next
  one is parsed, and `read_csv`'s arrays do not point into their input anyway (tests/io pin this).
  """
  if buffer is None or buffer.size < len(data):
    buffer = pa.allocate_buffer(len(data))
  memoryview(buffer).cast("B")[:len(data)] = data
  return buffer.slice(0, len(data)), buffer


def _record_at(guarded: _Guarded, first_record: int, line_index: int) -> int:
  """Record number of a segment's line (0-based index) that starts a record."""
  inside = sum(newlines for start, newlines in guarded.multiline if start < line_index)
  return first_record + line_index - inside


def _wrong_fields(line: str, expected: int, actual: int) -> str:
  return f"expected {expected} fields, found {actual}: {line[:80]!r}"


def chunks(path, fmt: Format, context: dict, strict: bool, report: ReadReport | None,
           chunk_bytes: int, wanted: Sequence[str] | None = None) -> Iterator[Chunk]:
  """Validated chunks of a file; logs a summary when rows were skipped and no report was passed.

  Args:
    path: the CSV.
    fmt: its kind.
    context: passed to `fmt.build` (vocabularies, options).
    strict: raise AnnotationError at the first bad row instead of skipping it.
    report: a ReadReport to add counts to (otherwise skips are logged as a warning).
    chunk_bytes: segment size; bounds memory.
    wanted: columns to read (a projection); None reads every column the format knows.
  """
  own = report is None
  report = ReadReport(str(path)) if own else report
  yield from _Stream(path, fmt, context, strict, report, chunk_bytes, wanted)
  if own and report.skipped:
    logger.warning("%s", report.summary())
