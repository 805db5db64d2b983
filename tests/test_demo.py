"""`make demo` end to end on a small sample, in a fresh process as `make demo` runs it."""

import re
import subprocess
import sys

from PIL import Image


def test_demo_writes_report_dataset_and_preview(tmp_path):
  done = subprocess.run([sys.executable, "-m", "oi_models.demo", f"--out_dir={tmp_path}",
                         "--num_images=40"], capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  report = (tmp_path / "report.md").read_text()
  sections = re.findall(r"^## (.+)$", report, re.M)
  assert sections[:3] == ["Sample dataset (official V6 layout)", "TFDS dataset open_images (ArrayRecord)",
                          "Input pipeline preview"]
  written = [int(n) for n in re.findall(r"(\d+) of \d+ listed images written", report)]
  assert sum(written) == 40
  assert (tmp_path / "tfds" / "open_images" / "v6_original" / "1.0.0" / "build_report.json").exists()
  preview = Image.open(tmp_path / "input_preview.png")
  assert preview.width > 4 * 192 and preview.height > 2 * 192  # Eight inputs, four to a row.
