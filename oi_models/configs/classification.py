"""Open Images multi-label classifier: task config and registered experiments.

The task config extends Model Garden's `ImageClassificationTask` config, so every stock field (model,
losses, init checkpoint, freeze_backbone, ...) means what it means there; what is added is what Open
Images labels need: the data comes from this package's TFDS dataset `open_images` with three-state
labels, the class list is a release's or computed from the data, the loss knows unknown labels, and
the metric is the Open Images classification mAP over verified labels.

Experiments (`oi-train --experiment=...`, overridden by `configs/classification/*.yaml` and
`--params_override`):

- `oi_classifier_resnet101`: Model Garden's ResNet-101 at 299x299 over the classes with enough verified
  positives in the data, with the released classifier's schedule (RMSProp, lr 0.045 x0.94 every
  552,345 steps, staircase; decay 0.9, momentum 0.9, epsilon 1.0).
- `oi_classifier_released`: the released Open Images classifier's model (TF-slim ResNet-v1-101 layout,
  5000 classes, VGG preprocessing at 299x299), to evaluate or fine-tune a converted
  `oidv2-resnet_v1_101.ckpt`; give the release's class list in `task.class_list`.
- `oi_classifier_tiny`: a narrow ResNet-10 at 64x64 with SGD and a cosine schedule, that learns the
  sample dataset on a CPU in about a minute.
"""

import dataclasses
from typing import Optional

from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import backbones as mg_backbones
from official.vision.configs import common
from official.vision.configs import image_classification as mg_cls

from oi_models.configs import backbones
from oi_models.configs import training

PREPROCESSING = ("imagenet", "vgg")
UNKNOWN_LABELS = ("ignore", "negative")
MACHINE_LABELS = ("off", "threshold", "soft")


@dataclasses.dataclass
class DataConfig(mg_cls.DataConfig):
  """One split of the `open_images` TFDS dataset as classifier input.

  Attributes (beyond Model Garden's):
    tfds_name, tfds_data_dir, tfds_split: the built dataset (`oi-build-dataset` or `make demo`).
    order: "shuffle", "class_aware" (a class drawn uniformly, then one of its images; needs an
      ArrayRecord build) or "sequential" (one pass; the evaluation default).
    seed: the sampling order's seed.
    preprocessing: "imagenet" (Model Garden's mean/std normalization) or "vgg" (RGB minus the
      ImageNet means 123.68/116.78/103.94, no scaling: what TF-slim's ResNet-v1 was trained with).
    machine_labels: "off"; "threshold" (a machine label with confidence >= machine_label_threshold is
      a positive where no human label exists); "soft" (its confidence is the target; human labels
      win). Needs a dataset built with machine labels (a `_machine` config).
    expand_hierarchy: a positive implies its ancestors and a verified negative its descendants
      (the Open Images convention), over the dataset's hierarchy.
  """
  tfds_name: str = "open_images/v6_max1024"
  tfds_split: str = "train"
  order: str = "shuffle"
  seed: int = 0
  preprocessing: str = "imagenet"
  machine_labels: str = "off"
  machine_label_threshold: float = 0.5
  expand_hierarchy: bool = True
  is_multilabel: bool = True
  drop_remainder: bool = True
  deterministic: Optional[bool] = None


@dataclasses.dataclass
class ClassifierModel(mg_cls.ImageClassificationModel):
  """Model Garden's classification model (backbone + logits head) over this package's backbones."""
  num_classes: int = 0  # 0: the number of classes the task resolves (class list or data).
  input_size: list = dataclasses.field(default_factory=lambda: [299, 299, 3])
  backbone: backbones.Backbone = dataclasses.field(
      default_factory=lambda: backbones.Backbone(type="resnet",
                                                 resnet=mg_backbones.ResNet(model_id=101)))


@dataclasses.dataclass
class Losses(mg_cls.Losses):
  """Sigmoid cross-entropy over verified labels (see `modeling.classification_losses`).

  Attributes (beyond Model Garden's `loss_weight`, `label_smoothing`, `l2_weight_decay`):
    unknown_labels: "ignore" (masked out) or "negative" (target 0 with weight `unknown_weight`).
    unknown_weight: weight of an unknown label taken as a negative.
  """
  one_hot: bool = False
  unknown_labels: str = "ignore"
  unknown_weight: float = 0.1


@dataclasses.dataclass
class Evaluation(mg_cls.Evaluation):
  """Open Images classification mAP over verified labels, written to the model dir."""
  report_per_class: bool = True


