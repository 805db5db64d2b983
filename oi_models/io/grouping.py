"""Annotation rows grouped by image: in memory (`group_by_image`) or streamed (`iter_image_groups`).

A TFDS build and an evaluation walk a file image by image. Released files are sorted by ImageID, so
a stream needs only a chunk plus one image's rows in memory; `group_by_image` sorts a table stably
and gives offsets instead, with no per-row objects.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from oi_models.io import boxes
from oi_models.io import csv_engine
from oi_models.io import image_ids
from oi_models.io import image_labels
from oi_models.io import image_metadata
from oi_models.io import tables
from oi_models.io.errors import AnnotationError
from oi_models.io.report import ReadReport


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
  table: tables.Table

  def __len__(self) -> int:
    return len(self.image_ids)

  def rows_of(self, image_key) -> slice:
    """Row range of an image's rows in `table`; KeyError if the image has none."""
    i = int(np.searchsorted(self.image_ids, np.uint64(image_key)))
    if i == len(self.image_ids) or self.image_ids[i] != np.uint64(image_key):
      raise KeyError(f"no rows for image {int(image_key):016x}")
    return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

  def __iter__(self) -> Iterator[tuple[np.uint64, tables.Table]]:
    table = self.table
    bounds = self.offsets.tolist()
    for key, start, stop in zip(self.image_ids, bounds[:-1], bounds[1:]):
      yield key, table._rows(start, stop)


def _boundaries(keys: np.ndarray) -> np.ndarray:
  """Offsets [0, ..., len] of runs of equal keys."""
  changes = np.flatnonzero(keys[1:] != keys[:-1]) + 1
  return np.concatenate([[0], changes, [len(keys)]]).astype(np.int64)


def group_by_image(table: tables.Table) -> ImageGroups:
  """Groups any table with an `image_id` column; sorts stably (no copy when already sorted)."""
  keys = table.image_id
  if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
    table = table.take(np.argsort(keys, kind="stable"))
    keys = table.image_id
  offsets = _boundaries(keys) if len(keys) else np.zeros(1, np.int64)
  return ImageGroups(keys[offsets[:-1]], offsets, table)


def _kinds(label_map) -> dict:
  """kind -> (format, context) of the files `iter_image_groups` streams."""
  return {"boxes": (boxes.FORMAT, boxes.context(label_map)),
          "image_labels": (image_labels.FORMAT, image_labels.context(label_map)),
          "image_metadata": (image_metadata.FORMAT,
                             {"columns": frozenset(image_metadata.METADATA_COLUMNS)})}


def iter_image_groups(path, kind: str = "boxes", label_map=None, strict: bool = False,
                      report: ReadReport | None = None,
                      chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES
                      ) -> Iterator[tuple[np.uint64, tables.Table]]:
  """Streams (image key, that image's rows) from a file sorted by ImageID, as released.

  Memory stays bounded by a chunk plus one image's rows; an image whose rows span chunks comes out
  whole. A file not sorted by ImageID raises AnnotationError at the first row out of order (read it
  whole and use `group_by_image` instead).

  Args:
    path: the CSV.
    kind: "boxes", "image_labels" or "image_metadata".
    label_map, strict, report, chunk_bytes: as `boxes.iter_boxes` (label_map is ignored for metadata).
  """
  kinds = _kinds(label_map)
  if kind not in kinds:
    raise ValueError(f"kind must be one of {sorted(kinds)}, not {kind!r}")
  carry = None  # The last image's rows so far; the next chunk may continue them.
  previous = None  # Last key of the previous chunk.
  for chunk in csv_engine.chunks(path, *kinds[kind], strict, report, chunk_bytes):
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
    # One lazy row range per image, made inline: this loop runs once per image of the file.
    view, new = table._view_class(), object.__new__
    starts, stops = bounds[first_group:-2], bounds[first_group + 1:-1]
    for key, start, stop in zip(keys[starts], starts, stops):
      rows = new(view)
      rows._lazy = (table, start, stop)  # Attributes, not __dict__ items: see tables._rows.
      rows._len = stop - start
      yield key, rows
    carry = table._rows(bounds[-2], bounds[-1])
  if carry is not None:
    yield carry.image_id[0], carry


def _check_sorted(path, chunk: csv_engine.Chunk, previous) -> None:
  keys = chunk.table.image_id
  down = np.flatnonzero(keys[1:] < keys[:-1]) + 1
  if previous is not None and keys[0] < previous:
    down = np.concatenate([[0], down])
  if len(down):
    row = int(down[0])
    before = previous if row == 0 else keys[row - 1]
    raise AnnotationError(path, chunk.line(row), "ImageID",
                          f"{image_ids.key_to_image_id([keys[row]])[0]} follows "
                          f"{image_ids.key_to_image_id([before])[0]}: the file is not sorted by "
                          "ImageID (read it whole and use group_by_image)")
