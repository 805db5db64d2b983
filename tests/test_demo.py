"""`make demo` end to end on a small sample, in a fresh process as `make demo` runs it."""

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oi_models import visualize


# The whole demo with very few training steps (the pictures, figures and files, not the quality).
FEW_STEPS = ("--classifier_steps=4", "--detector_steps=2")


def _run_demo(out_dir, num_images, *flags):
  done = subprocess.run([sys.executable, "-m", "oi_models.demo", f"--out_dir={out_dir}",
                         f"--num_images={num_images}", *flags], capture_output=True, text=True,
                        timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return (out_dir / "report.md").read_text()


def _figures(report):
  section = report.split("## Figures", 1)[1]
  return {name: float(value) for name, value in re.findall(r"^(.+): (-?[\d.]+)$", section, re.M)}


def _written(report):
  return sum(int(n) for n in re.findall(r"(\d+) of \d+ listed images written", report))


def _longest_run(mask):
  """Longest horizontal run of True in a 2-D boolean mask."""
  best = 0
  for row in mask[mask.any(axis=1)]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    best = max(best, int((edges[1::2] - edges[::2]).max()))
  return best


def test_demo_writes_report_dataset_preview_models_and_pictures(tmp_path, shared):
  photos = sorted(p.stem for p in shared("images").glob("*.jpg"))
  report = _run_demo(tmp_path, 40, *FEW_STEPS, f"--photos_dir={shared('images')}")
  sections = re.findall(r"^## (.+)$", report, re.M)
  assert sections == ["Sample dataset (official V6 layout)", "TFDS dataset open_images (ArrayRecord)",
                      "Input pipeline preview", "Classifier (tiny ResNet, image-level labels)",
                      "Detector (tiny Faster R-CNN, boxes)", "SavedModel: detector",
                      "SavedModel: classifier", "Detector inference and evaluation",
                      "Classifier inference and evaluation", "Figures"], sections
  assert _written(report) == 40
  build_dir = tmp_path / "tfds" / "open_images" / "v6_original" / "1.0.0"
  assert (build_dir / "build_report.json").exists()
  preview_section = report.split("## Input pipeline preview", 1)[1]
  assert "class-aware order" in preview_section
  preview = Image.open(tmp_path / "input_preview.png")
  assert preview.width > 4 * 192 and preview.height > 2 * 192  # Eight inputs, four to a row.
  # Boxes were drawn: some class of the dataset has an outline run of exactly its colour.
  names = (build_dir / "objects-label.labels.txt").read_text().split()
  pixels = np.asarray(preview.convert("RGB"))
  runs = {i: _longest_run((pixels == visualize.class_colour(i)).all(axis=-1)) for i in range(len(names))}
  assert max(runs.values()) >= 10, runs

  _check_models_and_inference(tmp_path, report, photos)

  # A rerun in the same out_dir regenerates the sample and the build with the new flags.
  report = _run_demo(tmp_path, 24, "--stop_after=build")
  assert re.findall(r"^## (.+)$", report, re.M) == ["Sample dataset (official V6 layout)",
                                                    "TFDS dataset open_images (ArrayRecord)"]
  assert _written(report) == 24
  counts = re.search(r"examples: train (\d+), validation (\d+), test (\d+)", report)
  assert counts and sum(int(c) for c in counts.groups()) == 24, report


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
  (tmp_path / "sample").mkdir()
  keep = tmp_path / "sample" / "my_notes.txt"
  keep.write_text("not the demo's")
  done = subprocess.run([sys.executable, "-m", "oi_models.demo", f"--out_dir={tmp_path}"],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert "was not made by the demo" in done.stderr and "Traceback" not in done.stderr
  assert keep.read_text() == "not the demo's"


def _check_models_and_inference(out_dir, report, photos):
  """Both models trained the steps asked, exported, ran on the test split and the photos; the
  report's test mAPs are what oi-evaluate computes from the written predictions."""
  import json  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  for kind, steps in (("classifier", 4), ("detector", 2)):
    metrics = json.loads((out_dir / kind / "metrics.json").read_text())
    assert metrics["mode"]["global_step"] == steps
    assert (out_dir / "exported" / kind / "saved_model.pb").exists()
    assert (out_dir / "exported" / kind / "assets" / "class_list.csv").exists()
  test_ids = sorted(p.stem for p in (out_dir / "sample" / "test").iterdir())
  figures = _figures(report)
  assert set(figures) == {"classifier validation mAP", "detector validation challenge mAP@0.5",
                          "detector test challenge mAP@0.5 (oi-detect -> oi-evaluate)",
                          "classifier test mAP (oi-classify -> oi-evaluate)"}
  assert all(0.0 <= v <= 1.0 for v in figures.values()), figures
  sample = out_dir / "sample"
  evaluate = pathlib.Path(sys.executable).parent / "oi-evaluate"
  runs = {
      "detector test challenge mAP@0.5 (oi-detect -> oi-evaluate)": [
          "--task=detection", f"--boxes={sample / 'test-annotations-bbox.csv'}",
          f"--class_list={sample / 'class-descriptions-boxable.csv'}",
          f"--predictions={out_dir / 'detections' / 'test_predictions.csv'}"],
      "classifier test mAP (oi-classify -> oi-evaluate)": [
          "--task=classification", f"--class_list={out_dir / 'classifier' / 'classes.csv'}",
          f"--predictions={out_dir / 'classifications' / 'test_labels.csv'}"]}
  runs["detector test challenge mAP@0.5 (oi-detect -> oi-evaluate)"].append(
      f"--hierarchy={sample / 'bbox_labels_600_hierarchy.json'}")
  for figure, flags in runs.items():
    done = subprocess.run([evaluate, *flags,
                           f"--image_labels={sample / 'test-annotations-human-imagelabels.csv'}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert float(re.search(r"^mAP: ([\d.]+)", done.stdout, re.M).group(1)) == pytest.approx(
        figures[figure], abs=5e-4), figure
  for folder, picture in (("detections", "detections.png"), ("classifications", "classifier_labels.png")):
    drawn = sorted(p.stem for p in (out_dir / folder / "drawn").iterdir())
    assert drawn == sorted(test_ids + photos)
    sheet = Image.open(out_dir / picture)
    assert sheet.width > 2 * 200 and sheet.height > 100
  rows = (out_dir / "detections" / "test_predictions.csv").read_text().splitlines()[1:]
  assert rows and {r.split(",")[0] for r in rows} <= set(test_ids)
