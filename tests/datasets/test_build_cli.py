"""Tests of the `oi-build-dataset` CLI (run as a subprocess, as a user would)."""

import csv
import json
import pathlib
import subprocess
import sys

import pytest

from oi_models.datasets import make_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  return make_sample.make_sample(tmp_path_factory.mktemp("sample"), num_images=10, splits=(6, 2, 2))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "oi_models.datasets.build", *args], capture_output=True,
                        text=True, timeout=600)


def _csv_rows(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def test_builds_with_options_and_prints_the_report(sample, tmp_path):
  boxable = make_sample.labels.LabelMap.from_csv(sample.class_list)
  done = _run(f"--manual_dir={sample.root}", f"--data_dir={tmp_path}", "--config=v6_300k",
              "--max_images_per_split=3", f"--classes={boxable.names[0]},{boxable.mids[1]}",
              "--file_format=array_record")
  assert done.returncode == 0, done.stderr[-3000:]
  dataset_dirs = list((tmp_path / "open_images").glob("v6_300k_n3_cls*/1.0.0"))
  assert len(dataset_dirs) == 1
  assert list(dataset_dirs[0].glob("*.array_record-*"))
  report = json.loads((dataset_dirs[0] / "build_report.json").read_text())
  written = sum(entry["counts"].get("images/written", 0) for entry in report.values())
  assert 0 < written <= 9
  assert "images/dropped/no_selected_class" in done.stdout or \
      "images/dropped/over_max_images" in done.stdout
  assert f"{written} images in" in done.stdout
  # Exactly which images qualify, from the CSV files: a box of a selected class, or a positive
  # human-verified label of one; the 3 smallest ImageIDs of those are written.
  selected = {boxable.mids[0], boxable.mids[1]}
  assert set(report) == set(make_sample.SPLITS)
  expected_total = 0
  for split in make_sample.SPLITS:
    qualifying = {r["ImageID"] for r in _csv_rows(sample.boxes[split]) if r["LabelName"] in selected}
    qualifying |= {r["ImageID"] for r in _csv_rows(sample.image_labels[split])
                   if r["LabelName"] in selected and float(r["Confidence"]) >= 0.5}
    images = len(_csv_rows(sample.metadata[split]))
    assert images == sample.counts[split].images
    assert qualifying <= {r["ImageID"] for r in _csv_rows(sample.metadata[split])}
    counts = report[split]["counts"]
    expected_written = min(3, len(qualifying))
    expected_total += expected_written
    assert counts["images/listed"] == images, split
    assert counts.get("images/written", 0) == expected_written, split
    assert counts.get("images/dropped/no_selected_class", 0) == images - len(qualifying), split
    assert counts.get("images/dropped/over_max_images", 0) == len(qualifying) - expected_written, \
        split
    assert {name for name in counts if name.startswith("images/dropped/")} <= {
        "images/dropped/no_selected_class", "images/dropped/over_max_images"}, split
    kept = set(sorted(qualifying)[:3])
    for kind, path in (("boxes", sample.boxes[split]), ("image_labels", sample.image_labels[split])):
      rows = _csv_rows(path)
      on_kept = [r for r in rows if r["ImageID"] in kept]
      assert counts.get(f"{kind}/written", 0) == sum(r["LabelName"] in selected for r in on_kept)
      assert counts.get(f"{kind}/dropped/class_not_selected", 0) == sum(
          r["LabelName"] not in selected for r in on_kept), (split, kind)
      assert counts.get(f"{kind}/dropped/image_dropped", 0) == len(rows) - len(on_kept), (split, kind)
      assert {name for name in counts if name.startswith(f"{kind}/dropped/")} <= {
          f"{kind}/dropped/class_not_selected", f"{kind}/dropped/image_dropped"}, (split, kind)
    assert counts.get("split_not_built_no_examples", 0) == (expected_written == 0), split
    assert f"{split}: {expected_written} of {images} listed images written" in done.stdout
    for name, n in counts.items():
      if "/dropped/" in name:
        assert f"  {name}: {n}" in done.stdout
  assert written == expected_total


def test_unknown_config_is_a_usage_error(sample, tmp_path):
  done = _run(f"--manual_dir={sample.root}", f"--data_dir={tmp_path}", "--config=v9_tiny")
  assert done.returncode != 0
  assert "v9_tiny" in done.stderr


def test_tfds_build_command_finds_and_builds_open_images(sample, tmp_path):
  """TFDS's own `tfds build` builds the dataset once `--imports oi_models.datasets` registers it."""
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  done = subprocess.run([str(tfds_cli), "build", "--imports", "oi_models.datasets", "open_images/v6_300k_n2",
                         f"--manual_dir={sample.root}", f"--data_dir={tmp_path}"],
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  info = json.loads((tmp_path / "open_images" / "v6_300k_n2" / "1.0.0" / "dataset_info.json").read_text())
  assert {s["name"]: int(s["shardLengths"][0]) for s in info["splits"]} == {
      "train": 2, "validation": 2, "test": 2}


@pytest.mark.parametrize("content, message", [
    ({}, "does not exist or is empty"),
    ({"notes.txt": "not Open Images"}, "boxable class list: none of class-descriptions-boxable.csv"),
])
def test_missing_files_are_named_without_a_traceback(tmp_path, content, message):
  manual = tmp_path / "manual"
  manual.mkdir()
  for name, text in content.items():
    (manual / name).write_text(text)
  done = _run(f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}", "--config=v6_300k")
  assert done.returncode == 1
  assert "oi-build-dataset: " in done.stderr and message in done.stderr
  if not content:  # TFDS's message carries the builder's instructions, which name the files.
    assert "oidv6-train-annotations-bbox.csv" in done.stderr
  assert "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["unknown_class", "zero_images", "negative_images"])
def test_bad_options_are_one_message(sample, tmp_path, case):
  """A bad option ends in one line and exit 1, as does every BuildError (test_builder has the rest)."""
  if case == "unknown_class":
    args, says = ["--classes=Kangaroo"], "classes not in this release's class lists"
  else:
    args = ["--max_images_per_split=0" if case == "zero_images" else "--max_images_per_split=-3"]
    says = "max_images_per_split"
  done = _run(f"--manual_dir={sample.root}", f"--data_dir={tmp_path / 'data'}", "--config=v6_300k",
              *args)
  assert done.returncode == 1, done.stderr[-2000:]
  assert says in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
  if case == "unknown_class":
    assert "oi-build-dataset: " in done.stderr and "Kangaroo" in done.stderr
  else:
    assert "is not a positive integer" in done.stderr
