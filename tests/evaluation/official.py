"""This package's detection metric against the TF Object Detection API's own, on official files.

`write_workloads` writes random workloads as the official files (Challenge box CSV, image-level labels,
predictions CSV, a .pbtxt label map) with exact ties everywhere: grid boxes, repeated boxes and
scores, detections whose IoU with a box or IoA with a group-of box is exactly the threshold, flat and
degenerate boxes, scores at the -10 floor. `tests/oracles/od_evaluators.py` evaluates them with
`OpenImagesChallengeEvaluator` and `OpenImagesDetectionEvaluator` (in a process of its own); `compare`
evaluates them with `oi_models.evaluation.evaluate_files` and counts the differences: every metric row
of the official CSV (mAP and each class's AP, as text, so equal means bit-equal) and each class's
precision and recall arrays.
"""

import json
import pathlib
import time

import numpy as np

from oi_models import evaluation
from tests import oracles
from tests.evaluation import workloads

# Thresholds other than the official 0.5 exercise the IoU and the IoA tests with the configured value.
THRESHOLDS = (0.5, 0.5, 0.5, 0.25, 0.75)


def _mid(cls: int) -> str:
  return f"/m/c{cls}"


def _image_id(key: int) -> str:
  return f"a{key:015x}"  # a letter: pandas would read an all-digit ImageID column as integers


def _at_threshold(rng, gt, threshold):
  """Detections whose IoU with a box (or IoA with a group-of box) is exactly `threshold`.

  Boxes lie on a 1/8 grid, so these coordinates are dyadic and every overlap is computed exactly.
  """
  dets = []
  for image, cls, (ymin, xmin, ymax, xmax), group_of in gt:
    if rng.random() < 0.5 or not (ymin < ymax and xmin < xmax):
      continue
    width = xmax - xmin
    if group_of:  # shifted right: a `threshold` share of the detection lies inside the group box
      box = (ymin, xmax - threshold * width, ymax, 2 * xmax - xmin - threshold * width)
    else:  # inside the box, a `threshold` share of its area: IoU = threshold
      box = (ymin, xmin, ymax, xmin + threshold * width)
    dets.append((image, cls, float(rng.choice([0.5, 0.75, 0.9])), box))
  return dets


def _workload(rng):
  num_images, num_classes = int(rng.integers(1, 7)), int(rng.integers(1, 6))
  threshold = float(rng.choice(THRESHOLDS))
  gt, labels, dets = workloads.random_workload(rng, num_images, num_classes, nan_boxes=False)
  if not gt:
    gt = [(int(rng.integers(1, 10**6)), 0, (0.0, 0.0, 0.5, 0.5), False)]
  dets = dets + _at_threshold(rng, gt, threshold)
  if rng.random() < 0.3:
    dets = dets * 2  # exact duplicates: tied scores in every group
  dets.append((gt[0][0], gt[0][1], 0.5, gt[0][2]))  # at least one detection on a ground-truth image
  order = rng.permutation(len(dets))
  dets = [dets[i] for i in order]
  # Scores as a predictions file holds them (4 decimals), parsed alike by pandas and by pyarrow.
  dets = [(image, cls, round(score, 4), box) for image, cls, score, box in dets]
  return num_classes, threshold, gt, labels, dets


def _write(directory: pathlib.Path, num_classes, gt, labels, dets) -> None:
  directory.mkdir(parents=True)
  with open(directory / "labelmap.pbtxt", "w") as f:
    for cls in range(num_classes):
      f.write(f'item {{\n  name: "{_mid(cls)}"\n  id: {cls + 1}\n  display_name: "class {cls}"\n}}\n')
  with open(directory / "boxes.csv", "w") as f:
    f.write("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n")
    for image, cls, (ymin, xmin, ymax, xmax), group_of in gt:
      f.write(f"{_image_id(image)},{_mid(cls)},{float(xmin)!r},{float(xmax)!r},{float(ymin)!r},"
              f"{float(ymax)!r},{int(group_of)}\n")
  with open(directory / "labels.csv", "w") as f:
    f.write("ImageID,Source,LabelName,Confidence\n")
    for i, (image, cls) in enumerate(labels):
      f.write(f"{_image_id(image)},verification,{_mid(cls)},{i % 2}\n")
  with open(directory / "predictions.csv", "w") as f:
    f.write("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n")
    for image, cls, score, (ymin, xmin, ymax, xmax) in dets:
      f.write(f"{_image_id(image)},{_mid(cls)},{float(score)!r},{float(xmin)!r},{float(xmax)!r},"
              f"{float(ymin)!r},{float(ymax)!r}\n")


