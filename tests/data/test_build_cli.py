"""Tests of the `oi-build-dataset` CLI (run as a subprocess, as a user would)."""

import json
import pathlib
import subprocess
import sys

import pytest

from oi_models.data import make_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  return make_sample.make_sample(tmp_path_factory.mktemp("sample"), num_images=10, splits=(6, 2, 2))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "oi_models.data.build", *args], capture_output=True,
                        text=True, timeout=600)


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


def test_unknown_config_is_a_usage_error(sample, tmp_path):
  done = _run(f"--manual_dir={sample.root}", f"--data_dir={tmp_path}", "--config=v9_tiny")
  assert done.returncode != 0
  assert "v9_tiny" in done.stderr


def test_tfds_build_command_finds_and_builds_open_images(sample, tmp_path):
  """TFDS's own `tfds build` builds the dataset once `--imports oi_models.data` registers it."""
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  done = subprocess.run([str(tfds_cli), "build", "--imports", "oi_models.data", "open_images/v6_300k_n2",
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
