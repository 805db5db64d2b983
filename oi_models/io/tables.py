"""Columnar tables of annotation rows: numpy arrays per field plus the vocabularies codes index.

Readers return one table per file kind (boxes, image-level labels, image metadata); they share row
selection, zero-copy row ranges and concatenation with vocabulary merging from `Table`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Sequence

import numpy as np


class Table:
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

  def take(self, indices) -> "Table":
    """The rows at `indices` (int array or boolean mask), copied."""
    indices = np.asarray(indices)
    return self._with_rows(lambda a: a[indices])

  @classmethod
  def concat(cls, tables: Sequence["Table"]):
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
