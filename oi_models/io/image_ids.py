"""ImageID rules: an Open Images ImageID is 16 hex digits, held as the uint64 it spells.

Tens of millions of rows name their image, so readers, the builder and the evaluator keep ImageIDs
as np.uint64 keys (8 bytes, sortable, hashable by numpy) and convert text in bulk, never per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oi_models.io import arrow_arrays

_HEX_VALUES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
  _HEX_VALUES[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
  _HEX_VALUES[_c] = 10 + _i
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
# Two ASCII characters (as a little-endian uint16) -> the byte their hex digits spell; 0x100 when
# either is not a hex digit. One gather per two characters decodes a column of ImageIDs.
_HEX_PAIRS = np.full(1 << 16, 0x100, np.uint16)
_DIGITS = np.flatnonzero(_HEX_VALUES != 255)
_HEX_PAIRS[_DIGITS[:, None] | (_DIGITS[None, :] << 8)] = (
    (_HEX_VALUES[_DIGITS][:, None].astype(np.uint16) << 4) | _HEX_VALUES[_DIGITS][None, :])


def _keys_from_fixed(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[n, 16] uint8 ASCII -> (uint64 keys, bad mask) for rows that are not 16 hex digits."""
  pairs = _HEX_PAIRS[np.ascontiguousarray(chars).view("<u2")]  # [n, 8] bytes, 0x100 if not hex
  wide = pairs.view("<u8")  # [n, 2]: a bad pair sets a bit of a high byte
  bad = ((wide[:, 0] | wide[:, 1]) & np.uint64(0xFF00FF00FF00FF00)) != 0
  keys = pairs.astype(np.uint8).view(">u8").ravel().astype(np.uint64)
  return keys, bad


def _keys_of_runs(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`_keys_from_fixed` of a contiguous [n, 16] block, each run of equal IDs decoded once.

  Annotation files are sorted by image, about eight rows each: comparing each ID with the one
  before (two 8-byte words) costs less than decoding it.
  """
  n = len(chars)
  words = chars.view("<u8")  # [n, 2]
  starts = np.ones(n, bool)
  starts[1:] = (words[1:, 0] != words[:-1, 0]) | (words[1:, 1] != words[:-1, 1])
  firsts = np.flatnonzero(starts)
  if 2 * len(firsts) > n:
    return _keys_from_fixed(chars)
  keys, bad = _keys_from_fixed(chars[firsts])
  runs = np.diff(np.append(firsts, n))
  return np.repeat(keys, runs), np.repeat(bad, runs)


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


def column_keys(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 keys, bad mask) of an ImageID string column, decoded from its bytes in place.

  A dictionary column (few distinct images, as in predictions) is decoded through its dictionary.
  Empty (null) values are bad.
  """
  if pa.types.is_dictionary(column.type):
    keys, bad = column_keys(column.dictionary)
    indices = arrow_arrays.values(column.indices, -1)
    return np.append(keys, np.uint64(0))[indices], np.append(bad, True)[indices]
  offsets, data = arrow_arrays.string_offsets(column)
  starts = offsets[:-1]
  ok = (offsets[1:] - starts == 16) & arrow_arrays.valid(column)
  if ok.all():  # The usual case: the column's bytes are n IDs of 16 characters back to back.
    return _keys_of_runs(data[offsets[0]:offsets[-1]].reshape(len(column), 16))
  else:
    chars = np.full((len(column), 16), ord("-"), np.uint8)
    rows = np.flatnonzero(ok)
    chars[rows] = data[starts[rows, None] + np.arange(16)]
  keys, bad = _keys_from_fixed(chars)
  return keys, bad | ~ok
