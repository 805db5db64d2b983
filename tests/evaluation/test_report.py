"""Report outputs: per-class tables, metrics.json / per_class.csv that parse and agree, the PR plot."""

import csv
import json

import numpy as np
import pytest

from oi_models import labels
from oi_models.evaluation import classification
from oi_models.evaluation import detection
from oi_models.evaluation import report

LABEL_MAP = labels.LabelMap(("/m/a", "/m/b", "/m/c"), ("Apple", "Lemon, lime and bitters", "C"))
MODE = {"task": "detection", "protocol": "challenge", "image_level_labels": False,
        "expand_ground_truth": True, "expand_predictions": False}


def _result():
  """Class 0: one box found (AP 1); class 1: one of two boxes found after a false positive; class 2:
  no ground truth."""
  ev = detection.DetectionEvaluator(3)
  box = [0.0, 0.0, 0.5, 0.5]
  other = [0.5, 0.5, 1.0, 1.0]
  ev.add_ground_truth(np.array([1, 1, 1], np.uint64), [0, 1, 1], [box, box, other], [0, 0, 0])
  ev.add_detections(np.array([1, 1, 1, 1], np.uint64), [0, 1, 1, 2], [0.9, 0.8, 0.7, 0.6],
                    [box, [0.9, 0.9, 1.0, 1.0], box, box])
  return ev.evaluate()


def test_detection_table():
  result = _result()
  table = report.detection_table(result, LABEL_MAP)
  assert table[0] == {"MID": "/m/a", "DisplayName": "Apple", "AP": 1.0, "NumGroundTruth": 1,
                      "TP": 1, "FP": 0}
  assert table[1]["AP"] == pytest.approx(0.25)  # Recall 1/2 at precision 1/2.
  assert (table[1]["NumGroundTruth"], table[1]["TP"], table[1]["FP"]) == (2, 1, 1)
  assert table[2]["AP"] is None and table[2]["NumGroundTruth"] == 0


def test_files_parse_and_agree(tmp_path):
  result = _result()
  table = report.detection_table(result, LABEL_MAP)
  summary = report.summary_dict(result.metrics(LABEL_MAP.mids), result.mean_ap, table, MODE)
  paths = report.write(tmp_path, summary, report.DETECTION_COLUMNS)
  content = json.loads((tmp_path / report.METRICS_FILE).read_text())  # Standard JSON: no NaN.
  assert content["mode"]["protocol"] == "challenge"
  assert "challenge protocol" in content["mode"]["description"]
  assert "without image-level labels" in content["mode"]["description"]
  key = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"
  assert content["metrics"][key] == pytest.approx((1.0 + 0.25) / 2)
  assert content["mean_ap"] == content["metrics"][key]
  with open(paths["per_class"], newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["MID"] for r in rows] == list(LABEL_MAP.mids)
  assert rows[1]["DisplayName"] == "Lemon, lime and bitters"  # Quoted in the file, read back whole.
  assert rows[2]["AP"] == ""
  for row in rows:
    per_class = f"OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/{row['MID']}"
    if row["AP"]:
      assert float(row["AP"]) == content["metrics"][per_class]
    else:
      assert per_class not in content["metrics"]
  assert content["per_class"][2]["AP"] is None


def test_classification_table():
  result = classification.average_precision_dense(np.array([[0.9, 0.1, 0.2], [0.1, 0.3, 0.2]]),
                                                  np.array([[1, 0, -1], [0, -1, -1]]))
  table = report.classification_table(result, LABEL_MAP)
  assert table[0] == {"MID": "/m/a", "DisplayName": "Apple", "AP": 1.0, "Positives": 1,
                      "Negatives": 1, "Unscored": 0}
  assert table[1]["AP"] is None and table[1]["Negatives"] == 1
  assert "verified labels only" in report.describe_mode({"task": "classification",
                                                        "unknown_as_negative": False})


def test_format_table_lists_lowest_and_highest():
  table = [{"MID": f"/m/{i}", "DisplayName": f"n{i}", "AP": i / 100, "NumGroundTruth": 1, "TP": 1,
            "FP": 0} for i in range(50)] + [{"MID": "/m/x", "DisplayName": "x", "AP": None,
                                             "NumGroundTruth": 0, "TP": 0, "FP": 0}]
  text = report.format_table(table, report.DETECTION_COLUMNS, limit=3).splitlines()
  assert text[0].split() == list(report.DETECTION_COLUMNS)
  assert [line.split()[0] for line in text[1:]] == ["/m/0", "/m/1", "/m/2", "...", "/m/47", "/m/48",
                                                    "/m/49"]


def test_plot(tmp_path):
  pytest.importorskip("matplotlib")
  path = tmp_path / report.PLOT_FILE
  report.plot_precision_recall(path, _result(), LABEL_MAP, MODE)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert path.stat().st_size > 5000
