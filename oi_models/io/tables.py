"""Columnar tables of annotation rows: numpy arrays per field plus the vocabularies codes index.

Readers return one table per file kind (boxes, image-level labels, image metadata); they share row
selection, zero-copy row ranges and concatenation with vocabulary merging from `Table`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Sequence

import numpy as np


class _LazyField:
  """A field of a lazy row range: sliced from the table it views on first access, then cached.

  A non-data descriptor, so once cached the instance's own value is found without a call.
  """

  __slots__ = ("name",)

  def __init__(self, name: str):
    self.name = name

  def __get__(self, view, owner=None):
    if view is None:
      return self
    parent, start, stop = view._lazy
    name = self.name
    value = getattr(parent, name)
    if value.__class__ is np.ndarray:
      value = value[start:stop]
    # setattr, not __dict__: an instance's attributes live inline until its __dict__ is asked for.
    setattr(view, name, value)
    return value


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

  _len = None  # Rows of a lazy row range (see _rows); None for a table that holds its arrays.

  def __len__(self) -> int:
    n = self._len
    return len(self.image_id) if n is None else n

  def _with_rows(self, pick: Callable[[np.ndarray], np.ndarray]):
    new = object.__new__(self._table_class())
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
    new = object.__new__(self._view_class())
    new._lazy = (self, start, stop)
    new._len = stop - start
    return new

  @classmethod
  def _view_class(cls) -> type:
    """The subclass whose instances are lazy row ranges: every field a `_LazyField`."""
    base = cls._table_class()
    view = base.__dict__.get("_VIEW")
    if view is None:
      view = type(f"{base.__name__}Rows", (base,), {f.name: _LazyField(f.name)
                                                    for f in dataclasses.fields(base)})
      view.__module__ = base.__module__
      view._TABLE = base
      base._VIEW = view
    return view

  @classmethod
  def _table_class(cls) -> type:
    """The table class itself, also when called on its view class."""
    return cls.__dict__.get("_TABLE", cls)

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
    return cls._table_class()(**state)


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