def write_workloads(root: pathlib.Path, count: int, seed: int, script_every: int = 4) -> pathlib.Path:
  """Writes `count` workloads under `root` and a manifest.json listing them; returns its path.

  Every `script_every`-th workload at IoU 0.5 also goes through the official script's own main.
  """
  rng = np.random.default_rng(seed)
  entries = []
  for k in range(count):
    num_classes, threshold, gt, labels, dets = _workload(rng)
    directory = root / f"w{k:05d}"
    _write(directory, num_classes, gt, labels, dets)
    entries.append({"dir": str(directory), "iou_threshold": threshold,
                    "run_script": threshold == 0.5 and k % script_every == 0})
  manifest = root / "manifest.json"
  manifest.write_text(json.dumps(entries))
  return manifest


def run_official(manifest: pathlib.Path, timeout: float = 1800) -> float:
  """Runs the official evaluators on every workload of `manifest`; returns the seconds it took."""
  start = time.perf_counter()
  oracles.run("od_evaluators", manifest, timeout=timeout)
  return time.perf_counter() - start


def compare(manifest: pathlib.Path) -> dict:
  """Evaluates each workload with evaluate_files and counts the differences from the official output.

  Returns counts: workloads, comparisons (workload x protocol), metric rows compared, and mismatches
  of metric rows (text), of precision/recall arrays, and of the official script's own CSV (the
  challenge protocol at 0.5 also runs `oid_challenge_evaluation.main`, whose --output_metrics file
  must equal what `oi-evaluate --output_metrics` writes); `examples` names the first mismatches.
  """
  counts = dict(workloads=0, comparisons=0, metric_rows=0, metric_mismatches=0, curve_mismatches=0,
                script_runs=0, script_mismatches=0, examples=[])
  for entry in json.loads(manifest.read_text()):
    directory = pathlib.Path(entry["dir"])
    counts["workloads"] += 1
    official = json.loads((directory / "official.json").read_text())
    curves = np.load(directory / "official_curves.npz")
    for protocol in evaluation.PROTOCOLS:
      result = evaluation.evaluate_files(
          directory / "boxes.csv", directory / "predictions.csv", directory / "labelmap.pbtxt",
          image_labels=directory / "labels.csv", protocol=protocol,
          iou_threshold=entry["iou_threshold"])
      ours = [[key, str(value)] for key, value in
              result.result.metrics(result.label_map.mids, every_class=True).items()]
      counts["comparisons"] += 1
      counts["metric_rows"] += len(official[protocol])
      bad = sum(a != b for a, b in zip(ours, official[protocol])) + abs(len(ours) - len(official[protocol]))
      counts["metric_mismatches"] += bad
      for c in range(len(result.label_map)):
        for name, values in (("precision", result.result.precision), ("recall", result.result.recall)):
          key = f"{protocol}/{name}/{c}"
          if key in curves.files and not np.array_equal(values[c], curves[key]):
            counts["curve_mismatches"] += 1
            bad += 1
      if protocol == "challenge" and (directory / "official_script.csv").exists():
        counts["script_runs"] += 1
        script = [line.split(",") for line in (directory / "official_script.csv").read_text().splitlines()]
        if script != ours:
          counts["script_mismatches"] += 1
          bad += 1
      if bad and len(counts["examples"]) < 5:
        counts["examples"].append(f"{directory} {protocol}: ours {ours[:3]}, official {official[protocol][:3]}")
  return counts
