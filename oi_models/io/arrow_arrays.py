"""pyarrow arrays as numpy arrays, read from their buffers.

pyarrow's own `to_numpy` (and its conversion of any Python scalar) imports pandas the first time it
runs when pandas is installed: one to two seconds that a reader which never uses pandas should not
pay. The readers convert the primitive columns they parse here instead: no copy when there is no
null to fill, a read-only view of pyarrow's memory.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_DTYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
           pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32,
           pa.uint64(): np.uint64, pa.float32(): np.float32, pa.float64(): np.float64}


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
  """bool [n] of a bitmap (validity, or boolean values) from bit `offset` on."""
  packed = np.frombuffer(buffer, np.uint8)
  return np.unpackbits(packed, count=offset + n, bitorder="little")[offset:].view(bool)


def valid(array: pa.Array) -> np.ndarray:
  """bool [n]: True where the array holds a value (not null)."""
  if not array.null_count:
    return np.ones(len(array), bool)
  return _bits(array.buffers()[0], array.offset, len(array))


def null_mask(array: pa.Array) -> np.ndarray:
  """bool [n]: True where the array is null."""
  if not array.null_count:
    return np.zeros(len(array), bool)
  return ~_bits(array.buffers()[0], array.offset, len(array))


def values(array: pa.Array, fill=None) -> np.ndarray:
  """The values of a numeric or boolean array, `fill` where null (needed when it has nulls)."""
  n, offset = len(array), array.offset
  if pa.types.is_boolean(array.type):
    out = _bits(array.buffers()[1], offset, n) if n else np.zeros(0, bool)
  else:
    dtype = np.dtype(_DTYPES[array.type])
    out = (np.frombuffer(array.buffers()[1], dtype, n, offset * dtype.itemsize) if n
           else np.zeros(0, dtype))
  if array.null_count:
    if fill is None:
      raise ValueError(f"{array.null_count} nulls and no fill value")
    out = out.copy()
    out[null_mask(array)] = fill
  return out


def string_offsets(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(offsets [n + 1] into data, data bytes) of a string or binary array; see `valid` for nulls."""
  n = len(array)
  large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
  dtype = np.dtype(np.int64 if large else np.int32)
  buffers = array.buffers()
  offsets = (np.frombuffer(buffers[1], dtype, n + 1, array.offset * dtype.itemsize)
             if buffers[1] is not None and n else np.zeros(n + 1, dtype))
  data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
  return offsets, data
