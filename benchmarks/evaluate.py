"""Benchmark: `oi-evaluate` end to end on a validation-size workload, and the brute-force reference.

The workload is synthetic but in the official formats, with the real Challenge 2019 class list (500
classes) and hierarchy: by default 41,620 images (the Challenge 2019 validation set's size), about 5
boxes per image (some group-of) in the Challenge box format, about 10 human-verified image-level labels
per image (the box classes as positives, other classes as verified negatives), and up to 100
detections per image in the official predictions CSV (jittered copies of ground-truth boxes, some with
a wrong class, and random boxes).

It times `oi-evaluate` in a subprocess (CSV reading, hierarchy expansion, matching, AP, writing the
report) on the whole workload and on a subset of images, and the brute-force reference of the tests
(tests/evaluation/brute_force.py: the rules written plainly, one detection at a time) on the same
subset, from the same files. Times are medians of --repeats runs; the ratio column is seconds per
image relative to the brute force. The mAPs of the fast path and the reference on the subset must
agree exactly.

  python benchmarks/evaluate.py                     # full size (about 4M detections)
  python benchmarks/evaluate.py --num_images=2000 --repeats=1 --brute_force_images=200
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oi_models import labels
from oi_models.io import readers
from oi_models.evaluation import ground_truth
from oi_models.evaluation import predictions

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("OI_SHARED", REPO.parent / "shared" / "openimages"))

_NUM_IMAGES = flags.DEFINE_integer("num_images", 41620, "Images in the workload.")
_BOXES_PER_IMAGE = flags.DEFINE_float("boxes_per_image", 5.0, "Mean boxes per image (Poisson).")
_LABELS_PER_IMAGE = flags.DEFINE_integer("labels_per_image", 10,
                                         "Verified image-level labels per image (about).")
_MAX_DETECTIONS = flags.DEFINE_integer("max_detections", 100, "Detections per image, at most.")
_BRUTE_FORCE_IMAGES = flags.DEFINE_integer("brute_force_images", 1000,
                                           "Images of the subset the brute-force reference runs on.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each measurement; the median is shown.")
_SEED = flags.DEFINE_integer("seed", 0, "Workload random seed.")
_WORK_DIR = flags.DEFINE_string("work_dir", None,
                                "Where to write the workload (default: a new temp dir).")
_CLASS_LIST = flags.DEFINE_string(
    "class_list", str(SHARED / "class_lists" / "challenge-2019-classes-description-500.csv"),
    "Class list of the workload.")
_HIERARCHY = flags.DEFINE_string(
    "hierarchy", str(SHARED / "hierarchy" / "challenge-2019-label500-hierarchy.json"),
    "Hierarchy of the workload.")

MAP_KEY = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"


def _text(values) -> pa.Array:
  return pc.cast(pa.array(np.round(np.asarray(values, np.float64), 6)), pa.string())


def _write_csv(path, header: str, columns) -> None:
  """Writes rows of string/number columns without quoting, as the official files are."""
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(header + "\n")
    if len(columns[0]):
      lines = pc.binary_join_element_wise(*columns, ",")
      if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
      joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()),
                                                       lines), "\n")
      f.write(joined[0].as_py() + "\n")


def _random_boxes(rng, n, small=0.05):
  """(ymin, xmin, ymax, xmax) with sides in [small, 0.8]."""
  size = rng.uniform(small, 0.8, (n, 2))
  low = rng.uniform(0, 1, (n, 2)) * (1 - size)
  return np.round(np.concatenate([low, low + size], axis=1), 6)


def make_workload(out: pathlib.Path, label_map: labels.LabelMap, num_images: int, seed: int):
  """Writes boxes.csv, labels.csv, predictions.csv; returns their paths and sorted ImageIDs."""
  rng = np.random.default_rng(seed)
  num_classes = len(label_map)
  keys = np.unique(rng.integers(0, 2**63, num_images * 2, dtype=np.uint64))[:num_images]
  ids = readers.key_to_image_id(keys)
  mids = np.asarray(label_map.mids, object)
  # Boxes: Poisson counts, a few classes per image, some group-of.
  per_image = rng.poisson(_BOXES_PER_IMAGE.value, num_images)
  box_image = np.repeat(np.arange(num_images), per_image)
  image_classes = rng.integers(0, num_classes, (num_images, 3))
  box_class = image_classes[box_image, rng.integers(0, 3, len(box_image))]
  boxes = _random_boxes(rng, len(box_image))
  group_of = (rng.random(len(box_image)) < 0.08).astype(np.int64)
  _write_csv(out / "boxes.csv", "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf",
             [pa.array(ids[box_image]), pa.array(mids[box_class].tolist()), _text(boxes[:, 1]),
              _text(boxes[:, 3]), _text(boxes[:, 0]), _text(boxes[:, 2]),
              pc.cast(pa.array(group_of), pa.string())])
  # Image-level labels: each image's box classes positive, other classes verified negative.
  pairs = np.unique(box_image.astype(np.int64) * num_classes + box_class)
  extra_image = np.repeat(np.arange(num_images), max(_LABELS_PER_IMAGE.value - 3, 0))
  extra = np.unique(extra_image.astype(np.int64) * num_classes
                    + rng.integers(0, num_classes, len(extra_image)))
  extra = extra[~np.isin(extra, pairs)]
  label_keys = np.concatenate([pairs, extra])
  confidence = np.concatenate([np.ones(len(pairs), np.int64), np.zeros(len(extra), np.int64)])
  order = np.argsort(label_keys, kind="stable")
  label_keys, confidence = label_keys[order], confidence[order]
  _write_csv(out / "labels.csv", "ImageID,Source,LabelName,Confidence",
             [pa.array(ids[label_keys // num_classes]),
              pa.array(["verification"] * len(label_keys)),
              pa.array(mids[label_keys % num_classes].tolist()),
              pc.cast(pa.array(confidence), pa.string())])
  # Detections: 1-2 jittered copies of each box (a fifth with a wrong class), then random boxes.
  copies = rng.integers(1, 3, len(box_image))
  src = np.repeat(np.arange(len(box_image)), copies)
  jitter = rng.normal(0, 0.03, (len(src), 4))
  near = np.clip(boxes[src] + jitter, 0, 1)
  near_class = np.where(rng.random(len(src)) < 0.2, rng.integers(0, num_classes, len(src)),
                        box_class[src])
  near_score = rng.uniform(0.3, 1.0, len(src))
  budget = rng.integers(_MAX_DETECTIONS.value // 2, _MAX_DETECTIONS.value + 1, num_images)
  fill = np.maximum(budget - np.bincount(box_image[src], minlength=num_images), 0)
  random_image = np.repeat(np.arange(num_images), fill)
  det_image = np.concatenate([box_image[src], random_image])
  det_class = np.concatenate([near_class, rng.integers(0, num_classes, len(random_image))])
  det_boxes = np.concatenate([near, _random_boxes(rng, len(random_image), small=0.02)])
  det_score = np.round(np.concatenate([near_score, rng.uniform(0, 0.6, len(random_image))]), 6)
  order = np.argsort(det_image, kind="stable")
  predictions.write_predictions(out / "predictions.csv", keys[det_image[order]], det_class[order],
                                det_score[order], np.round(det_boxes[order], 6), label_map)
  return ids


def _subset(src: pathlib.Path, dst: pathlib.Path, ids: set) -> None:
  """Copies the rows of a CSV whose first column is one of `ids`."""
  with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
    g.write(f.readline())
    g.writelines(line for line in f if line[:16] in ids)


def _oi_evaluate(directory: pathlib.Path, out: pathlib.Path) -> tuple[float, float]:
  """Runs oi-evaluate on a workload directory; returns (seconds, mAP)."""
  script = pathlib.Path(sys.executable).parent / "oi-evaluate"
  command = [str(script)] if script.exists() else [sys.executable, "-m", "oi_models.evaluation.cli"]
  start = time.perf_counter()
  subprocess.run(command + [f"--boxes={directory / 'boxes.csv'}",
                            f"--image_labels={directory / 'labels.csv'}",
                            f"--class_list={_CLASS_LIST.value}", f"--hierarchy={_HIERARCHY.value}",
                            f"--predictions={directory / 'predictions.csv'}",
                            f"--output_dir={out}"], check=True, capture_output=True)
  seconds = time.perf_counter() - start
  return seconds, json.loads((out / "metrics.json").read_text())["metrics"][MAP_KEY]


def _brute_force(directory: pathlib.Path, label_map) -> tuple[float, float]:
  """Reads the same files (readers + expansion) and runs the reference; returns (seconds, mAP)."""
  sys.path.insert(0, str(REPO / "tests" / "evaluation"))
  import brute_force  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  truth = ground_truth.load(directory / "boxes.csv", label_map, _HIERARCHY.value,
                            directory / "labels.csv")
  preds = predictions.read_predictions(directory / "predictions.csv", label_map)
  gt = list(zip(truth.box_image_ids.tolist(), truth.box_labels.tolist(), truth.boxes.tolist(),
                truth.box_is_group_of.tolist()))
  dets = list(zip(preds.image_id.tolist(), preds.label.tolist(), preds.score.tolist(),
                  preds.boxes.tolist()))
  image_labels = list(zip(truth.label_image_ids.tolist(), truth.label_labels.tolist()))
  ap = brute_force.evaluate(len(label_map), "challenge", gt, dets, image_labels)[0]
  return time.perf_counter() - start, float(np.nanmean(ap))


def _median(measure, repeats):
  runs = [measure() for _ in range(repeats)]
  return statistics.median(r[0] for r in runs), runs[0][1]


def main(argv):
  del argv
  label_map = labels.LabelMap.from_file(_CLASS_LIST.value)
  work = pathlib.Path(_WORK_DIR.value or tempfile.mkdtemp(prefix="oi_eval_bench_"))
  full, part = work / "full", work / "subset"
  full.mkdir(parents=True, exist_ok=True)
  part.mkdir(exist_ok=True)
  start = time.perf_counter()
  ids = make_workload(full, label_map, _NUM_IMAGES.value, _SEED.value)
  chosen = set(ids[:_BRUTE_FORCE_IMAGES.value].tolist())
  for name in ("boxes.csv", "labels.csv", "predictions.csv"):
    _subset(full / name, part / name, chosen)
  rows = {name: sum(1 for _ in open(full / name)) - 1
          for name in ("boxes.csv", "labels.csv", "predictions.csv")}
  print(f"workload in {work} ({time.perf_counter() - start:.1f} s to write): {len(ids):,} images, "
        f"{rows['boxes.csv']:,} boxes, {rows['labels.csv']:,} image-level labels, "
        f"{rows['predictions.csv']:,} detections; {len(label_map)} classes")

  repeats = _REPEATS.value
  fast_full = _median(lambda: _oi_evaluate(full, work / "out_full"), repeats)
  fast_part = _median(lambda: _oi_evaluate(part, work / "out_subset"), repeats)
  brute = _median(lambda: _brute_force(part, label_map), repeats)

  n_full, n_part = len(ids), len(chosen)
  brute_per_image = brute[0] / n_part
  table = [("oi-evaluate, all images", n_full, fast_full), ("oi-evaluate, subset", n_part, fast_part),
           ("brute force, subset", n_part, brute)]
  print(f"\n{'run':<26}{'images':>8}{'seconds':>10}{'images/s':>11}{'speed vs brute':>16}{'mAP':>12}")
  for name, n, (seconds, mean_ap) in table:
    ratio = brute_per_image / (seconds / n)
    print(f"{name:<26}{n:>8,}{seconds:>10.2f}{n / seconds:>11,.0f}{ratio:>15.1f}x{mean_ap:>12.6f}")
  agree = fast_part[1] == brute[1]
  print(f"\nsubset mAP: oi-evaluate {fast_part[1]!r}, brute force {brute[1]!r}: "
        f"{'identical' if agree else 'DIFFERENT'}")
  print(f"full workload: {fast_full[0]:.1f} s (target < 30 s), median of {repeats}")
  if not _WORK_DIR.value:
    shutil.rmtree(work)  # About 250 MB at full size.
  return 0 if agree else 1


if __name__ == "__main__":
  app.run(main)
