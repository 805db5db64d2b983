"""Evaluation outputs: the official metrics dictionary, a per-class table, JSON/CSV files, a PR plot.

Every output records which mode produced it (task, protocol, image-level labels used or not, hierarchy
expansion of ground truth and predictions, class list), because the same predictions give different
numbers under the Challenge and V2 protocols or with and without expansion, and a bare mAP invites
comparing the incomparable. The per-class table is what one reads to see *why* a mAP is what it is:
AP next to the number of ground-truth instances, true and false positives.

JSON holds NaN as null (AP of a class without ground truth), since NaN is not JSON. matplotlib is
imported only when a plot is asked for; it comes with the `plots` extra.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Optional, Sequence

import numpy as np

from oi_models import labels as labels_lib

METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"
PREDICTIONS_FILE = "predictions.csv"  # a detector evaluation's detections, official CSV
PLOT_FILE = "pr.png"

DETECTION_COLUMNS = ("MID", "DisplayName", "AP", "NumGroundTruth", "TP", "FP")
CLASSIFICATION_COLUMNS = ("MID", "DisplayName", "AP", "Positives", "Negatives", "Unscored")


def _number(value):
  """A float for JSON/CSV: None for NaN; ints stay ints."""
  if isinstance(value, (np.integer, int)):
    return int(value)
  value = float(value)
  return None if math.isnan(value) else value


def detection_table(result, label_map: labels_lib.LabelMap) -> list[dict]:
  """One row per class of the class list: MID, display name, AP (None without ground truth),
  ground-truth instances, true and false positives."""
  return [{"MID": mid, "DisplayName": name, "AP": _number(result.ap[c]),
           "NumGroundTruth": int(result.num_gt[c]), "TP": int(result.num_tp[c]),
           "FP": int(result.num_fp[c])}
          for c, (mid, name) in enumerate(zip(label_map.mids, label_map.names))]


def classification_table(result, label_map: labels_lib.LabelMap) -> list[dict]:
  """One row per class: MID, display name, AP (None without a positive), positives, negatives and
  unscored entries in its ranking."""
  return [{"MID": mid, "DisplayName": name, "AP": _number(result.ap[c]),
           "Positives": int(result.num_positives[c]), "Negatives": int(result.num_negatives[c]),
           "Unscored": int(result.num_unscored[c])}
          for c, (mid, name) in enumerate(zip(label_map.mids, label_map.names))]


# Mode flags and how describe_mode words them when true / false.
_MODE_WORDS = (
    ("image_level_labels", "with image-level labels", "without image-level labels"),
    ("unknown_as_negative", "unknown labels as negatives", "verified labels only"),
    ("expand_ground_truth", "ground truth expanded", "ground truth not expanded"),
    ("expand_predictions", "predictions expanded", "predictions not expanded"),
)


def describe_mode(mode: dict) -> str:
  """A one-line account of the mode, e.g. 'detection, challenge protocol, with image-level labels'."""
  parts = [mode.get("task", "detection")]
  if "protocol" in mode:
    parts.append(f"{mode['protocol']} protocol")
  for key, yes, no in _MODE_WORDS:
    if key in mode:
      parts.append(yes if mode[key] else no)
    if key == "expand_ground_truth":
      already = [f"{role} {status.split(':')[0]}"
                 for role, status in mode.get("ground_truth_expansion", {}).items()
                 if status.startswith("already")]
      if already:
        parts.append(" and ".join(already))
  return ", ".join(parts)


def write_official_csv(path, metrics: dict) -> None:
  """Writes `metric,value` rows as the TF OD API's `oid_challenge_evaluation --output_metrics` does.

  `metrics` is `DetectionResult.metrics(mids, every_class=True)`: mAP first, then every class of the
  label map in id order (`nan` for a class without ground truth); values as Python's `str` writes
  them, as the official `io_utils.write_csv` does.
  """
  with open(path, "w", encoding="utf-8", newline="") as f:
    csv.writer(f, delimiter=",").writerows([name, str(value)] for name, value in metrics.items())


def _clean(value):
  """Recursively replaces NaN floats by None so the JSON is standard."""
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return _number(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


def summary_dict(metrics: dict, mean_ap: float, table: list[dict], mode: dict,
                 inputs: Optional[dict] = None, notes: Sequence[str] = ()) -> dict:
  """The content of metrics.json."""
  mode = dict(mode, description=describe_mode(mode))
  return _clean({"mode": mode, "mean_ap": mean_ap, "metrics": metrics, "per_class": table,
                 "inputs": inputs or {}, "notes": list(notes)})


def write_json(path, content: dict) -> None:
  """Writes `content`, already JSON-ready (a `summary_dict`, cleaned there): a NaN raises."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(content, f, indent=1, allow_nan=False, ensure_ascii=False)
    f.write("\n")


