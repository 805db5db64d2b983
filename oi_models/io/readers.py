"""Streaming, columnar readers for the official Open Images annotation CSVs.

The train box file alone has 14.6M rows and the image-level label files tens of millions, so these
readers never hold a row as a Python object: pyarrow's streaming CSV reader parses the file in
chunks of `chunk_bytes`, every column becomes a numpy array, ImageIDs become uint64 keys (16 hex
digits are 64 bits) and MIDs become int32 indices into a vocabulary (a LabelMap's order when one is
given). Columns are found by header name, so one reader serves every release: boxes V3 (8
columns), V4/V5 (13), V6/V7 (21, with XClick points), Challenge 2019 (7); human and machine
image-level labels; image metadata with or without Rotation.

Bad input never disappears silently. Every row is validated (ImageID, MID, numbers and their ranges,
flags, field count). A bad row raises `AnnotationError` naming the file, its physical line (1-based,
header = line 1, exact across chunks, blank lines and quoted newlines) and the field in strict mode;
in lenient mode (the default) it is skipped and counted in a `ReadReport` with its reason and a few
"file:line: field: message" examples. A missing required column is always an error.

Speed: a first pass lets pyarrow parse numbers itself (and use threads). pyarrow numbers rejected
rows only when single-threaded, and a text that is not a number stops a typed read, so the first
such problem ends the fast pass and an exact pass (single thread, numbers as text) takes over from
the row where it stopped. Clean files never leave the fast pass.

Coordinates: a value within `COORD_TOLERANCE` of [0, 1] is clipped to it and counted in
`ReadReport.adjusted` (float32 text such as 1.0000001 is rounding, not an error); a value further
out skips the row. Boxes with XMin > XMax or YMin > YMax are skipped (zero-size boxes are kept).
Empty fields in optional columns read as -1 (flags, sizes, codes) or NaN (floats); an absent
optional column reads the same way (Confidence: 1).

`group_by_image` groups a table in memory (stable sort + offsets, no per-row objects);
`iter_image_groups` streams the groups of a file sorted by ImageID, as released, in bounded memory.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import logging
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from oi_models import labels
from oi_models.io.errors import AnnotationError

DEFAULT_CHUNK_BYTES = 16 << 20
COORD_TOLERANCE = 1e-3
MAX_EXAMPLES = 5

_NUMBER_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INTEGER_RE = r"^[+-]?[0-9]+$"
_STRING = pa.string()
_DICT = pa.dictionary(pa.int32(), pa.string())

_HEX_VALUES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
  _HEX_VALUES[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
  _HEX_VALUES[_c] = 10 + _i
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
_B64_VALUES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):
  _B64_VALUES[_c] = _i

CLICK_COLUMNS = (tuple(f"XClick{i}X" for i in range(1, 5)) +
                 tuple(f"XClick{i}Y" for i in range(1, 5)))
FLAG_COLUMNS = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
METADATA_COLUMNS = ("ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License",
                    "AuthorProfileURL", "Author", "Title", "OriginalSize", "OriginalMD5",
                    "Thumbnail300KURL", "Rotation")
_METADATA_TEXT = ("Subset", "OriginalURL", "OriginalLandingURL", "License", "AuthorProfileURL",
                  "Author", "Title", "Thumbnail300KURL")

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadReport:
  """What a read kept and what it skipped, and why.

  Attributes:
    path: the file read (the first one, when reports are merged).
    rows_read: rows after the header, blank ones included: rows_kept + sum(skipped.values()).
    rows_kept: rows in the returned tables.
    skipped: reason -> rows skipped.
    examples: reason -> the first few "file:line: field: message".
    adjusted: change -> values changed but kept (coordinates clipped into [0, 1]).
  """

  path: str = ""
  rows_read: int = 0
  rows_kept: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: dict = dataclasses.field(default_factory=dict)
  adjusted: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def skip(self, reason: str, count: int, examples: Iterable[str] = ()) -> None:
    self.skipped[reason] += count
    kept = self.examples.setdefault(reason, [])
    kept.extend(list(examples)[:MAX_EXAMPLES - len(kept)])

  def wants_examples(self, reason: str) -> int:
    return MAX_EXAMPLES - len(self.examples.get(reason, ()))

  def merge(self, other: "ReadReport") -> "ReadReport":
    """Adds `other`'s counts and examples to this report; returns self."""
    self.path = self.path or other.path
    self.rows_read += other.rows_read
    self.rows_kept += other.rows_kept
    for reason, count in other.skipped.items():
      self.skip(reason, count, other.examples.get(reason, ()))
    self.adjusted.update(other.adjusted)
    return self

  def to_dict(self) -> dict:
    return {"path": self.path, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "adjusted": dict(self.adjusted)}

  def summary(self) -> str:
    lines = [f"{self.path}: read {self.rows_read:,} rows, kept {self.rows_kept:,}, "
             f"skipped {sum(self.skipped.values()):,}"]
    for reason, count in self.skipped.most_common():
      lines.append(f"  skipped {count:,}: {reason}")
      lines += [f"    {example}" for example in self.examples.get(reason, ())]
    for change, count in self.adjusted.most_common():
      lines.append(f"  adjusted {count:,}: {change}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# ImageID keys.


def _keys_from_fixed(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[n, 16] uint8 ASCII -> (uint64 keys, bad mask) for rows that are not 16 hex digits."""
  nibbles = _HEX_VALUES[chars]
  bad = (nibbles == 255).any(axis=1)
  packed = (nibbles[:, 0::2] << 4) | (nibbles[:, 1::2] & 15)
  keys = np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)
  return keys, bad


def image_id_to_key(ids) -> np.ndarray:
  """16-hex-digit ImageIDs (str or bytes, either case) -> np.uint64 keys; bad IDs raise ValueError.

  A single str or bytes gives a np.uint64 scalar.
  """
  if isinstance(ids, (str, bytes)):
    return image_id_to_key([ids])[0]
  if isinstance(ids, np.ndarray) and ids.dtype.kind in "US" and ids.ndim == 1:
    lengths = np.char.str_len(ids)
    fixed = np.where(lengths == 16, ids, "-" * 16)
    if fixed.dtype.kind == "U":
      fixed = np.char.encode(fixed, "ascii", "replace")
    fixed = fixed.astype("S16").view(np.uint8)
  else:
    raw = [i.encode("ascii", "replace") if isinstance(i, str) else bytes(i) for i in ids]
    lengths = np.fromiter((len(r) for r in raw), np.int64, len(raw))
    fixed = np.frombuffer(b"".join(r if len(r) == 16 else b"-" * 16 for r in raw), np.uint8)
  if not len(lengths):
    return np.zeros(0, np.uint64)
  keys, bad = _keys_from_fixed(fixed.reshape(-1, 16))
  bad |= lengths != 16
  if bad.any():
    first = int(np.flatnonzero(bad)[0])
    raise ValueError(f"ImageID {list(ids)[first]!r} is not 16 hex digits")
  return keys


def key_to_image_id(keys) -> np.ndarray:
  """np.uint64 keys -> np.ndarray of 16-lowercase-hex-digit str ImageIDs."""
  keys = np.asarray(keys, dtype=np.uint64).ravel()
  raw = keys.astype(">u8").view(np.uint8).reshape(-1, 8)
  chars = np.empty((len(keys), 16), np.uint8)
  chars[:, 0::2] = _HEX_DIGITS[raw >> 4]
  chars[:, 1::2] = _HEX_DIGITS[raw & 15]
  return chars.view("S16").ravel().astype("U16")


# ------------------------------------------------------------------------------------------------
# Tables.


class _Table:
  """Columnar table: per-row numpy arrays plus vocabularies (tuples) that code fields index."""

  _VOCABS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (codes field, vocabulary field)

  @classmethod
  def _row_fields(cls) -> tuple[str, ...]:
    cached = cls.__dict__.get("_ROW_FIELDS")
    if cached is None:
      vocabs = {v for _, v in cls._VOCABS}
      cached = tuple(f.name for f in dataclasses.fields(cls) if f.name not in vocabs)
      cls._ROW_FIELDS = cached
    return cached

  def __len__(self) -> int:
    lazy = self.__dict__.get("_lazy")
    return lazy[2] - lazy[1] if lazy else len(self.image_id)

  def __getattr__(self, name: str):
    # Only reached for a lazy row range (see _rows) whose field was not read yet.
    lazy = self.__dict__.get("_lazy")
    if lazy is None or name.startswith("__"):
      raise AttributeError(name)
    parent, start, stop = lazy
    value = getattr(parent, name)
    if value is not None and not isinstance(value, tuple):
      value = value[start:stop]
    self.__dict__[name] = value
    return value

  def _with_rows(self, pick: Callable[[np.ndarray], np.ndarray]):
    new = object.__new__(type(self))
    state = new.__dict__
    for name in self._row_fields():
      value = getattr(self, name)
      state[name] = None if value is None else pick(value)
    for _, name in self._VOCABS:
      state[name] = getattr(self, name)
    return new

  def __getitem__(self, rows: slice):
    """Rows `start:stop` as views (no copy); see `_rows`."""
    if not isinstance(rows, slice) or rows.step not in (None, 1):
      raise TypeError("index a table with a start:stop slice; use take() for row indices")
    start, stop, _ = rows.indices(len(self))
    return self._rows(start, max(start, stop))

  def _rows(self, start: int, stop: int):
    """Rows start:stop (valid bounds) as views, each field sliced on first access.

    Streaming groups make one such table per image, so making one must cost almost nothing.
    """
    new = object.__new__(type(self))
    new.__dict__["_lazy"] = (self, start, stop)
    return new

  def take(self, indices) -> "_Table":
    """The rows at `indices` (int array or boolean mask), copied."""
    indices = np.asarray(indices)
    return self._with_rows(lambda a: a[indices])

  @classmethod
  def concat(cls, tables: Sequence["_Table"]):
    """Rows of all tables in order; vocabularies merged (first-seen order), codes remapped."""
    tables = list(tables)
    if not tables:
      raise ValueError("concat needs at least one table")
    if len(tables) == 1:
      return tables[0]
    state = {}
    for codes_name, vocab_name in cls._VOCABS:
      vocab, parts = _merge_vocabs([getattr(t, vocab_name) for t in tables],
                                   [getattr(t, codes_name) for t in tables])
      state[vocab_name], state[codes_name] = vocab, np.concatenate(parts)
    for name in cls._row_fields():
      if name in state:
        continue
      parts = [getattr(t, name) for t in tables]
      state[name] = _concat_optional(parts, [len(t) for t in tables])
    return cls(**state)


def _merge_vocabs(vocabs, code_arrays):
  """One vocabulary for several tables, and each table's codes remapped into it."""
  merged: dict[str, int] = {}
  parts = []
  for vocab, codes in zip(vocabs, code_arrays):
    mapping = np.fromiter((merged.setdefault(v, len(merged)) for v in vocab), np.int32, len(vocab))
    if np.array_equal(mapping, np.arange(len(vocab))):
      parts.append(codes)
    else:
      parts.append(np.where(codes >= 0, np.append(mapping, -1)[codes], -1).astype(codes.dtype))
  return tuple(merged), parts


def _concat_optional(parts, lengths):
  """Concatenates arrays; None parts (an absent optional column) become NaN beside real values."""
  present = [p for p in parts if p is not None]
  if not present:
    return None
  if len(present) < len(parts):
    template = present[0]
    parts = [p if p is not None else np.full((n,) + template.shape[1:], np.nan, template.dtype)
             for p, n in zip(parts, lengths)]
  return np.concatenate(parts)


@dataclasses.dataclass(eq=False)
class BoxTable(_Table):
  """Boxes, one row each. Codes index `mids` / `sources`; -1 = unknown or absent."""

  image_id: np.ndarray  # uint64
  label: np.ndarray  # int32 into mids
  mids: tuple
  confidence: np.ndarray  # float32, 1 when the file has no Confidence column
  xmin: np.ndarray  # float32 (or the coordinate_dtype read with), normalized
  xmax: np.ndarray
  ymin: np.ndarray
  ymax: np.ndarray
  is_occluded: np.ndarray  # int8, -1 = unknown or column absent
  is_truncated: np.ndarray
  is_group_of: np.ndarray
  is_depiction: np.ndarray
  is_inside: np.ndarray
  source: np.ndarray  # int8 into sources
  sources: tuple
  x_click: np.ndarray | None  # float32 [N, 4, 2]: (x, y) of XClick1..4; -1 / NaN unknown

  _VOCABS: ClassVar = (("label", "mids"), ("source", "sources"))

  def yxyx(self) -> np.ndarray:
    """Boxes as [N, 4] (ymin, xmin, ymax, xmax), the order of TF and the evaluator."""
    return np.stack([self.ymin, self.xmin, self.ymax, self.xmax], axis=1)


@dataclasses.dataclass(eq=False)
class LabelTable(_Table):
  """Image-level labels: confidence 1 positive, 0 verified negative, a fraction (machine labels)."""

  image_id: np.ndarray  # uint64
  label: np.ndarray  # int32 into mids
  mids: tuple
  confidence: np.ndarray  # float32
  source: np.ndarray  # int8 into sources, -1 when absent
  sources: tuple

  _VOCABS: ClassVar = (("label", "mids"), ("source", "sources"))


@dataclasses.dataclass(eq=False)
class MetadataTable(_Table):
  """Image metadata, one row per image. Text columns are object arrays of str ('' when empty)."""

  image_id: np.ndarray  # uint64
  subset: np.ndarray
  original_url: np.ndarray
  original_landing_url: np.ndarray
  license: np.ndarray
  author_profile_url: np.ndarray
  author: np.ndarray
  title: np.ndarray
  original_size: np.ndarray  # int64, -1 when empty
  original_md5: np.ndarray  # object array of 16-byte bytes (b"" when empty)
  thumbnail_300k_url: np.ndarray
  rotation: np.ndarray  # float32 degrees, NaN when empty or the column is absent


# ------------------------------------------------------------------------------------------------
# Line numbers.


class _Lines:
  """Maps the parser's rows to physical file lines.

  pyarrow numbers records (header = 1) for the rows it rejects; the rows it returns are the other
  records in order. A record spans more than one line when a quoted value holds a newline, so
  records with embedded newlines are remembered to turn record numbers into line numbers.
  """

  def __init__(self):
    self.invalid: list[int] = []  # record numbers of rows the parser rejected, ascending
    self._extra: list[tuple[int, int]] = []  # (record, newlines inside it)
    self._extra_cache = None

  def add_invalid(self, record: int, text: str) -> None:
    self.invalid.append(record)
    if "\n" in text:
      self.add_newlines([record], [text.count("\n")])

  def add_newlines(self, records, counts) -> None:
    self._extra.extend(zip(records, counts))
    self._extra_cache = None

  def records(self, valid_index: np.ndarray) -> np.ndarray:
    """Record numbers of the rows the parser returned, by their 0-based index among those rows."""
    valid_index = np.asarray(valid_index, np.int64)
    invalid = np.asarray(self.invalid, np.int64)
    thresholds = invalid - 2 - np.arange(len(invalid))
    return valid_index + 2 + np.searchsorted(thresholds, valid_index, side="right")

  def line(self, record: int) -> int:
    """First physical line of a record."""
    if not self._extra:
      return int(record)
    if self._extra_cache is None:
      extra = sorted(self._extra)
      self._extra_cache = (np.asarray([r for r, _ in extra], np.int64),
                           np.cumsum([n for _, n in extra]))
    at, cumulative = self._extra_cache
    before = int(np.searchsorted(at, record, side="left"))
    return int(record + (cumulative[before - 1] if before else 0))


# ------------------------------------------------------------------------------------------------
# Column conversion and row checks.


class _Checks:
  """Row failures of one batch, in check order: (reason, field, mask, describe(row) -> message)."""

  def __init__(self, n: int):
    self.n = n
    self.items: list[tuple[str, str, np.ndarray, Callable[[int], str]]] = []
    self.adjusted: list[tuple[str, np.ndarray]] = []  # (change, rows changed)

  def add(self, reason: str, field: str, mask: np.ndarray, describe: Callable[[int], str]):
    if mask.any():
      self.items.append((reason, field, mask, describe))

  def bad(self) -> np.ndarray:
    bad = np.zeros(self.n, bool)
    for _, _, mask, _ in self.items:
      bad |= mask
    return bad


def _raw(column: pa.Array, row: int):
  """A field's value as text; numbers parsed by the fast pass print as their shortest text."""
  value = column[row].as_py()
  if isinstance(value, float):
    return str(np.float32(value))
  return str(value) if isinstance(value, int) else value


def _null_mask(column: pa.Array) -> np.ndarray:
  if column.null_count == 0:
    return np.zeros(len(column), bool)
  return column.is_null().to_numpy(zero_copy_only=False)


def _floats(column: pa.Array, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(`dtype` values with NaN for empty, empty mask, not-a-number mask) of a string column."""
  target = pa.from_numpy_dtype(np.dtype(dtype))
  if pa.types.is_dictionary(column.type):
    values, _, bad = _floats(column.dictionary, dtype)
    indices = _indices(column)
    values = np.concatenate([values, np.full(1, np.nan, dtype)])
    return values[indices], indices < 0, np.append(bad, False)[indices]
  empty = _null_mask(column)
  try:
    values = column if column.type == target else pc.cast(column, target)
    bad = np.zeros(len(column), bool)
  except pa.ArrowInvalid:
    ok = pc.fill_null(pc.match_substring_regex(column, _NUMBER_RE), False)
    values = pc.cast(pc.if_else(ok, column, pa.scalar(None, _STRING)), target)
    bad = ~ok.to_numpy(zero_copy_only=False) & ~empty
  if values.null_count:
    values = pc.fill_null(values, np.nan)
  values = values.to_numpy(zero_copy_only=False).copy()
  bad |= ~np.isfinite(values) & ~empty
  values[bad] = np.nan
  return values, empty, bad


def _integers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(int64 values, -1 for empty; not-an-integer mask) of a string column."""
  empty = _null_mask(column)
  try:
    values = pc.cast(column, pa.int64())
    bad = np.zeros(len(column), bool)
  except pa.ArrowInvalid:
    ok = pc.fill_null(pc.match_substring_regex(column, _INTEGER_RE), False)
    values = pc.cast(pc.if_else(ok, column, pa.scalar(None, _STRING)), pa.int64())
    bad = ~ok.to_numpy(zero_copy_only=False) & ~empty
  return pc.fill_null(values, -1).to_numpy(zero_copy_only=False).astype(np.int64), bad


def _indices(column: pa.Array) -> np.ndarray:
  """A dictionary column's indices, -1 where empty."""
  indices = column.indices
  if indices.null_count:
    indices = pc.fill_null(indices, -1)
  return indices.to_numpy(zero_copy_only=False)


def _dictionary_codes(column: pa.Array, lookup: Callable[[str], int]) -> np.ndarray:
  """Codes of a dictionary column through `lookup` of its (few) distinct values; -2 = empty."""
  mapping = np.fromiter((lookup(v) for v in column.dictionary.to_pylist()), np.int64,
                        len(column.dictionary))
  return np.append(mapping, -2)[_indices(column)]


class _Vocab:
  """MID or Source vocabulary: a LabelMap's fixed order, or first-seen order across chunks."""

  def __init__(self, label_map: labels.LabelMap | None = None):
    self.fixed = label_map is not None
    self.items: tuple = tuple(label_map.mids) if self.fixed else ()
    self._index = {m: i for i, m in enumerate(self.items)}

  def lookup(self, value: str) -> int:
    index = self._index.get(value)
    if index is None:
      if self.fixed:
        return -1
      index = self._index[value] = len(self._index)
      self.items += (value,)
    return index

  def codes(self, column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes with -1 for empty or unknown, empty mask, unknown mask)."""
    codes = _dictionary_codes(column, self.lookup)
    empty, unknown = codes == -2, codes == -1
    codes[empty] = -1
    return codes.astype(np.int32), empty, unknown


def _flag_value(text: str) -> int:
  try:
    value = float(text)
  except ValueError:
    return -3
  return int(value) if value in (-1.0, 0.0, 1.0) else -3


def _flags(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(int8 flags, -1 for empty; mask of values not in {-1, 0, 1})."""
  if column.type == pa.int8():
    values = (pc.fill_null(column, -1) if column.null_count else column).to_numpy().copy()
    bad = (values < -1) | (values > 1)
    values[bad] = -1
    return values, bad
  codes = _dictionary_codes(column, _flag_value)
  bad = codes == -3
  codes[bad | (codes == -2)] = -1
  return codes.astype(np.int8), bad


def _image_keys(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 keys, bad mask) of an ImageID string column, decoded from its fixed-width bytes."""
  lengths = pc.binary_length(column)
  if lengths.null_count:
    lengths = pc.fill_null(lengths, 0)
  ok_length = lengths.to_numpy(zero_copy_only=False) == 16
  if not ok_length.all():
    column = pc.if_else(pa.array(ok_length), column, "-" * 16)
  if column.offset or column.null_count:
    column = pa.concat_arrays([column])  # Fresh buffers, no slice offset.
  n = len(column)
  offsets = np.frombuffer(column.buffers()[1], np.int32, n + 1)
  data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
  keys, bad = _keys_from_fixed(data.reshape(n, 16))
  return keys, bad | ~ok_length


def _describe(column: pa.Array, message: str) -> Callable[[int], str]:
  return lambda row: f"{_raw(column, row)!r} {message}"


def _check_image_ids(batch: dict, checks: _Checks) -> np.ndarray:
  column = batch["ImageID"]
  keys, bad = _image_keys(column)
  empty = _null_mask(column)
  if empty.any():
    blank = empty.copy()
    for other in batch.values():
      blank &= _null_mask(other)
    checks.add("blank line", "row", blank, lambda row: "no values")
    checks.add("missing ImageID", "ImageID", empty & ~blank, lambda row: "empty")
  checks.add("bad ImageID", "ImageID", bad & ~empty, _describe(column, "is not 16 hex digits"))
  return keys


def _check_mids(batch: dict, vocab: _Vocab, checks: _Checks) -> np.ndarray:
  column = batch["LabelName"]
  codes, empty, unknown = vocab.codes(column)
  checks.add("missing LabelName", "LabelName", empty, lambda row: "empty")
  checks.add("unknown MID", "LabelName", unknown, _describe(column, "is not in the label map"))
  return codes


def _check_fraction(batch: dict, name: str, checks: _Checks, default: float) -> np.ndarray:
  """A number in [0, 1] (Confidence); `default` where absent or empty (NaN: empty is an error)."""
  if name not in batch:
    return np.full(checks.n, default, np.float32)
  column = batch[name]
  values, empty, bad = _floats(column)
  checks.add(f"bad {name}", name, bad, _describe(column, "is not a number"))
  if np.isnan(default):
    checks.add(f"missing {name}", name, empty, lambda row: "empty")
  else:
    values[empty] = default
  with np.errstate(invalid="ignore"):
    outside = (values < 0) | (values > 1)
  checks.add(f"{name} outside [0, 1]", name, outside, _describe(column, "is outside [0, 1]"))
  return values


def _check_coordinate(batch: dict, name: str, checks: _Checks, allow_unknown: bool,
                      dtype=np.float32, validate: bool = True) -> np.ndarray:
  """A normalized coordinate: clipped within COORD_TOLERANCE of [0, 1], else the row is skipped.

  With `allow_unknown` (XClick points) -1 and empty (NaN) are kept as unknown. With `validate`
  False the parsed value is kept as is (no clipping, no range check); text that is not a number and
  empty required values are still bad rows.
  """
  column = batch[name]
  values, empty, bad = _floats(column, dtype)
  what = "XClick" if allow_unknown else "coordinate"
  checks.add(f"bad {what}", name, bad, _describe(column, "is not a number"))
  if not allow_unknown:
    checks.add(f"missing {what}", name, empty, lambda row: "empty")
  if not validate:
    return values
  with np.errstate(invalid="ignore"):
    low, high = values < 0, values > 1
    if allow_unknown:
      low &= values != -1
    outside = (low & (values < -COORD_TOLERANCE)) | (high & (values > 1 + COORD_TOLERANCE))
  checks.add(f"{what} outside [0, 1]", name, outside, _describe(column, "is outside [0, 1]"))
  clipped = (low | high) & ~outside
  if clipped.any():
    values[clipped] = np.clip(values[clipped], 0, 1)
    checks.adjusted.append((f"{what} clipped to [0, 1] (within {COORD_TOLERANCE})", clipped))
  return values


def _check_flag(batch: dict, name: str, checks: _Checks) -> np.ndarray:
  if name not in batch:
    return np.full(checks.n, -1, np.int8)
  column = batch[name]
  values, bad = _flags(column)
  checks.add(f"{name} not in {{-1, 0, 1}}", name, bad, _describe(column, "is not -1, 0 or 1"))
  return values


def _source_codes(batch: dict, vocab: _Vocab, n: int) -> np.ndarray:
  if "Source" not in batch:
    return np.full(n, -1, np.int8)
  return vocab.codes(batch["Source"])[0].astype(np.int8)


# ------------------------------------------------------------------------------------------------
# Formats: which columns a file must have, how they are typed, how a batch becomes a table.


@dataclasses.dataclass(frozen=True)
class _Format:
  name: str
  required: tuple[str, ...]
  optional: tuple[str, ...]
  all_or_none: tuple[str, ...]  # optional columns that come together (XClick)
  dictionary: frozenset  # columns with few distinct values, read dictionary-encoded
  build: Callable  # (batch: dict[name, pa.Array], checks, context) -> table of all batch rows
  # Quoted values may hold newlines (titles). Off for boxes and labels: parsing is faster, and a
  # newline there is an error either way (the row's fields are counted or checked as wrong).
  multiline: bool = False
  # Columns the fast first pass parses as numbers directly (float32, flags int8). A value that does
  # not parse stops that pass; the file is then read again from the row where it stopped with these
  # columns as text, so the bad value is found, checked and reported like any other.
  numeric: dict = dataclasses.field(default_factory=dict)


def _build_boxes(batch: dict, checks: _Checks, context: dict) -> BoxTable:
  n = checks.n
  keys = _check_image_ids(batch, checks)
  codes = _check_mids(batch, context["mids"], checks)
  confidence = _check_fraction(batch, "Confidence", checks, 1.0)
  validate = context.get("validate_coordinates", True)
  xmin, xmax, ymin, ymax = (_check_coordinate(batch, name, checks, False,
                                              context["coordinate_dtype"], validate)
                            for name in ("XMin", "XMax", "YMin", "YMax"))
  if validate:
    with np.errstate(invalid="ignore"):
      checks.add("inverted box", "XMin", xmin > xmax,
                 lambda row: f"XMin {xmin[row]:g} > XMax {xmax[row]:g}")
      checks.add("inverted box", "YMin", ymin > ymax,
                 lambda row: f"YMin {ymin[row]:g} > YMax {ymax[row]:g}")
  flags = [_check_flag(batch, name, checks) for name in FLAG_COLUMNS]
  x_click = None
  if CLICK_COLUMNS[0] in batch:
    points = [_check_coordinate(batch, name, checks, True) for name in CLICK_COLUMNS]
    x_click = np.stack([np.stack(points[:4], axis=1), np.stack(points[4:], axis=1)], axis=2)
  return BoxTable(keys, codes, context["mids"].items, confidence, xmin, xmax, ymin, ymax, *flags,
                  _source_codes(batch, context["sources"], n), context["sources"].items, x_click)


def _build_labels(batch: dict, checks: _Checks, context: dict) -> LabelTable:
  keys = _check_image_ids(batch, checks)
  codes = _check_mids(batch, context["mids"], checks)
  confidence = _check_fraction(batch, "Confidence", checks, np.nan)
  return LabelTable(keys, codes, context["mids"].items, confidence,
                    _source_codes(batch, context["sources"], checks.n), context["sources"].items)


def _md5s(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(object array of 16-byte digests, b"" when empty; bad mask) from base64 text, vectorized."""
  n = len(column)
  empty = _null_mask(column)
  lengths = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
  fixed = lengths == 24
  column = pc.if_else(pa.array(fixed), column, "A" * 22 + "==")
  column = pa.concat_arrays([column])
  offsets = np.frombuffer(column.buffers()[1], np.int32, n + 1)
  chars = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0]:offsets[-1]].reshape(n, 24)
  sextets = _B64_VALUES[chars[:, :22]].astype(np.uint32)
  bad = ~fixed | (sextets == 255).any(axis=1) | (chars[:, 22:] != ord("=")).any(axis=1)
  bad |= (sextets[:, 21] & 15) != 0  # 128 bits: the last digit's low 4 bits are padding.
  quads = sextets[:, :20].reshape(n, 5, 4)
  triples = (quads[:, :, 0] << 18) | (quads[:, :, 1] << 12) | (quads[:, :, 2] << 6) | quads[:, :, 3]
  digest = np.empty((n, 16), np.uint8)
  digest[:, 0:15:3] = triples >> 16
  digest[:, 1:15:3] = (triples >> 8) & 255
  digest[:, 2:15:3] = triples & 255
  digest[:, 15] = (sextets[:, 20] << 2) | (sextets[:, 21] >> 4)
  out = np.empty(n, object)
  out[:] = [b"" if e or b else d for d, e, b in zip(digest.view("V16").ravel().tolist(),
                                                     empty, bad)]
  return out, bad & ~empty


def _text(batch: dict, name: str) -> np.ndarray:
  """Object array of str, '' when empty; a dictionary column's rows share its str objects."""
  column = batch[name]
  if pa.types.is_dictionary(column.type):
    values = np.array(column.dictionary.to_pylist() + [""], object)
    return values[_indices(column)]
  return pc.fill_null(column, "").to_numpy(zero_copy_only=False)


def _build_metadata(batch: dict, checks: _Checks, context: dict) -> MetadataTable:
  del context
  keys = _check_image_ids(batch, checks)
  size, bad_size = _integers(batch["OriginalSize"])
  checks.add("bad OriginalSize", "OriginalSize", bad_size | (size < -1),
             _describe(batch["OriginalSize"], "is not a non-negative integer"))
  md5, bad_md5 = _md5s(batch["OriginalMD5"])
  checks.add("bad OriginalMD5", "OriginalMD5", bad_md5,
             _describe(batch["OriginalMD5"], "is not the base64 of a 16-byte MD5"))
  rotation = np.full(checks.n, np.nan, np.float32)
  if "Rotation" in batch:
    rotation, _, bad = _floats(batch["Rotation"])
    with np.errstate(invalid="ignore"):
      bad |= ~np.isnan(rotation) & ~np.isin(rotation, (0, 90, 180, 270))
    checks.add("bad Rotation", "Rotation", bad,
               _describe(batch["Rotation"], "is not 0, 90, 180 or 270"))
  text = {name: _text(batch, name) for name in _METADATA_TEXT}
  return MetadataTable(keys, text["Subset"], text["OriginalURL"], text["OriginalLandingURL"],
                       text["License"], text["AuthorProfileURL"], text["Author"], text["Title"],
                       size, md5, text["Thumbnail300KURL"], rotation)


_BOXES = _Format("boxes", ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"),
                 ("Source", "Confidence") + FLAG_COLUMNS, CLICK_COLUMNS,
                 frozenset(("Source", "LabelName") + FLAG_COLUMNS), _build_boxes,
                 # Box corners are parsed as float64 (then cast to the coordinate dtype asked for),
                 # so an evaluation sees the values the official evaluator's pandas reads.
                 numeric=dict([(name, pa.float32()) for name in ("Confidence",) + CLICK_COLUMNS] +
                              [(name, pa.float64()) for name in ("XMin", "XMax", "YMin", "YMax")] +
                              [(name, pa.int8()) for name in FLAG_COLUMNS]))
_LABELS = _Format("image labels", ("ImageID", "LabelName", "Confidence"), ("Source",), (),
                  frozenset(("Source", "LabelName", "Confidence")), _build_labels)
_METADATA = _Format("image metadata", METADATA_COLUMNS[:-1], ("Rotation",), (),
                    frozenset(("Subset", "License", "Rotation")), _build_metadata,
                    multiline=True)


# ------------------------------------------------------------------------------------------------
# The streaming engine.


def _read_header(path) -> list[str]:
  with open(path, "rb") as f:
    first = f.readline()
  text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
  if not text.strip():
    raise AnnotationError(path, 1, "header", "empty file: no header line")
  return next(csv.reader([text]))


def _columns(path, fmt: _Format) -> list[str]:
  header = _read_header(path)
  present = set(header)
  for name in fmt.required:
    if name not in present:
      raise AnnotationError(path, 1, name, f"required column missing from the {fmt.name} header "
                            f"{','.join(header)}")
  clicks = [name for name in fmt.all_or_none if name in present]
  if clicks and len(clicks) < len(fmt.all_or_none):
    missing = [name for name in fmt.all_or_none if name not in present]
    raise AnnotationError(path, 1, missing[0], f"column missing: the header has {clicks[0]} but "
                          f"not {','.join(missing)}")
  wanted = fmt.required + fmt.optional + fmt.all_or_none
  return [name for name in header if name in wanted]


@dataclasses.dataclass
class _Chunk:
  """One batch's kept rows, and the 0-based parser-row index of each (for line numbers)."""

  table: _Table
  rows: np.ndarray  # int64 parser-row index of each kept row
  lines: _Lines

  def line(self, kept_row: int) -> int:
    return self.lines.line(int(self.lines.records(self.rows[kept_row:kept_row + 1])[0]))


class _Stream:
  """Reads one file batch by batch and turns each batch into a validated table chunk."""

  def __init__(self, path, fmt: _Format, context: dict, strict: bool, report: ReadReport,
               chunk_bytes: int):
    self.path, self.fmt, self.context, self.strict = str(path), fmt, context, strict
    self.report = report
    if not report.path:
      report.path = self.path
    self.columns = _columns(path, fmt)
    self.chunk_bytes = max(int(chunk_bytes), 1)
    self.lines = _Lines()
    self.pending: list[tuple[int, str, int, int]] = []  # rejected rows not yet reported
    self.reported_upto = 0  # record number of the last rejected row reported
    self.parsed = 0  # rows the parser has returned so far

  def _on_invalid(self, row) -> str:
    if row.number is None:
      return "error"  # The fast pass cannot number rows: it stops, and the exact pass takes over.
    self.lines.add_invalid(row.number, row.text)
    if row.number > self.reported_upto:
      self.pending.append((row.number, row.text, row.expected_columns, row.actual_columns))
    return "skip"

  def _open(self, f, typed: bool):
    types = {name: _DICT if name in self.fmt.dictionary else _STRING for name in self.columns}
    if typed:
      types.update((name, t) for name, t in self.fmt.numeric.items() if name in types)
    # The first block must hold the header line.
    header_bytes = len(",".join(self.columns)) * 4 + 64
    return pa_csv.open_csv(
        f,
        read_options=pa_csv.ReadOptions(use_threads=typed,
                                        block_size=max(self.chunk_bytes, header_bytes)),
        parse_options=pa_csv.ParseOptions(newlines_in_values=self.fmt.multiline,
                                          ignore_empty_lines=False,
                                          invalid_row_handler=self._on_invalid),
        convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=self.columns,
                                              strings_can_be_null=True, null_values=[""],
                                              quoted_strings_can_be_null=True))

  def __iter__(self) -> Iterator[_Chunk]:
    yielded = False
    typed = True  # The fast pass: threads, and numbers parsed by pyarrow.
    while True:
      try:
        for chunk in self._pass(typed):
          if len(chunk.table) or not yielded:
            yielded = True
            yield chunk
        break
      except pa.ArrowInvalid as e:
        if typed:
          typed = False  # Read again from where the fast pass stopped, exactly.
          continue
        raise AnnotationError(self.path, None, "file", f"CSV parse error: {e}") from None
    self._flush_invalid(None)
    if not yielded:
      yield self._chunk(self._empty_batch())

  def _pass(self, typed: bool) -> Iterator[_Chunk]:
    """One read of the file, resuming after the rows that earlier passes turned into chunks."""
    resume, self.parsed = self.parsed, 0
    self.lines, self.pending = _Lines(), []
    for batch in self._open(self.path, typed):
      n, first = batch.num_rows, self.parsed
      if first < resume:
        done = min(n, resume - first)
        self._note_newlines(batch.slice(0, done), first)
        self.parsed += done
        if done == n:
          continue
        batch = batch.slice(done)
      yield self._chunk(batch)

  def _empty_batch(self) -> pa.RecordBatch:
    arrays = [pa.array([], _DICT if name in self.fmt.dictionary else _STRING)
              for name in self.columns]
    return pa.RecordBatch.from_arrays(arrays, names=self.columns)

  def _chunk(self, batch: pa.RecordBatch) -> _Chunk:
    n, first = batch.num_rows, self.parsed
    self.parsed += n
    columns = dict(zip(batch.schema.names, batch.columns))
    self._note_newlines(batch, first)
    checks = _Checks(n)
    table = self.fmt.build(columns, checks, self.context)
    bad = checks.bad()
    end_record = int(self.lines.records([first + n - 1])[0]) if n else None
    if self.strict and (checks.items or self.pending):
      self._raise_first(checks, first, end_record)
    self._flush_invalid(end_record)
    self._count(checks, bad, first)
    keep = np.flatnonzero(~bad)
    self.report.rows_read += n
    self.report.rows_kept += len(keep)
    for change, rows in checks.adjusted:
      self.report.adjusted[change] += int((rows & ~bad).sum())
    if len(keep) < n:
      table = table.take(keep)
    return _Chunk(table, first + keep, self.lines)

  def _note_newlines(self, batch: pa.RecordBatch, first: int) -> None:
    """Counts newlines inside quoted values, so later rows get their true line numbers.

    Only text columns can hold one (numbers would not parse), and dictionary columns are checked
    through their few distinct values, so this costs little.
    """
    counts = None
    for column in batch.columns:
      if pa.types.is_dictionary(column.type):
        per_value = pc.count_substring(column.dictionary, "\n").to_numpy(zero_copy_only=False)
        if per_value.any():
          found = np.append(per_value, 0)[_indices(column)]
          counts = found if counts is None else counts + found
      elif pa.types.is_string(column.type) and pc.any(pc.match_substring(column, "\n")).as_py():
        found = pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy(zero_copy_only=False)
        counts = found if counts is None else counts + found
    if counts is None:
      return
    rows = np.flatnonzero(counts)
    if len(rows):
      self.lines.add_newlines(self.lines.records(first + rows).tolist(), counts[rows].tolist())

  def _where(self, row: int) -> str:
    return f"{self.path}:{self.lines.line(int(self.lines.records([row])[0]))}"

  def _raise_first(self, checks: _Checks, first: int, end_record: int | None) -> None:
    """Strict mode: raises for the earliest bad row up to this batch's end."""
    best = None  # (record, field, message)
    for _, field, mask, describe in checks.items:
      row = int(np.flatnonzero(mask)[0])
      record = int(self.lines.records([first + row])[0])
      if best is None or record < best[0]:
        best = (record, field, describe(row))
    if self.pending and (end_record is None or self.pending[0][0] < end_record):
      record, text, expected, actual = self.pending[0]
      if best is None or record < best[0]:
        best = (record, "row", _wrong_fields(text, expected, actual))
    if best is not None:
      raise AnnotationError(self.path, self.lines.line(best[0]), best[1], best[2])

  def _flush_invalid(self, end_record: int | None) -> None:
    """Reports the rows the parser rejected before `end_record` (all, when None)."""
    keep = []
    for record, text, expected, actual in self.pending:
      if end_record is not None and record > end_record:
        keep.append((record, text, expected, actual))
        continue
      if self.strict:
        raise AnnotationError(self.path, self.lines.line(record), "row",
                              _wrong_fields(text, expected, actual))
      reason = "wrong number of fields"
      example = []
      if self.report.wants_examples(reason):
        example = [f"{self.path}:{self.lines.line(record)}: row: "
                   f"{_wrong_fields(text, expected, actual)}"]
      self.report.skip(reason, 1, example)
      self.report.rows_read += 1
      self.reported_upto = record
    self.pending = keep

  def _count(self, checks: _Checks, bad: np.ndarray, first: int) -> None:
    """Lenient mode: counts each bad row under its first failing check, with a few examples."""
    taken = np.zeros(checks.n, bool)
    for reason, field, mask, describe in checks.items:
      rows = np.flatnonzero(mask & ~taken)
      taken |= mask
      if not len(rows):
        continue
      examples = [f"{self._where(first + row)}: {field}: {describe(row)}"
                  for row in rows[:self.report.wants_examples(reason)]]
      self.report.skip(reason, len(rows), examples)


