"""Detection and classification predictions: read (by `oi_models.io.predictions`) and written.

Reading lives in io/ with the other annotation readers (the shared CSV engine; see
`oi_models.io.predictions` for the three layouts and how bad rows are reported); its names are
re-exported here for evaluation code. Writing gives the official detection CSV, a Kaggle submission
or a classification CSV, with the shortest number text that reads back to the same float64.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oi_models import labels as labels_lib
from oi_models.io.image_ids import key_to_image_id
# pylint: disable=unused-import
from oi_models.io.predictions import CLASSIFICATION
from oi_models.io.predictions import CLASSIFICATION_COLUMNS
from oi_models.io.predictions import CSV
from oi_models.io.predictions import CSV_COLUMNS
from oi_models.io.predictions import DEFAULT_CHUNK_BYTES
from oi_models.io.predictions import detect_format
from oi_models.io.predictions import empty
from oi_models.io.predictions import FORMATS
from oi_models.io.predictions import iter_predictions
from oi_models.io.predictions import KAGGLE
from oi_models.io.predictions import KAGGLE_COLUMNS
from oi_models.io.predictions import KAGGLE_FIELDS
from oi_models.io.predictions import Predictions
from oi_models.io.predictions import read_predictions
# pylint: enable=unused-import

_STRING = pa.string()


# ------------------------------------------------------------------------------------------------
# Writing.

_WRITE_ROWS = 1 << 20


def _as_image_ids(image_ids) -> pa.Array:
  image_ids = np.asarray(image_ids)
  if np.issubdtype(image_ids.dtype, np.integer):
    image_ids = key_to_image_id(image_ids.astype(np.uint64))
  return pa.array(image_ids.astype(str), _STRING)  # numpy unicode arrays convert without Python str


def _number_text(values: np.ndarray) -> pa.Array:
  # pyarrow prints the shortest text that reads back to the same float64.
  return pc.cast(pa.array(np.asarray(values, np.float64)), _STRING)


def _join_lines(lines) -> str:
  if not len(lines):
    return ""
  if isinstance(lines, pa.ChunkedArray):
    lines = lines.combine_chunks()
  joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines),
                          "\n")
  return joined[0].as_py() + "\n"


def write_predictions(path, image_ids, labels, scores, boxes, label_map: labels_lib.LabelMap,
                      fmt: str = CSV, all_image_ids=None) -> None:
  """Writes predictions in the official detection CSV, a Kaggle submission or a classification CSV.

  Args:
    path: output file.
    image_ids: [N] uint64 keys or ImageID strings.
    labels: int [N] class indices into `label_map`.
    scores: float [N].
    boxes: float [N, 4] (ymin, xmin, ymax, xmax); None for the classification CSV.
    label_map: the class list that `labels` index.
    fmt: "csv", "kaggle" or "classification".
    all_image_ids: Kaggle only: every image the submission must list (keys or strings); images
      without detections get an empty PredictionString, as Kaggle expects a row per test image.
  """
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
  labels = np.asarray(labels, np.int64)
  mids = pc.take(pa.array(label_map.mids, _STRING), pa.array(labels))
  ids = _as_image_ids(image_ids)
  if fmt != CLASSIFICATION:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  with open(path, "w", encoding="utf-8", newline="") as f:
    if fmt == KAGGLE:
      f.write(",".join(KAGGLE_COLUMNS) + "\n")
      f.write(_kaggle_lines(ids, mids, scores, boxes, all_image_ids))
      return
    names = CSV_COLUMNS if fmt == CSV else CLASSIFICATION_COLUMNS
    f.write(",".join(names) + "\n")
    for start in range(0, len(labels), _WRITE_ROWS):
      rows = slice(start, start + _WRITE_ROWS)
      fields = [ids[rows], mids[rows], _number_text(scores[rows])]
      if fmt == CSV:
        b = boxes[rows]
        fields += [_number_text(b[:, 1]), _number_text(b[:, 3]), _number_text(b[:, 0]),
                   _number_text(b[:, 2])]
      f.write(_join_lines(pc.binary_join_element_wise(*fields, ",")))


def _kaggle_lines(ids: pa.Array, mids, scores, boxes, all_image_ids) -> str:
  """One `ImageId,PredictionString` line per image, detections in input order within an image."""
  id_text = np.asarray(ids.to_pylist(), object)
  images = (np.asarray(_as_image_ids(all_image_ids).to_pylist(), object)
            if all_image_ids is not None else np.unique(id_text))
  images = np.unique(np.concatenate([images, np.unique(id_text)])) if len(id_text) else images
  order = np.argsort(id_text, kind="stable") if len(id_text) else np.zeros(0, np.int64)
  detections = pc.binary_join_element_wise(
      mids.take(pa.array(order)), _number_text(np.asarray(scores)[order]),
      _number_text(boxes[order, 1]), _number_text(boxes[order, 0]),
      _number_text(boxes[order, 3]), _number_text(boxes[order, 2]), " ")
  # Images are sorted and include every detection's image, so image i owns rows
  # bounds[i]:bounds[i + 1] of the sorted detections.
  bounds = np.searchsorted(id_text[order].astype(str), images.astype(str), side="left")
  per_image = pc.binary_join(
      pa.ListArray.from_arrays(pa.array(np.append(bounds, len(order)).astype(np.int32)),
                               detections), " ")
  return _join_lines(pc.binary_join_element_wise(pa.array(images.tolist(), _STRING), per_image, ","))
