"""Open Images detectors: task config and registered experiments.

The task config extends Model Garden's `MaskRCNNTask` config (which runs Faster R-CNN when
`include_mask` is off), so the stock fields (losses, init checkpoint, freeze_backbone, ...) keep their
meaning. What changes: the data comes from this package's TFDS dataset `open_images` through
`dataloaders.detection_input` (keep-aspect resize, shuffled or class-aware order), the model is the
package's Faster R-CNN Inception-ResNet-v2 (`configs.faster_rcnn`), the first-stage anchors are matched
in the task (train and validation) with the model's own anchor generator, and the metric is the Open
Images detection mAP (challenge protocol, or V2) with a per-class table.

Experiments (`oi-train --experiment=...`, overridden by `configs/detection/*.yaml` and
`--params_override`):

- `oi_detector_irv2_v6` (and `_v4`, `_v5`, `_v7`): the reference detector of the TF Object Detection
  API's `faster_rcnn_inception_resnet_v2_atrous_oid_v4.config`, 601 classes: keep-aspect 600/1024,
  batch 1 per replica, horizontal flip, momentum 0.9, learning rate 6e-5 (x0.1 at 6M and 7M steps),
  gradient clipping by norm 10, 10M steps, losses 2.0 localisation / 1.0 classification in both stages.
- `oi_detector_irv2_challenge2019`: the same on the Challenge 2019 500-class split.
- `oi_detector_irv2_tiny`: quarter-width Inception-ResNet-v2, 1/1/1 repeats, images 128-160 px, anchors
  16-128 px, 32 proposals and sampled ROIs, 9x9 crops, batch 4, Adam, that learns the sample dataset
  (`oi-make-sample`) on a CPU in a few minutes.
"""

import dataclasses
from typing import Optional

from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import maskrcnn as mg_maskrcnn

from oi_models.configs import faster_rcnn
from oi_models.configs import training

PROTOCOLS = ("challenge", "v2")
ORDERS = ("shuffle", "class_aware", "sequential")


@dataclasses.dataclass
class Parser(mg_maskrcnn.Parser):
  """Model Garden's Mask R-CNN parser fields that `detection_input.Parser` uses, plus its own.

  The resize sizes come from the model's `preprocessing` (min/max dimension), so that training, the
  evaluation and `model.detect` see images of the same scale. `padded_size` is the static image size
  of a batch ([] = max_dimension both ways).
  """
  skip_crowd_during_training: bool = False  # the reference trained on group-of boxes as on others
  padded_size: list = dataclasses.field(default_factory=list)
  max_num_image_labels: int = 100
  resize_backend: str = "opencv"


@dataclasses.dataclass
class OpenImagesSplit(hyperparams.Config):
  """The fields that point a detector's data config (this package's or a stock one) at `open_images`.

  Attributes:
    tfds_name, tfds_data_dir, tfds_split: the built dataset (`oi-build-dataset` or `make demo`).
    order: "shuffle", "class_aware" (a class drawn uniformly, then one of its images; needs an
      ArrayRecord build) or "sequential" (one pass; the evaluation default).
    seed: the sampling order's seed.
  """
  tfds_name: str = "open_images/v6_max1024"
  tfds_data_dir: str = ""
  tfds_split: str = "train"
  order: str = "shuffle"
  seed: int = 0
  dtype: str = "float32"
  deterministic: Optional[bool] = None


@dataclasses.dataclass
class DataConfig(OpenImagesSplit, mg_maskrcnn.DataConfig):
  """One split of the `open_images` TFDS dataset as detector input (`OpenImagesSplit`'s fields)."""
  parser: Parser = dataclasses.field(default_factory=Parser)


@dataclasses.dataclass
class Losses(mg_maskrcnn.Losses):
  """The reference's losses: smooth L1 (delta 1) weighted 2.0, cross-entropy weighted 1.0, both stages.

  Normalised as the TF Object Detection API does (see `modeling.detection_losses`): both RPN losses by
  the number of anchors sampled in each image, both second-stage losses by the number of sampled ROIs.
  """
  rpn_huber_loss_delta: float = 1.0
  frcnn_huber_loss_delta: float = 1.0
  rpn_box_weight: float = 2.0
  frcnn_box_weight: float = 2.0


@dataclasses.dataclass
class Evaluation(hyperparams.Config):
  """Open Images detection metric: protocol "challenge" or "v2", IoU (and group-of IoA) threshold."""
  protocol: str = "challenge"
  iou_threshold: float = 0.5
  expand_hierarchy: bool = True  # ground truth to ancestors, as the challenge protocol evaluates it
  # Each detection also to its ancestor classes (oi-evaluate --expand_predictions; not the official
  # protocol, which scores the parents' detections a model makes itself).
  expand_predictions: bool = False


def model_num_classes(configured: int, num_listed: int, source: str) -> int:
  """`model.num_classes` of a detector over `num_listed` classes: those + background (class 0).

  `configured` 0 (the experiments' default) takes it from the class list; any other value must agree.
  """
  num_classes = num_listed + 1
  if configured not in (0, num_classes):
    raise ValueError(f"model.num_classes is {configured} but {source} has {num_listed} classes "
                     f"(+1 background = {num_classes})")
  return num_classes


