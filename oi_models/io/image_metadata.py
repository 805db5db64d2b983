"""Image metadata files (`*-images-with-rotation.csv`, `*-images-with-labels-with-rotation.csv` and
the older ones without Rotation): one row per image, with URLs, licence, author, title (quoted, and
may hold commas, quotes and newlines), size, MD5 and Rotation.

A builder needs only ImageID and Rotation of millions of rows: `columns` reads just those, and the
free-text columns and MD5s are then neither decoded nor required in the header.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oi_models.io import csv_engine
from oi_models.io import tables
from oi_models.io.report import ReadReport

METADATA_COLUMNS = ("ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License",
                    "AuthorProfileURL", "Author", "Title", "OriginalSize", "OriginalMD5",
                    "Thumbnail300KURL", "Rotation")
_TEXT = ("Subset", "OriginalURL", "OriginalLandingURL", "License", "AuthorProfileURL", "Author",
         "Title", "Thumbnail300KURL")
ROTATIONS = (0, 90, 180, 270)
_B64_VALUES = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):
  _B64_VALUES[_c] = _i


@dataclasses.dataclass(eq=False)
class MetadataTable(tables.Table):
  """Image metadata, one row per image. Text columns are object arrays of str ('' when empty).

  A column not read (see `read_image_metadata`'s `columns`) is None.
  """

  image_id: np.ndarray  # uint64
  subset: np.ndarray | None
  original_url: np.ndarray | None
  original_landing_url: np.ndarray | None
  license: np.ndarray | None
  author_profile_url: np.ndarray | None
  author: np.ndarray | None
  title: np.ndarray | None
  original_size: np.ndarray | None  # int64, -1 when empty
  original_md5: np.ndarray | None  # object array of 16-byte bytes (b"" when empty)
  thumbnail_300k_url: np.ndarray | None
  rotation: np.ndarray | None  # float32 degrees, NaN when empty or the column is absent


def _md5s(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(object array of 16-byte digests, b"" when empty; bad mask) from base64 text, vectorized."""
  n = len(column)
  empty = csv_engine.null_mask(column)
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

def _build(batch: dict, checks: csv_engine.Checks, context: dict) -> MetadataTable:
  wanted = context["columns"]
  fields = {"image_id": csv_engine.check_image_ids(batch, checks)}
  if "OriginalSize" in wanted:
    size, bad_size = csv_engine.integers(batch["OriginalSize"])
    checks.add("bad OriginalSize", "OriginalSize", bad_size | (size < -1),
               csv_engine.describe(batch["OriginalSize"], "is not a non-negative integer"))
    fields["original_size"] = size
  if "OriginalMD5" in wanted:
    md5, bad_md5 = _md5s(batch["OriginalMD5"])
    checks.add("bad OriginalMD5", "OriginalMD5", bad_md5,
               csv_engine.describe(batch["OriginalMD5"], "is not the base64 of a 16-byte MD5"))
    fields["original_md5"] = md5
  if "Rotation" in wanted:
    rotation = np.full(checks.n, np.nan, np.float32)
    if "Rotation" in batch:
      rotation, _, bad = csv_engine.floats(batch["Rotation"])
      bad |= ~np.isnan(rotation) & ~np.isin(rotation, ROTATIONS)
      checks.add("bad Rotation", "Rotation", bad,
                 csv_engine.describe(batch["Rotation"], "is not 0, 90, 180 or 270"))
    fields["rotation"] = rotation
  for name in _TEXT:
    if name in wanted:
      fields[_FIELDS[name]] = csv_engine.text(batch, name)
  return MetadataTable(**{f.name: fields.get(f.name) for f in dataclasses.fields(MetadataTable)})


_FIELDS = {"Subset": "subset", "OriginalURL": "original_url",
           "OriginalLandingURL": "original_landing_url", "License": "license",
           "AuthorProfileURL": "author_profile_url", "Author": "author", "Title": "title",
           "Thumbnail300KURL": "thumbnail_300k_url"}
FORMAT = csv_engine.Format("image metadata", METADATA_COLUMNS[:-1], ("Rotation",), (),
                           frozenset(("Subset", "License", "Rotation")), _build, multiline=True)


def iter_image_metadata(path, strict: bool = False, report: ReadReport | None = None,
                        chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES,
                        columns: Sequence[str] | None = None):
  """MetadataTables chunk by chunk; see `read_image_metadata`."""
  wanted = ("ImageID",) + tuple(METADATA_COLUMNS[1:] if columns is None else columns)
  unknown = sorted(set(wanted) - set(METADATA_COLUMNS))
  if unknown:
    raise ValueError(f"unknown metadata columns {unknown}; choose from {METADATA_COLUMNS}")
  for chunk in csv_engine.chunks(path, FORMAT, {"columns": frozenset(wanted)}, strict, report,
                                 chunk_bytes, wanted):
    yield chunk.table


def read_image_metadata(path, strict: bool = False, report: ReadReport | None = None,
                        chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES,
                        columns: Sequence[str] | None = None) -> MetadataTable:
  """An image metadata file (with or without Rotation) as one MetadataTable.

  OriginalMD5 is decoded from base64 to the 16 raw digest bytes; Rotation must be 0, 90, 180 or 270
  (or empty: NaN).

  Args:
    path: the CSV.
    strict, report, chunk_bytes: as `boxes.iter_boxes`.
    columns: file columns to read besides ImageID (e.g. ("Rotation",)); None reads all. Columns not
      read are None in the table and need not be in the file.
  """
  return MetadataTable.concat(list(iter_image_metadata(path, strict, report, chunk_bytes, columns)))
