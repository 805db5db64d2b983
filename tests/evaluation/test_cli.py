"""oi-evaluate end to end in a subprocess, on a sample dataset, with predictions made from its truth."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from oi_models import evaluation
from oi_models import labels
from oi_models.datasets import make_sample
from oi_models.evaluation import ground_truth
from oi_models.evaluation import predictions
from oi_models.io import readers

MAP_KEY = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  info = make_sample.make_sample(root / "sample", num_images=40)
  label_map = labels.LabelMap.from_file(info.class_list)
  files = {"root": root, "boxes": info.boxes["train"], "image_labels": info.image_labels["train"],
           "class_list": info.class_list, "hierarchy": info.hierarchy}
  truth = ground_truth.load(files["boxes"], label_map, info.hierarchy, files["image_labels"])
  n = len(truth.box_labels)
  scores = np.linspace(1.0, 0.5, n)
  for fmt in ("csv", "kaggle"):
    files[f"perfect_{fmt}"] = root / f"perfect.{fmt}"
    predictions.write_predictions(files[f"perfect_{fmt}"], truth.box_image_ids, truth.box_labels,
                                  scores, truth.boxes, label_map, fmt=fmt)
  shuffled = np.random.default_rng(0).permutation(truth.box_labels)
  files["shuffled"] = root / "shuffled.csv"
  predictions.write_predictions(files["shuffled"], truth.box_image_ids, shuffled, scores,
                                truth.boxes, label_map)
  # Classification: score 1 for each verified positive, 0 for each verified negative.
  ids, classes, positive = ground_truth.read_verified_labels(
      files["image_labels"], label_map, ground_truth.make_expander(info.hierarchy, label_map))
  files["scores"] = root / "scores.csv"
  predictions.write_predictions(files["scores"], ids, classes, positive.astype(float), None,
                                label_map, fmt="classification")
  return files


def _run(*args, expect_ok=True):
  done = subprocess.run([sys.executable, "-m", "oi_models.evaluation.cli", *map(str, args)],
                        capture_output=True, text=True, timeout=300)
  if expect_ok:
    assert done.returncode == 0, done.stderr[-3000:]
  return done


def _detection(sample, predictions_file, out, *extra):
  return _run(f"--boxes={sample['boxes']}", f"--image_labels={sample['image_labels']}",
              f"--class_list={sample['class_list']}", f"--hierarchy={sample['hierarchy']}",
              f"--predictions={predictions_file}", f"--output_dir={out}", *extra)


def _outputs(out):
  content = json.loads((out / "metrics.json").read_text())
  with open(out / "per_class.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  return content, rows


@pytest.mark.parametrize("fmt", ["csv", "kaggle"])
def test_perfect_predictions(sample, tmp_path, fmt):
  done = _detection(sample, sample[f"perfect_{fmt}"], tmp_path, "--plot")
  content, rows = _outputs(tmp_path)
  assert content["metrics"][MAP_KEY] == 1.0
  assert "mAP: 1.000000" in done.stdout
  assert content["mode"]["protocol"] == "challenge"
  assert content["mode"]["image_level_labels"] and content["mode"]["expand_ground_truth"]
  assert content["mode"]["predictions_format"] == fmt
  assert content["inputs"]["predictions"]["rows_kept"] > 0
  assert all(float(r["AP"]) == 1.0 and r["FP"] == "0" for r in rows if r["AP"])
  assert (tmp_path / "pr.png").exists()


def test_shuffled_labels_score_lower(sample, tmp_path):
  _detection(sample, sample["shuffled"], tmp_path)
  content, rows = _outputs(tmp_path)
  assert 0 < content["metrics"][MAP_KEY] < 0.9
  # The CSV and the JSON say the same.
  aps = [float(r["AP"]) for r in rows if r["AP"]]
  assert content["metrics"][MAP_KEY] == pytest.approx(np.mean(aps), rel=1e-12)
  for row in rows:
    key = f"OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/{row['MID']}"
    assert (float(row["AP"]) if row["AP"] else None) == content["metrics"].get(key)
  assert [r["MID"] for r in content["per_class"]] == [r["MID"] for r in rows]
  assert sum(int(r["FP"]) for r in rows) > 0


def test_v2_protocol_without_image_labels(sample, tmp_path):
  done = _run(f"--boxes={sample['boxes']}", f"--class_list={sample['class_list']}",
              f"--hierarchy={sample['hierarchy']}", f"--predictions={sample['perfect_csv']}",
              "--protocol=v2", f"--output_dir={tmp_path}")
  content, _ = _outputs(tmp_path)
  assert content["metrics"]["OpenImagesV2_Precision/mAP@0.5IOU"] == 1.0
  assert content["mode"]["image_level_labels"] is False
  assert "v2 protocol, without image-level labels" in done.stdout


def test_strict_reports_bad_row(sample, tmp_path):
  bad = tmp_path / "bad.csv"
  text = sample["perfect_csv"].read_text().splitlines()
  text[3] = text[3].replace("/m/", "/m/zz")
  bad.write_text("\n".join(text) + "\n")
  done = _run(f"--boxes={sample['boxes']}", f"--class_list={sample['class_list']}",
              f"--predictions={bad}", "--strict", expect_ok=False)
  assert done.returncode != 0
  assert f"{bad}:4: field 'LabelName'" in done.stderr
  lenient = _run(f"--boxes={sample['boxes']}", f"--class_list={sample['class_list']}",
                 f"--predictions={bad}")
  assert "skipped 1: unknown MID" in lenient.stdout


@pytest.mark.parametrize("flag", ["boxes", "predictions"])
def test_missing_file_is_one_line_not_a_traceback(sample, tmp_path, flag):
  files = {"boxes": sample["boxes"], "predictions": sample["perfect_csv"], flag: tmp_path / "absent.csv"}
  done = _run(f"--boxes={files['boxes']}", f"--class_list={sample['class_list']}",
              f"--predictions={files['predictions']}", expect_ok=False)
  assert done.returncode == 1
  assert f"oi-evaluate: [Errno 2] No such file or directory: '{tmp_path / 'absent.csv'}'" in done.stderr
  assert "Traceback" not in done.stderr


def test_classification_task(sample, tmp_path):
  done = _run("--task=classification", f"--image_labels={sample['image_labels']}",
              f"--class_list={sample['class_list']}", f"--hierarchy={sample['hierarchy']}",
              f"--predictions={sample['scores']}", f"--output_dir={tmp_path}")
  content, rows = _outputs(tmp_path)
  assert content["metrics"]["OpenImagesClassification_mAP"] == 1.0
  assert content["mode"]["task"] == "classification"
  assert "verified labels only" in done.stdout
  assert list(rows[0]) == ["MID", "DisplayName", "AP", "Positives", "Negatives", "Unscored"]
  assert sum(int(r["Unscored"]) for r in rows) == 0
  # Unverified pairs as negatives: nothing was scored for them, they rank last; still all found.
  _run("--task=classification", f"--image_labels={sample['image_labels']}",
       f"--class_list={sample['class_list']}", f"--hierarchy={sample['hierarchy']}",
       f"--predictions={sample['scores']}", f"--output_dir={tmp_path}", "--unknown_as_negative")
  content, _ = _outputs(tmp_path)
  assert content["mode"]["unknown_as_negative"]
  assert content["metrics"]["OpenImagesClassification_mAP"] == 1.0


def test_missing_flags_is_a_usage_error():
  done = _run("--task=classification", expect_ok=False)
  assert done.returncode != 0
  assert "--image_labels" in done.stderr and "--predictions" in done.stderr


def test_python_api_expand_predictions(sample, tmp_path):
  """Unexpanded box rows as predictions find every expanded box only when predictions expand too."""
  label_map = labels.LabelMap.from_file(sample["class_list"])
  raw = ground_truth.load(sample["boxes"], label_map, expand=False)
  path = tmp_path / "raw.csv"
  predictions.write_predictions(path, raw.box_image_ids, raw.box_labels,
                                np.linspace(1, 0.5, len(raw.box_labels)), raw.boxes, label_map)
  args = (sample["boxes"], path, sample["class_list"], sample["hierarchy"], sample["image_labels"])
  expanded = evaluation.evaluate_files(*args, expand_predictions=True)
  assert expanded.mean_ap == 1.0 and expanded.mode["expand_predictions"]
  plain = evaluation.evaluate_files(*args)
  assert plain.mean_ap < 1.0
  # Parent classes (boxes only through expansion) get no true positive without expanded predictions.
  parents = [r for r in plain.table if r["AP"] is not None and r["TP"] == 0]
  assert parents and all(r["AP"] == 0.0 for r in parents)
  assert [r["MID"] for r in plain.table] == list(label_map.mids)
  with pytest.raises(ValueError, match="hierarchy"):
    evaluation.evaluate_files(sample["boxes"], path, sample["class_list"], expand_predictions=True)


def _pbtxt(path, label_map):
  with open(path, "w", encoding="utf-8") as f:
    for i, (mid, name) in enumerate(zip(label_map.mids, label_map.names), start=1):
      f.write(f'item {{\n  name: "{mid}"\n  id: {i}\n  display_name: "{name}"\n}}\n')
  return path


def test_official_command_line_on_expanded_files(sample, tmp_path):
  """oid_challenge_evaluation.py's flags, a .pbtxt label map, `_expanded.csv` files: same numbers."""
  label_map = labels.LabelMap.from_file(sample["class_list"])
  truth = ground_truth.load(sample["boxes"], label_map, sample["hierarchy"], sample["image_labels"])
  boxes = tmp_path / "validation-bbox_expanded.csv"
  with open(boxes, "w") as f:
    f.write("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n")
    for image, cls, box, group_of in zip(readers.key_to_image_id(truth.box_image_ids),
                                         truth.box_labels, truth.boxes, truth.box_is_group_of):
      f.write(f"{image},{label_map.mids[cls]},{float(box[1])!r},{float(box[3])!r},"
              f"{float(box[0])!r},{float(box[2])!r},{int(group_of)}\n")
  csv_out = tmp_path / "metrics.csv"
  common = (f"--input_annotations_boxes={boxes}", f"--input_annotations_labels={sample['image_labels']}",
            f"--input_class_labelmap={_pbtxt(tmp_path / 'labelmap.pbtxt', label_map)}",
            f"--input_predictions={sample['perfect_csv']}", f"--output_metrics={csv_out}")
  done = _run(*common, f"--hierarchy={sample['hierarchy']}")
  assert f"boxes: {boxes}: already expanded (file name and every copy" in done.stdout
  assert "mAP: 1.000000" in done.stdout
  with open(csv_out, newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == [MAP_KEY, "1.0"]
  assert [r[0] for r in rows[1:]] == [
      f"OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/{m}" for m in label_map.mids]
  with_gt = set(label_map.mids[c] for c in truth.box_labels)
  assert all(value == ("1.0" if name.split("IOU/")[1] in with_gt else "nan") for name, value in rows[1:])
  # Without --hierarchy (the official way: no expansion at all) the result is the same.
  _run(*common)
  with open(csv_out, newline="") as f:
    assert list(csv.reader(f)) == rows


def test_hint_names_expand_predictions(sample, tmp_path):
  label_map = labels.LabelMap.from_file(sample["class_list"])
  raw = ground_truth.load(sample["boxes"], label_map, expand=False)
  leaves = tmp_path / "leaves.csv"
  predictions.write_predictions(leaves, raw.box_image_ids, raw.box_labels,
                                np.full(len(raw.box_labels), 0.5), raw.boxes, label_map)
  done = _detection(sample, leaves, tmp_path)
  assert "hint: " in done.stdout and "--expand_predictions" in done.stdout
  assert json.loads((tmp_path / "metrics.json").read_text())["notes"]


def test_no_ground_truth_or_no_matching_image_is_an_error(sample, tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n")
  done = _run(f"--boxes={empty}", f"--class_list={sample['class_list']}",
              f"--predictions={sample['perfect_csv']}", expect_ok=False)
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert f"oi-evaluate: {empty}: no ground-truth box to evaluate (0 rows read)" in done.stderr
  elsewhere = tmp_path / "elsewhere.csv"
  lines = sample["perfect_csv"].read_text().splitlines()
  elsewhere.write_text("\n".join([lines[0]] + ["f" * 16 + line[16:] for line in lines[1:]]) + "\n")
  done = _run(f"--boxes={sample['boxes']}", f"--class_list={sample['class_list']}",
              f"--predictions={elsewhere}", expect_ok=False)
  assert done.returncode == 1
  assert f"{elsewhere}: none of the {len(lines) - 1:,} predictions is on one of the" in done.stderr
