"""ImageID rules: an Open Images ImageID is 16 hex digits, held as the uint64 it spells.

Tens of millions of rows name their image, so readers, the builder and the evaluator keep ImageIDs
as np.uint64 keys (8 bytes, sortable, hashable by numpy) and convert text in bulk, never per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX_VALUES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
  _HEX_VALUES[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
  _HEX_VALUES[_c] = 10 + _i
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


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


def column_keys(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 keys, bad mask) of an ImageID string column, decoded from its fixed-width bytes.

  A dictionary column (few distinct images, as in predictions) is decoded through its dictionary.
  Empty (null) values are bad.
  """
  if pa.types.is_dictionary(column.type):
    keys, bad = column_keys(column.dictionary)
    indices = column.indices
    if indices.null_count:
      indices = pc.fill_null(indices, -1)
    indices = indices.to_numpy(zero_copy_only=False)
    return np.append(keys, np.uint64(0))[indices], np.append(bad, True)[indices]
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
