"""`make demo` end to end on a small sample, in a fresh process as `make demo` runs it."""

import re
import subprocess
import sys

import numpy as np
from PIL import Image

from oi_models import visualize


def _run_demo(out_dir, num_images):
  done = subprocess.run([sys.executable, "-m", "oi_models.demo", f"--out_dir={out_dir}",
                         f"--num_images={num_images}"], capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return (out_dir / "report.md").read_text()


def _written(report):
  return sum(int(n) for n in re.findall(r"(\d+) of \d+ listed images written", report))


def _longest_run(mask):
  """Longest horizontal run of True in a 2-D boolean mask."""
  best = 0
  for row in mask[mask.any(axis=1)]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    best = max(best, int((edges[1::2] - edges[::2]).max()))
  return best


def test_demo_writes_report_dataset_and_preview(tmp_path):
  report = _run_demo(tmp_path, 40)
  sections = re.findall(r"^## (.+)$", report, re.M)
  assert sections[:3] == ["Sample dataset (official V6 layout)", "TFDS dataset open_images (ArrayRecord)",
                          "Input pipeline preview"]
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

  # A rerun in the same out_dir regenerates the sample and the build with the new flags.
  report = _run_demo(tmp_path, 24)
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
