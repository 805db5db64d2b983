"""The detector task in this process: it learns the sample, anchors are matched in the task, it reports.

The tiny Inception-ResNet-v2 Faster R-CNN (`oi_detector_irv2_tiny`: quarter width, 1/1/1 repeats,
128-160 px) is trained once for the module (`trained`) on a 200-image sample (160 train, 20
validation) and evaluated on the validation split with the challenge protocol, its detections
expanded to their ancestors (`evaluation.expand_predictions`), as a challenge submission must be: the
protocol expands the ground truth only, and the model predicts leaves (the parents' boxes exist only
through expansion), so without it the three parent classes score ~0 whatever the model.
"""

import csv
import json

import numpy as np
import pytest
from official.core import task_factory

from oi_models import evaluation
from oi_models.evaluation import report
from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from oi_models.tasks import trainer
from tests.tasks import sample_data

TINY = "oi_detector_irv2_tiny"
MAP_KEY = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"
# ~0.3 s each on 2 quiet cores (batch 4, 160 px, 16 sampled ROIs; the run 96 s alone). Validation mAP
# with detections expanded: 0.61 after 300 steps (with 32 ROIs: 0.62, and 0.46 after 200 steps).
TRAIN_STEPS = 300


def tiny_params(data_dir, **override):
  return sample_data.experiment_params(TINY, data_dir, **override)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("detector_sample")
  return root, sample_data.build(root, num_images=200)


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
  """The tiny experiment trained TRAIN_STEPS steps and evaluated: (params, model_dir)."""
  _, data_dir = sample
  model_dir = str(tmp_path_factory.mktemp("tiny_detector_run"))
  params = tiny_params(data_dir, trainer={
      "train_steps": TRAIN_STEPS, "steps_per_loop": 100, "summary_interval": 100,
      "validation_interval": TRAIN_STEPS, "checkpoint_interval": TRAIN_STEPS,
      "optimizer_config": {"learning_rate": {"cosine": {"decay_steps": TRAIN_STEPS}}}},
      task={"evaluation": {"expand_predictions": True}})
  trainer.run_experiment(params, model_dir, "train_and_eval")
  return params, model_dir


def test_tiny_detector_learns_the_sample_and_reports_consistently(trained):
  """Challenge mAP@0.5 (detections expanded) >= 0.5 on the validation split (untrained: ~0.005);
  metrics.json covers every boxable class and validation image, mAP = mean of the per-class APs."""
  params, model_dir = trained
  with open(f"{model_dir}/metrics.json") as f:
    metrics = json.load(f)
  mode = metrics["mode"]
  assert mode["global_step"] == TRAIN_STEPS and mode["split"] == "validation"
  assert mode["protocol"] == "challenge" and mode["expand_ground_truth"]
  assert mode["expand_predictions"]
  assert mode["image_level_labels"] and mode["num_images"] == 20
  assert metrics["mean_ap"] >= 0.5
  aps = [r["AP"] for r in metrics["per_class"] if r["AP"] is not None]
  assert len(aps) == mode["num_classes_evaluated"] == 10
  assert metrics["metrics"][MAP_KEY] == pytest.approx(np.mean(aps), abs=1e-9)
  assert metrics["mean_ap"] == pytest.approx(np.mean(aps), abs=1e-9)
  assert sum(r["TP"] + r["FP"] for r in metrics["per_class"]) > 0  # detections were scored


def test_per_class_table_names_every_boxable_class(trained):
  _, model_dir = trained
  with open(f"{model_dir}/per_class.csv", newline="") as f:
    table = list(csv.DictReader(f))
  names = {r["MID"]: r["DisplayName"] for r in table}
  assert len(table) == 10 and names["/m/0smp03"] == "Triangle"
  # Parents (Round shape, Polygon, Sign) have boxes only through hierarchy expansion.
  parents = [r for r in table if r["DisplayName"] in ("Round shape", "Polygon", "Sign")]
  assert parents and all(int(r["NumGroundTruth"]) > 0 for r in parents)


def test_anchor_targets_use_the_model_generator_and_skip_the_padding(trained):
  params, _ = trained
  task = task_factory.get_task(params.task)
  images, labels = next(iter(task.build_inputs(params.task.train_data)))
  anchors = task.anchor_boxes(images)
  model = task.build_model()
  expected = model.anchor_generator(images.shape[1:3])
  for level, boxes in anchors.items():
    np.testing.assert_array_equal(boxes[0].numpy(), expected[level].numpy())
  scores, _ = task.rpn_targets(anchors, labels["gt_boxes"], labels["gt_classes"],
                               labels["image_info"][:, 1, :])
  sizes = labels["image_info"][:, 1, :].numpy()
  for level, targets in scores.items():
    targets = targets.numpy()
    ymin = anchors[level].numpy()[..., 0::4]
    xmin = anchors[level].numpy()[..., 1::4]
    for b in range(targets.shape[0]):
      outside = (ymin[b] >= sizes[b, 0]) | (xmin[b] >= sizes[b, 1])
      assert (targets[b][outside] == -1).all()
      sampled = targets[b] >= 0
      assert 0 < sampled.sum() <= params.task.train_data.parser.rpn_batch_size_per_im
      if (labels["gt_classes"][b].numpy() > 0).any():  # each box is matched to its best anchor
        assert (targets[b] == 1).sum() >= 1


def test_expanding_predictions_scores_the_parents_and_leaves_the_leaves(sample, trained):
  """evaluation.expand_predictions copies each detection to its ancestors (oi-evaluate's option). The
  evaluation wrote the model's own (unexpanded) detections as the official predictions CSV: scored
  from the sample's official files by the file evaluator, with expansion they give metrics.json's
  per-class results exactly; without it the parents, which the model never predicts, keep only
  their own (few) detections, and the leaves keep their AP."""
  root, _ = sample
  _, model_dir = trained
  with open(f"{model_dir}/metrics.json") as f:
    task_metrics = json.load(f)
  by_name = lambda result: {r["DisplayName"]: r for r in result}
  expanded_in_task = by_name(task_metrics["per_class"])
  files = root / "sample"
  scored = {
      expand: evaluation.evaluate_files(
          files / "validation-annotations-bbox.csv", f"{model_dir}/{report.PREDICTIONS_FILE}",
          files / "class-descriptions-boxable.csv", hierarchy=files / "bbox_labels_600_hierarchy.json",
          image_labels=files / "validation-annotations-human-imagelabels.csv",
          expand_predictions=expand)
      for expand in (True, False)}
  expanded, plain = by_name(scored[True].table), by_name(scored[False].table)
  assert scored[True].result.mean_ap == pytest.approx(task_metrics["mean_ap"], abs=1e-9)
  for name, row in expanded_in_task.items():
    assert {k: expanded[name][k] for k in ("TP", "FP", "NumGroundTruth")} == {
        k: row[k] for k in ("TP", "FP", "NumGroundTruth")}, name
    assert expanded[name]["AP"] == pytest.approx(row["AP"], abs=1e-9), name
  for name in ("Round shape", "Polygon", "Sign"):
    assert plain[name]["TP"] + plain[name]["FP"] < expanded[name]["TP"] + expanded[name]["FP"]
    assert expanded[name]["AP"] > plain[name]["AP"]
  for name in ("Circle", "Square", "Triangle", "Ring", "Cross", "Diamond", "Dot"):
    assert expanded[name]["AP"] == pytest.approx(plain[name]["AP"], abs=1e-12)