def _wrong_fields(text: str, expected: int, actual: int) -> str:
  return f"expected {expected} fields, found {actual}: {text[:80]!r}"


def _chunks(path, fmt: _Format, label_map, strict, report, chunk_bytes,
            coordinate_dtype=np.float32, validate_coordinates=True) -> Iterator[_Chunk]:
  """Validated chunks of a file; logs a summary when rows were skipped and no report was passed."""
  own = report is None
  report = ReadReport(str(path)) if own else report
  context = {"mids": _Vocab(label_map), "sources": _Vocab(),
             "coordinate_dtype": np.dtype(coordinate_dtype),
             "validate_coordinates": bool(validate_coordinates)}
  yield from _Stream(path, fmt, context, strict, report, chunk_bytes)
  if own and report.skipped:
    logger.warning("%s", report.summary())


def iter_boxes(path, label_map: labels.LabelMap | None = None, strict: bool = False,
               report: ReadReport | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               coordinate_dtype=np.float32,
               validate_coordinates: bool = True) -> Iterator[BoxTable]:
  """Box tables of about `chunk_bytes` of file each, in file order (at least one, maybe empty).

  Args:
    path: a box CSV of any release (V3, V4/V5, V6/V7 with XClick, Challenge 2019).
    label_map: gives `mids` and the label indices; rows with other MIDs are skipped (or raise).
      Without one, `mids` grows in first-seen order: chunk tables share a prefix-stable vocabulary.
    strict: raise AnnotationError at the first bad row instead of skipping it.
    report: a ReadReport to add counts to (otherwise skips are logged as a warning).
    chunk_bytes: pyarrow block size; bounds memory.
    coordinate_dtype: of xmin, xmax, ymin, ymax. float32 halves the memory; float64 gives the
      values the official evaluation reads (IoU ties at exactly 0.5 decide matches there).
    validate_coordinates: when False, XMin/XMax/YMin/YMax are kept exactly as parsed: no clipping
      into [0, 1], no skip of values outside it or of inverted boxes (XClick points are still
      checked). A value that is not a number, or is empty, is still a bad row. This gives the
      values the official evaluation's pandas reads.
  """
  for chunk in _chunks(path, _BOXES, label_map, strict, report, chunk_bytes, coordinate_dtype,
                       validate_coordinates):
    yield chunk.table


