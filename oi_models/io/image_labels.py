"""Image-level label files: human-verified (Confidence 1 positive, 0 verified negative) and machine
labels (Confidence a fraction), of every release; Source is optional.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterator

import numpy as np

from oi_models.io import csv_engine
from oi_models.io import tables
from oi_models.io.report import ReadReport


@dataclasses.dataclass(eq=False)
class LabelTable(tables.Table):
  """Image-level labels: confidence 1 positive, 0 verified negative, a fraction (machine labels)."""

  image_id: np.ndarray  # uint64
  label: np.ndarray  # int32 into mids
  mids: tuple
  confidence: np.ndarray  # float32
  source: np.ndarray  # int8 into sources, -1 when absent
  sources: tuple

  _VOCABS: ClassVar = (("label", "mids"), ("source", "sources"))


def _build(batch: dict, checks: csv_engine.Checks, context: dict) -> LabelTable:
  keys = csv_engine.check_image_ids(batch, checks)
  codes = csv_engine.check_mids(batch, context["mids"], checks)
  confidence = csv_engine.check_fraction(batch, "Confidence", checks, np.nan)
  return LabelTable(keys, codes, context["mids"].items, confidence,
                    csv_engine.source_codes(batch, context["sources"], checks.n),
                    context["sources"].items)


FORMAT = csv_engine.Format("image labels", ("ImageID", "LabelName", "Confidence"), ("Source",), (),
                           frozenset(("ImageID", "Source", "LabelName", "Confidence")), _build)


def context(label_map=None) -> dict:
  return {"mids": csv_engine.Vocab(label_map), "sources": csv_engine.Vocab()}


def iter_image_labels(path, label_map=None, strict: bool = False, report: ReadReport | None = None,
                      chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES) -> Iterator[LabelTable]:
  """Image-level label tables, chunk by chunk; arguments as `boxes.iter_boxes`.

  Confidence must be a number in [0, 1].
  """
  for chunk in csv_engine.chunks(path, FORMAT, context(label_map), strict, report, chunk_bytes):
    yield chunk.table


def read_image_labels(path, label_map=None, strict: bool = False, report: ReadReport | None = None,
                      chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES) -> LabelTable:
  """A whole image-level label file as one LabelTable; see `iter_image_labels`."""
  return LabelTable.concat(list(iter_image_labels(path, label_map, strict, report, chunk_bytes)))
