"""`oi-image-sizes`: width, height and EXIF orientation of every image, from its header alone.

    oi-image-sizes --images oi/validation --output_csv validation-sizes.csv
    oi-image-sizes --images oi/validation --annotations oi/validation-annotations-bbox.csv \
        --mmdet_meta validation-image-metas.pkl --img_prefix data/OpenImages/OpenImages/validation

Evaluating on Open Images needs each image's size (the boxes are normalized), and mmdetection's
`get_image_metas.py` decodes every image to learn it. Pillow's `Image.open` is lazy: it parses the
header (JPEG markers up to the first scan, PNG chunks up to the first IDAT) and decodes no pixel until
asked, so reading a size costs a few kilobytes of I/O instead of a full decode (`benchmarks/
image_sizes.py` measures it). Files are read in parallel processes.

Each image gets a row: path (relative to the folder given), image_id (the file name, when it is an
ImageID), width and height as stored, orientation (the EXIF Orientation tag, 1 when absent), format,
mode, bytes, status and error. Status `ok`; `truncated` (the size is read, but the file lacks its end
marker: a JPEG's EOI or a PNG's IEND, so its pixels are incomplete); `corrupt` (no size could be read).
Nothing is skipped silently: the summary counts each status, and the exit status is 1 when an
image is not `ok`.

`--mmdet_meta` writes the pickle mmdetection's `OpenImagesDataset` reads as `meta_file`: a list, in the
order images first appear in the box CSV (`--annotations`), of `{"filename": <img_prefix>/<ImageID>.jpg,
"ori_shape": (height, width, 3)}`, the shape OpenCV's decode gives (upright: EXIF orientations 5-8
swap width and height). The dataset asserts one entry per image of the box file, so an image without a
good row is an error, not a gap.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import os
import pathlib
import pickle
import re
import sys
from typing import BinaryIO, Iterable, Sequence

from absl import flags
import numpy as np
from PIL import Image

from oi_models import app

EXTENSIONS = (".jpg", ".jpeg", ".png")
COLUMNS = ("path", "image_id", "width", "height", "orientation", "format", "mode", "bytes", "status",
           "error")
_ORIENTATION_TAG = 0x0112
_SWAPPED = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 or 270 degrees.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
_IMAGE_ID = re.compile(r"^[0-9a-f]{16}$")

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs (importing the module defines none, so
  the tools' modules can be imported together and used as libraries)."""
  flags.DEFINE_list("images", [], "Image folders (searched recursively for .jpg, .jpeg, .png) or "
                    "files.")
  flags.DEFINE_string("output_csv", None, "Where to write one row per image (see the module doc).")
  flags.DEFINE_string("mmdet_meta", None, "Where to write mmdetection's OpenImagesDataset meta_file "
                      "(a .pkl).")
  flags.DEFINE_string("annotations", None, "Box CSV giving the order of --mmdet_meta (default: image "
                      "files sorted by name).")
  flags.DEFINE_string("img_prefix", None, "Folder joined to each file name in --mmdet_meta, as "
                      "mmdetection's data_prefix (default: the single --images folder).")
  flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes reading headers (1: in this one).")