def read_boxes(path, label_map: labels.LabelMap | None = None, strict: bool = False,
               report: ReadReport | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               coordinate_dtype=np.float32, validate_coordinates: bool = True) -> BoxTable:
  """A whole box file as one BoxTable; see `iter_boxes`."""
  return BoxTable.concat(list(iter_boxes(path, label_map, strict, report, chunk_bytes,
                                         coordinate_dtype, validate_coordinates)))


def iter_image_labels(path, label_map: labels.LabelMap | None = None, strict: bool = False,
                      report: ReadReport | None = None,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[LabelTable]:
  """Image-level label tables (human: confidence 0/1; machine: a fraction), chunk by chunk.

  Arguments as `iter_boxes`. Confidence must be a number in [0, 1]; Source is optional.
  """
  for chunk in _chunks(path, _LABELS, label_map, strict, report, chunk_bytes):
    yield chunk.table


def read_image_labels(path, label_map: labels.LabelMap | None = None, strict: bool = False,
                      report: ReadReport | None = None,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> LabelTable:
  """A whole image-level label file as one LabelTable; see `iter_image_labels`."""
  return LabelTable.concat(list(iter_image_labels(path, label_map, strict, report, chunk_bytes)))


def read_image_metadata(path, strict: bool = False, report: ReadReport | None = None,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> MetadataTable:
  """An image metadata file (with or without Rotation) as one MetadataTable.

  OriginalMD5 is decoded from base64 to the 16 raw digest bytes; Rotation must be 0, 90, 180 or 270
  (or empty: NaN).
  """
  chunks = _chunks(path, _METADATA, None, strict, report, chunk_bytes)
  return MetadataTable.concat([chunk.table for chunk in chunks])


# ------------------------------------------------------------------------------------------------
# Grouping by image.


@dataclasses.dataclass(eq=False)
class ImageGroups:
  """A table sorted by image, with the row range of each image.

  Attributes:
    image_ids: uint64 [n], unique, ascending.
    offsets: int64 [n + 1]; image i owns rows offsets[i]:offsets[i + 1] of `table`.
    table: the rows, sorted stably by image_id.
  """

  image_ids: np.ndarray
  offsets: np.ndarray
  table: _Table

  def __len__(self) -> int:
    return len(self.image_ids)

  def rows_of(self, image_key) -> slice:
    """Row range of an image's rows in `table`; KeyError if the image has none."""
    i = int(np.searchsorted(self.image_ids, np.uint64(image_key)))
    if i == len(self.image_ids) or self.image_ids[i] != np.uint64(image_key):
      raise KeyError(f"no rows for image {int(image_key):016x}")
    return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

  def __iter__(self) -> Iterator[tuple[np.uint64, _Table]]:
    table = self.table
    bounds = self.offsets.tolist()
    for key, start, stop in zip(self.image_ids, bounds[:-1], bounds[1:]):
      yield key, table._rows(start, stop)


def _boundaries(keys: np.ndarray) -> np.ndarray:
  """Offsets [0, ..., len] of runs of equal keys."""
  changes = np.flatnonzero(keys[1:] != keys[:-1]) + 1
  return np.concatenate([[0], changes, [len(keys)]]).astype(np.int64)


def group_by_image(table: _Table) -> ImageGroups:
  """Groups any table with an `image_id` column; sorts stably (no copy when already sorted)."""
  keys = table.image_id
  if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
    table = table.take(np.argsort(keys, kind="stable"))
    keys = table.image_id
  offsets = _boundaries(keys) if len(keys) else np.zeros(1, np.int64)
  return ImageGroups(keys[offsets[:-1]], offsets, table)


_KINDS = {"boxes": _BOXES, "image_labels": _LABELS, "image_metadata": _METADATA}


def iter_image_groups(path, kind: str = "boxes", label_map: labels.LabelMap | None = None,
                      strict: bool = False, report: ReadReport | None = None,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[np.uint64, _Table]]:
  """Streams (image key, that image's rows) from a file sorted by ImageID, as released.

  Memory stays bounded by a chunk plus one image's rows; an image whose rows span chunks comes out
  whole. A file not sorted by ImageID raises AnnotationError at the first row out of order (read it
  whole and use `group_by_image` instead).

  Args:
    path: the CSV.
    kind: "boxes", "image_labels" or "image_metadata".
    label_map, strict, report, chunk_bytes: as `iter_boxes` (label_map is ignored for metadata).
  """
  if kind not in _KINDS:
    raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
  carry = None  # The last image's rows so far; the next chunk may continue them.
  previous = None  # Last key of the previous chunk.
  for chunk in _chunks(path, _KINDS[kind], label_map, strict, report, chunk_bytes):
    table = chunk.table
    keys = table.image_id
    if not len(keys):
      continue
    _check_sorted(path, chunk, previous)
    previous = keys[-1]
    bounds = _boundaries(keys).tolist()
    first_group = 0
    if carry is not None:
      if keys[0] == carry.image_id[0]:
        carry = type(table).concat([carry, table._rows(0, bounds[1])])
        first_group = 1
        if len(bounds) == 2:
          continue  # The whole chunk continues the carried image.
      yield carry.image_id[0], carry
    for start, stop in zip(bounds[first_group:-2], bounds[first_group + 1:-1]):
      yield keys[start], table._rows(start, stop)
    carry = table._rows(bounds[-2], bounds[-1])
  if carry is not None:
    yield carry.image_id[0], carry


def _check_sorted(path, chunk: _Chunk, previous) -> None:
  keys = chunk.table.image_id
  down = np.flatnonzero(keys[1:] < keys[:-1]) + 1
  if previous is not None and keys[0] < previous:
    down = np.concatenate([[0], down])
  if len(down):
    row = int(down[0])
    before = previous if row == 0 else keys[row - 1]
    raise AnnotationError(path, chunk.line(row), "ImageID",
                          f"{key_to_image_id([keys[row]])[0]} follows "
                          f"{key_to_image_id([before])[0]}: the file is not sorted by ImageID "
                          "(read it whole and use group_by_image)")