@dataclasses.dataclass
class ClassifierTask(mg_cls.ImageClassificationTask):
  """Open Images image-level classifier.

  Attributes (beyond Model Garden's):
    class_list: a release's class list (class-descriptions CSV, label-map .pbtxt, or one MID per
      line); empty: the image-level classes with at least `min_train_positives` verified positives in
      the train split and `min_validation_positives` in the validation split. The list used is
      written to `<model_dir>/classes.csv`, and a model dir that has one keeps it (resume).
  """
  model: ClassifierModel = dataclasses.field(default_factory=ClassifierModel)
  train_data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=False, tfds_split="validation",
                                         order="sequential", machine_labels="off",
                                         drop_remainder=False))
  losses: Losses = dataclasses.field(default_factory=Losses)
  evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
  class_list: str = ""
  min_train_positives: int = 30
  min_validation_positives: int = 5


def released_schedule() -> optimization.OptimizationConfig:
  """The released classifier's optimizer: RMSProp, 0.045 x0.94 every 552,345 steps (staircase)."""
  return optimization.OptimizationConfig({
      "optimizer": {"type": "rmsprop",
                    "rmsprop": {"rho": 0.9, "momentum": 0.9, "epsilon": 1.0}},
      "learning_rate": {"type": "exponential",
                        "exponential": {"initial_learning_rate": 0.045, "decay_steps": 552345,
                                        "decay_rate": 0.94, "staircase": True}},
  })


def sgd_cosine(learning_rate: float, decay_steps: int, warmup_steps: int = 0,
               momentum: float = 0.9) -> optimization.OptimizationConfig:
  """SGD with momentum and a cosine decay to 0 after a linear warmup."""
  config = {"optimizer": {"type": "sgd", "sgd": {"momentum": momentum}},
            "learning_rate": {"type": "cosine",
                              "cosine": {"initial_learning_rate": learning_rate,
                                         "decay_steps": decay_steps}}}
  if warmup_steps:
    config["warmup"] = {"type": "linear", "linear": {"warmup_steps": warmup_steps}}
  return optimization.OptimizationConfig(config)


def _experiment(task: ClassifierTask, trainer: dict) -> training.ExperimentConfig:
  params = training.ExperimentConfig(task=task)
  params.override({"trainer": trainer}, is_strict=True)
  return params


@exp_factory.register_config_factory("oi_classifier_resnet101")
def oi_classifier_resnet101() -> training.ExperimentConfig:
  """Model Garden's ResNet-101, 299x299, over the data's trainable classes, released schedule."""
  batch = 32
  task = ClassifierTask(
      model=ClassifierModel(),
      train_data=DataConfig(is_training=True, global_batch_size=batch),
      validation_data=DataConfig(is_training=False, tfds_split="validation", order="sequential",
                                 global_batch_size=batch, drop_remainder=False))
  return _experiment(task, {
      "optimizer_config": released_schedule(), "train_steps": 10_000_000,
      "steps_per_loop": 100, "summary_interval": 100, "checkpoint_interval": 5000,
      "validation_interval": 50_000, "validation_steps": -1, "max_to_keep": 5,
      "best_checkpoint_eval_metric": "OpenImagesClassification_mAP"})


@exp_factory.register_config_factory("oi_classifier_released")
def oi_classifier_released() -> training.ExperimentConfig:
  """The released classifier's model: slim ResNet-v1-101, 5000 classes, VGG input at 299x299."""
  params = oi_classifier_resnet101()
  params.override({"task": {
      "model": {"num_classes": 5000,
                "backbone": {"type": "slim_resnet_v1", "slim_resnet_v1": {"model_id": 101}}},
      "train_data": {"preprocessing": "vgg"},
      "validation_data": {"preprocessing": "vgg"},
  }}, is_strict=True)
  return params


@exp_factory.register_config_factory("oi_classifier_tiny")
def oi_classifier_tiny() -> training.ExperimentConfig:
  """A narrow ResNet-10 at 64x64 that learns the sample dataset (`oi-make-sample`) on a CPU."""
  batch, steps = 16, 300
  data = dict(tfds_name="open_images/v6_original", global_batch_size=batch,
              crop_area_range=(0.5, 1.0), center_crop_fraction=1.0, dtype="float32")
  task = ClassifierTask(
      model=ClassifierModel(
          input_size=[64, 64, 3],
          backbone=backbones.Backbone(type="resnet", resnet=mg_backbones.ResNet(
              model_id=10, depth_multiplier=0.25)),
          norm_activation=common.NormActivation(use_sync_bn=False, norm_momentum=0.9)),
      train_data=DataConfig(is_training=True, **data),
      validation_data=DataConfig(is_training=False, tfds_split="validation", order="sequential",
                                 drop_remainder=False, **data),
      min_train_positives=5, min_validation_positives=1)
  return _experiment(task, {
      "optimizer_config": sgd_cosine(0.1, steps, warmup_steps=20), "train_steps": steps,
      "steps_per_loop": 50, "summary_interval": 50, "checkpoint_interval": 100,
      "validation_interval": steps, "validation_steps": -1, "max_to_keep": 3})