@dataclasses.dataclass(frozen=True)
class ImageSize:
  path: str
  image_id: str
  width: int | None
  height: int | None
  orientation: int | None
  format: str
  mode: str
  bytes: int
  status: str  # ok, truncated, corrupt
  error: str = ""

  @property
  def upright(self) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied (as OpenCV and browsers show it)."""
    turned = self.orientation in _SWAPPED
    return (self.height, self.width) if turned else (self.width, self.height)


def read_header(f: BinaryIO, size: int) -> dict:
  """Size, orientation, format and mode of an open image file, reading its header only."""
  with Image.open(f) as image:
    width, height = image.size
    fmt, mode = image.format or "", image.mode
    orientation = 1
    raw = image.info.get("exif")  # The APP1 / eXIf payload parsed with the header.
    if raw:
      exif = Image.Exif()
      exif.load(raw)
      orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
  status = "ok"
  marker = _END_MARKERS.get(fmt)
  if marker is not None:
    f.seek(max(0, size - 32))
    if marker not in f.read(32):
      status = "truncated"
  return {"width": width, "height": height, "orientation": orientation, "format": fmt,
          "mode": mode, "status": status}


def image_size(path: str, root: str = "") -> ImageSize:
  """The header facts of one file; a file Pillow cannot parse is `corrupt`, with the reason."""
  relative = os.path.relpath(path, root) if root else path
  stem = pathlib.Path(path).stem
  image_id = stem if _IMAGE_ID.match(stem) else ""
  size = 0
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      facts = read_header(f, size)
  except Exception as e:  # Pillow raises many types for bad headers. pylint: disable=broad-except
    return ImageSize(relative, image_id, None, None, None, "", "", size, "corrupt",
                     f"{type(e).__name__}: {e}")
  return ImageSize(relative, image_id, bytes=size, **facts)


def find_images(inputs: Sequence[str]) -> list[tuple[str, str]]:
  """(path, root it is relative to) of every image file under the inputs, sorted within each."""
  found = []
  for entry in inputs:
    path = pathlib.Path(entry)
    if path.is_dir():
      files = sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
      found += [(str(p), str(path)) for p in files]
    elif path.is_file():
      found.append((str(path), str(path.parent)))
    else:
      raise FileNotFoundError(f"no such image folder or file: {entry}")
  return found


def _chunk(batch: list[tuple[str, str]]) -> list[ImageSize]:
  return [image_size(path, root) for path, root in batch]


def scan(files: Sequence[tuple[str, str]], workers: int = 1,
         chunk: int = 256) -> Iterable[ImageSize]:
  """ImageSize of each (path, root), in order; `workers` > 1 reads in that many processes."""
  batches = [list(files[i:i + chunk]) for i in range(0, len(files), chunk)]
  if workers <= 1 or len(batches) <= 1:
    for batch in batches:
      yield from _chunk(batch)
    return
  with concurrent.futures.ProcessPoolExecutor(workers) as pool:
    for rows in pool.map(_chunk, batches):
      yield from rows


def write_csv(path, rows: Iterable[ImageSize]) -> None:
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
      writer.writerow(["" if v is None else v for v in dataclasses.astuple(row)])


def annotation_order(box_csv) -> list[str]:
  """ImageIDs in the order mmdetection lists them: a new entry at each change of ImageID."""
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  order, last = [], None
  for table in readers.iter_boxes(box_csv):
    keys = table.image_id
    if not len(keys):
      continue
    starts = np.flatnonzero(np.concatenate([[last is None or keys[0] != last],
                                            keys[1:] != keys[:-1]]))
    order += readers.key_to_image_id(keys[starts]).tolist()
    last = keys[-1]
  return order


def mmdet_metas(rows: Sequence[ImageSize], order: Sequence[str], img_prefix: str) -> list[dict]:
  """The meta_file entries (see the module docstring); ValueError names images without a good row."""
  by_id = {row.image_id: row for row in rows if row.image_id and row.status == "ok"}
  missing = [image_id for image_id in order if image_id not in by_id]
  if missing:
    raise ValueError(f"{len(missing)} images of the annotations have no readable, complete image "
                     f"file (first: {missing[:5]}); mmdetection needs one entry per image")
  metas = []
  for image_id in order:
    width, height = by_id[image_id].upright
    metas.append({"filename": os.path.join(img_prefix, f"{image_id}.jpg"),
                  "ori_shape": (height, width, 3)})
  return metas


def summarize(rows: Sequence[ImageSize]) -> str:
  counts = collections.Counter(row.status for row in rows)
  lines = [f"{len(rows)} images: " + ", ".join(f"{counts[s]} {s}" for s in ("ok", "truncated",
                                                                           "corrupt"))]
  for row in rows:
    if row.status == "corrupt" and len(lines) < 6:
      lines.append(f"  corrupt: {row.path}: {row.error}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.images:
    raise app.UsageError("--images is required")
  if not (FLAGS.output_csv or FLAGS.mmdet_meta):
    raise app.UsageError("give --output_csv, --mmdet_meta or both")
  try:
    files = find_images(FLAGS.images)
  except FileNotFoundError as e:
    sys.exit(f"oi-image-sizes: {e}")
  rows = list(scan(files, FLAGS.workers))
  if FLAGS.output_csv:
    write_csv(FLAGS.output_csv, rows)
  print(summarize(rows))
  if FLAGS.mmdet_meta:
    prefix = FLAGS.img_prefix
    if prefix is None:
      if len(FLAGS.images) != 1:
        raise app.UsageError("--img_prefix is needed with several --images")
      prefix = FLAGS.images[0]
    order = (annotation_order(FLAGS.annotations) if FLAGS.annotations
             else sorted(row.image_id for row in rows if row.image_id))
    try:
      metas = mmdet_metas(rows, order, prefix)
    except ValueError as e:
      sys.exit(f"oi-image-sizes: {e}")
    with open(FLAGS.mmdet_meta, "wb") as f:
      pickle.dump(metas, f, protocol=4)
    print(f"{len(metas)} image metas for mmdetection: {FLAGS.mmdet_meta}")
  if any(row.status != "ok" for row in rows):
    sys.exit(1)


def run():
  """Console script `oi-image-sizes`."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
