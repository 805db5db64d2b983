"""Image sizes from headers (`oi-image-sizes`) against decoding every image, as mmdetection does.

mmdetection's `tools/misc/get_image_metas.py` learns each Open Images image's size by decoding it
(`mmcv.imfrombytes`, OpenCV). This benchmark times, on the real photos in ../shared/openimages/images
(1024-px train images and others; synthetic 1024-px JPEGs when absent), each file read from the
page cache:

  header         `image_sizes.image_size` (Pillow's lazy open + EXIF + end-marker check), 1 process
  header xN      `image_sizes.scan` with N worker processes (--workers, default every core)
  pil decode     Pillow open + load (full decode)
  opencv decode  cv2.imdecode(IMREAD_COLOR), what mmdetection's script runs per image

Figures are images/s, medians over --repeats passes of --passes_per_repeat walks over the files,
and the speed-up over the OpenCV decode measured in the same run.

    python benchmarks/image_sizes.py
"""

from __future__ import annotations

import io
import os
import pathlib
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from oi_models.tools import image_sizes  # pylint: disable=g-import-not-at-top,wrong-import-position

_FOLDER = flags.DEFINE_string("folder", str(pathlib.Path(__file__).resolve().parents[2] / "shared" /
                                            "openimages" / "images"),
                              "Folder of images (recursive).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
_PASSES = flags.DEFINE_integer("passes_per_repeat", 3, "Walks over the files per repeat.")
_WORKERS = flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes for `header xN`.")


def _synthetic(folder: pathlib.Path, n: int = 40) -> None:
  rng = np.random.default_rng(0)
  for i in range(n):
    pixels = rng.integers(0, 256, (768, 1024, 3), np.uint8)
    Image.fromarray(pixels).save(folder / f"{i:016x}.jpg", quality=90)


def _time(fn, files, passes: int) -> float:
  start = time.perf_counter()
  for _ in range(passes):
    for path, root in files:
      fn(path, root)
  return passes * len(files) / (time.perf_counter() - start)


def _pil(path, root):
  del root
  with Image.open(path) as image:
    image.load()


def _opencv(path, root):
  del root
  data = np.fromfile(path, np.uint8)
  assert cv2.imdecode(data, cv2.IMREAD_COLOR) is not None


def main(argv):
  del argv
  folder = pathlib.Path(_FOLDER.value)
  tmp = None
  if not folder.is_dir():
    tmp = tempfile.TemporaryDirectory()
    folder = pathlib.Path(tmp.name)
    _synthetic(folder)
  files = image_sizes.find_images([str(folder)])
  total_mb = sum(os.path.getsize(p) for p, _ in files) / 1e6
  for path, root in files:  # Warm the page cache: every method reads cached files.
    pathlib.Path(path).read_bytes()
  many = files * 20  # Enough work for the processes to pay for their start.
  rates: dict[str, list[float]] = {}
  for _ in range(_REPEATS.value):
    rates.setdefault("header", []).append(_time(image_sizes.image_size, files, _PASSES.value))
    start = time.perf_counter()
    rows = list(image_sizes.scan(many, _WORKERS.value, chunk=64))
    rates.setdefault(f"header x{_WORKERS.value}", []).append(
        len(rows) / (time.perf_counter() - start))
    rates.setdefault("pil decode", []).append(_time(_pil, files, 1))
    rates.setdefault("opencv decode", []).append(_time(_opencv, files, 1))
  base = statistics.median(rates["opencv decode"])
  print(f"{len(files)} images ({total_mb:.1f} MB) in {folder}; medians of {_REPEATS.value} runs")
  print(f"{'method':<16}{'images/s':>12}{'x opencv':>10}")
  for name, values in rates.items():
    rate = statistics.median(values)
    print(f"{name:<16}{rate:>12,.0f}{rate / base:>10.1f}")
  if tmp is not None:
    tmp.cleanup()


if __name__ == "__main__":
  app.run(main)