@dataclasses.dataclass
class DetectorTask(mg_maskrcnn.MaskRCNNTask):
  """Open Images detector on Model Garden's Mask R-CNN task (no masks).

  `class_list`: the model's classes in output order (a class-descriptions CSV, a label map .pbtxt or
  one MID per line), each a boxable class of the dataset, which is mapped onto them by MID (boxes of
  other classes are left out); empty: the dataset's boxable classes. With an `init_checkpoint` that has
  a class list beside it (oi-convert-checkpoint's `class_list.csv`, a model dir's `classes.csv`) and
  modules "all", every class must be one of the checkpoint's: a subset keeps the checkpoint's
  predictor rows of its classes. `model.num_classes` 0 takes the class list's size + background.
  """
  class_list: str = ""
  model: faster_rcnn.FasterRCNN = dataclasses.field(
      default_factory=lambda: faster_rcnn.FasterRCNN(num_classes=0))
  train_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=True, global_batch_size=1))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=False, tfds_split="validation",
                                         order="sequential", drop_remainder=False,
                                         global_batch_size=1))
  losses: Losses = dataclasses.field(default_factory=Losses)
  evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
  use_coco_metrics: bool = False
  init_checkpoint_modules: str = "all"


def reference_schedule(train_steps: int = 10_000_000) -> optimization.OptimizationConfig:
  """The reference's optimizer: momentum 0.9, 6e-5 then 6e-6 from step 6M and 6e-7 from 7M, clip 10."""
  return optimization.OptimizationConfig({
      "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9, "global_clipnorm": 10.0}},
      "learning_rate": {"type": "stepwise", "stepwise": {
          "boundaries": [int(0.6 * train_steps), int(0.7 * train_steps)],
          "values": [6e-5, 6e-6, 6e-7]}},
  })


def tiny_trainer(steps: int) -> dict:
  """The tiny experiments' trainer: Adam with cosine decay, learns the sample in a few hundred steps."""
  return {
      "optimizer_config": optimization.OptimizationConfig({
          "optimizer": {"type": "adam", "adam": {"global_clipnorm": 10.0}},
          "learning_rate": {"type": "cosine", "cosine": {"initial_learning_rate": 2e-3,
                                                         "decay_steps": steps}},
          "warmup": {"type": "linear", "linear": {"warmup_steps": 20}}}),
      "train_steps": steps, "steps_per_loop": 50, "summary_interval": 50,
      "checkpoint_interval": 200, "validation_interval": steps, "validation_steps": -1,
      "max_to_keep": 3}


def _experiment(task: DetectorTask, trainer: dict) -> training.ExperimentConfig:
  params = training.ExperimentConfig(task=task)
  params.override({"trainer": trainer}, is_strict=True)
  return params


def _reference(tfds_name: str, num_classes: int) -> training.ExperimentConfig:
  task = DetectorTask(model=faster_rcnn.FasterRCNN(num_classes=num_classes))
  task.train_data.tfds_name = task.validation_data.tfds_name = tfds_name
  task.train_data.parser.aug_rand_hflip = True
  return _experiment(task, {
      "optimizer_config": reference_schedule(), "train_steps": 10_000_000,
      "steps_per_loop": 100, "summary_interval": 100, "checkpoint_interval": 10_000,
      "validation_interval": 500_000, "validation_steps": -1, "max_to_keep": 5,
      "best_checkpoint_eval_metric": "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU",
      "best_checkpoint_metric_comp": "higher"})


for _release in ("v4", "v5", "v6", "v7"):
  exp_factory.register_config_factory(f"oi_detector_irv2_{_release}")(
      lambda release=_release: _reference(f"open_images/{release}_max1024", 602))


@exp_factory.register_config_factory("oi_detector_irv2_challenge2019")
def oi_detector_irv2_challenge2019() -> training.ExperimentConfig:
  """The reference detector on the Challenge 2019 split (500 classes + background)."""
  return _reference("open_images/challenge2019_max1024", 501)


@exp_factory.register_config_factory("oi_detector_irv2_tiny")
def oi_detector_irv2_tiny() -> training.ExperimentConfig:
  """A quarter-width 1/1/1-repeat Inception-ResNet-v2 Faster R-CNN at 128-160 px for the sample on a CPU.

  Sized for the sample's shapes (8-60 px boxes on 160 px images, some whole-image squares): anchors
  16-128 px (the reference's 64-512 px find no match above IoU 0.7 for most of them), batch norm
  momentum 0.9 (the reference's 0.997 leaves the moving statistics near their initial values after a
  few hundred steps, so evaluation would normalise with statistics training never saw), ground-truth
  boxes mixed into the second stage's ROIs (Model Garden's default; the reference does not) and half
  of the 16 sampled ROIs of the 32 proposals foreground, so the second stage sees positives before
  the RPN finds them (16 ROIs: the tail runs on each, 62% of a step at 32; 300 steps 96 s against
  138 s alone, validation mAP 0.61 and 0.62).
  """
  batch, steps = 4, 1000
  model = faster_rcnn.tiny(num_classes=0)
  model.backbone.inception_resnet_v2.depth_multiplier = 0.25
  model.preprocessing.min_dimension, model.preprocessing.max_dimension = 128, 160
  model.anchor.anchor_size = 32.0
  model.anchor.scales = [0.5, 1.0, 2.0, 4.0]
  model.norm_activation.norm_momentum = 0.9
  model.roi_generator.num_proposals = 32
  model.roi_sampler.num_sampled_rois = 16
  model.roi_sampler.foreground_fraction = 0.5
  model.roi_sampler.mix_gt_boxes = True
  model.roi_aligner.crop_size = 9  # the tail on 9x9 crops: 3.6x fewer pixels than the reference's 17
  model.rpn_head.num_filters = 64
  model.detection_generator.max_num_detections = 50
  task = DetectorTask(model=model)
  for data in (task.train_data, task.validation_data):
    data.tfds_name = "open_images/v6_original"
    data.global_batch_size = batch
    data.parser.rpn_batch_size_per_im = 64
  task.train_data.parser.aug_rand_hflip = True
  return _experiment(task, tiny_trainer(steps))