def write_csv(path, table: list[dict], columns: Sequence[str]) -> None:
  """Per-class CSV with a header; an empty AP field means no ground truth (or no positive)."""
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in table:
      writer.writerow({k: ("" if row[k] is None else row[k]) for k in columns})


def write(output_dir, summary: dict, columns: Sequence[str]) -> dict:
  """Writes metrics.json and per_class.csv into `output_dir`; returns {name: path}."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {"metrics": os.path.join(output_dir, METRICS_FILE),
           "per_class": os.path.join(output_dir, PER_CLASS_FILE)}
  write_json(paths["metrics"], summary)
  write_csv(paths["per_class"], summary["per_class"], columns)
  return paths


def plot_precision_recall(path, result, label_map: labels_lib.LabelMap, mode: dict,
                          highlight: int = 5) -> None:
  """Draws every class's precision/recall curve faintly and the `highlight` best and worst boldly.

  Curves are drawn with precision made monotone (the envelope AP integrates), so the plot shows the
  areas the numbers are.
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("the precision/recall plot needs matplotlib: "
                      "pip install 'oi_models[plots]'") from e
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
  evaluated = [c for c in range(len(result.ap)) if not math.isnan(result.ap[c])]
  ranked = sorted(evaluated, key=lambda c: result.ap[c])
  bold = set(ranked[:highlight] + ranked[-highlight:])
  for c in evaluated:
    precision, recall = result.precision[c], result.recall[c]
    if not len(precision):
      continue
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall, envelope = np.concatenate([[0.0], recall]), np.concatenate([envelope[:1], envelope])
    if len(recall) > 400:  # Enough points for the eye; keeps big evaluations fast to draw.
      keep = np.unique(np.linspace(0, len(recall) - 1, 400).astype(int))
      recall, envelope = recall[keep], envelope[keep]
    if c in bold:
      ax.step(recall, envelope, where="post", linewidth=1.5,
              label=f"{label_map.names[c]} ({result.ap[c]:.3f})")
    else:
      ax.step(recall, envelope, where="post", color="0.6", alpha=0.3, linewidth=0.6)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision (monotone envelope)")
  ax.set_title(f"mAP {result.mean_ap:.4f}\n{describe_mode(mode)}", fontsize=8)
  if bold:
    ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def format_table(table: list[dict], columns: Sequence[str], limit: int = 10) -> str:
  """A short text table: the `limit` lowest-AP and highest-AP classes that have an AP."""
  rows = [r for r in table if r["AP"] is not None]
  rows.sort(key=lambda r: r["AP"])
  if len(rows) > 2 * limit:
    rows = rows[:limit] + [None] + rows[-limit:]
  widths = {c: max([len(c)] + [len(_cell(r[c], c)) for r in rows if r]) for c in columns}
  widths["DisplayName"] = min(widths.get("DisplayName", 0), 32)
  lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
  for row in rows:
    if row is None:
      lines.append("...")
      continue
    lines.append("  ".join(_cell(row[c], c)[:widths[c]].ljust(widths[c]) for c in columns))
  return "\n".join(lines)


def _cell(value, column: str) -> str:
  if value is None:
    return ""
  if column == "AP":
    return f"{value:.4f}"
  return f"{value:g}" if isinstance(value, float) else str(value)
