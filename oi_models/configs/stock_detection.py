"""Model Garden's stock detectors on Open Images: task configs and registered experiments.

Model Garden's `fasterrcnn_resnetfpn_coco` (Faster R-CNN, ResNet-50 FPN) and `retinanet_resnetfpn_coco`
(RetinaNet, ResNet-50 FPN) trained on this package's TFDS dataset and scored with the Open Images
metric, as mmdetection's Open Images configs train its stock detectors (published on V6 validation
with the challenge metric: Faster R-CNN R50 51.6 mAP@0.5, 60.0 with class-aware sampling; RetinaNet R50
61.5). The task configs extend Model Garden's (`MaskRCNNTask`, `RetinaNetTask`), so every stock field
keeps its meaning; the data configs add the `open_images` fields of `configs.detection.DataConfig`
(`tfds_*`, `order`: "shuffle", "class_aware" or "sequential", `seed`, `deterministic`) and the
parsers `max_num_image_labels` (image-level labels kept for the challenge metric).

What the registered experiments take from Model Garden's registered config (read from the registry,
not restated): the whole model (ResNet-50, FPN levels 2-6 / 3-7, anchors, heads, proposal and
detection settings, input 1024 / 640 px, batch norm), the losses, the init checkpoint (Model Garden's
ImageNet ResNet-50, backbone only), the augmentation (horizontal flip, scale jitter), the global
batch (64 / 256), the optimizer (SGD momentum 0.9), peak learning rate (0.12 / 0.32), its linear
warmup, the two x0.1 drops at the same fractions of training, and bfloat16 compute. What differs:

- data: `open_images` V6 (601 classes) or Challenge 2019 (500 classes); `model.num_classes` the
  dataset's boxable classes + background; group-of boxes kept in training (Model Garden skips COCO
  crowds, which have no instance boxes; Open Images group-of boxes are boxes, and the metric scores
  detections on them);
- length: 12 epochs of the 1,743,042 boxable V6 training images (mmdetection's 1x schedule, the
  published figures' length; Model Garden's COCO runs are 12 and 72 COCO epochs), validation once per
  epoch on the whole validation split;
- metric: the Open Images challenge metric (`evaluation.protocol`, "v2" by config), no COCO
  annotation file.

Model Garden's detection generators (`nms_version` "v2") unroll one NMS per class: with 601 classes
the Faster R-CNN's symbolic build in `build_model` took 570 s on a loaded 2-core CPU (55 s with 11
classes), and each evaluation step runs 601 NMS ops; the stock setting is kept.

`*_tiny` variants train on the sample dataset (`oi-make-sample`) on a CPU: a half-width ResNet-10
FPN at 128 px, float32, plain batch norm with momentum 0.9 (see `configs.detection.
oi_detector_irv2_tiny` for why), small heads, anchors halved to the sample's 6-50 px boxes, Adam,
and one batched NMS op for all classes (`nms_version` "batched", per-class NMS as "v2" does, without
its one subgraph per class in every trace).
"""

import dataclasses

from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import maskrcnn as mg_maskrcnn
from official.vision.configs import retinanet as mg_retinanet

from oi_models.configs import detection as det_cfg
from oi_models.configs import training

# Boxable training images of Open Images V5/V6 (the Challenge 2019 split trains on the same images).
TRAIN_IMAGES = 1_743_042
EPOCHS = 12
MAP_KEY = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"
STOCK = {"fasterrcnn": "fasterrcnn_resnetfpn_coco", "retinanet": "retinanet_resnetfpn_coco"}
RELEASES = {"v6": ("open_images/v6_max1024", 602),
            "challenge2019": ("open_images/challenge2019_max1024", 501)}


@dataclasses.dataclass
class FasterRCNNParser(mg_maskrcnn.Parser):
  """Model Garden's Mask R-CNN parser config; group-of boxes kept; image-level labels for the metric."""
  skip_crowd_during_training: bool = False
  max_num_image_labels: int = 100


@dataclasses.dataclass
class FasterRCNNData(det_cfg.OpenImagesSplit, mg_maskrcnn.DataConfig):
  """One split of `open_images` through Model Garden's Mask R-CNN parser (see the module docstring)."""
  parser: FasterRCNNParser = dataclasses.field(default_factory=FasterRCNNParser)


@dataclasses.dataclass
class FasterRCNNTask(mg_maskrcnn.MaskRCNNTask):
  """Model Garden's Faster R-CNN (Mask R-CNN task, no masks) on `open_images`, Open Images metric.

  `model.num_classes` 0 takes the dataset's boxable classes + background.
  """
  model: mg_maskrcnn.MaskRCNN = dataclasses.field(
      default_factory=lambda: mg_maskrcnn.MaskRCNN(num_classes=0, include_mask=False, mask_head=None,
                                                   mask_sampler=None, mask_roi_aligner=None))
  train_data: FasterRCNNData = dataclasses.field(
      default_factory=lambda: FasterRCNNData(is_training=True))
  validation_data: FasterRCNNData = dataclasses.field(
      default_factory=lambda: FasterRCNNData(is_training=False, tfds_split="validation",
                                             order="sequential", drop_remainder=False))
  evaluation: det_cfg.Evaluation = dataclasses.field(default_factory=det_cfg.Evaluation)
  use_coco_metrics: bool = False


@dataclasses.dataclass
class RetinaNetParser(mg_retinanet.Parser):
  """Model Garden's RetinaNet parser config; group-of boxes kept; image-level labels for the metric."""
  skip_crowd_during_training: bool = False
  max_num_image_labels: int = 100


@dataclasses.dataclass
class RetinaNetData(det_cfg.OpenImagesSplit, mg_retinanet.DataConfig):
  """One split of `open_images` through Model Garden's RetinaNet parser (see the module docstring)."""
  parser: RetinaNetParser = dataclasses.field(default_factory=RetinaNetParser)
  drop_remainder: bool = True


@dataclasses.dataclass
class RetinaNetTask(mg_retinanet.RetinaNetTask):
  """Model Garden's RetinaNet on `open_images`, Open Images metric.

  `model.num_classes` 0 takes the dataset's boxable classes + background (class 0, which RetinaNet's
  detection generator drops, as Model Garden's COCO config keeps an unused class 0).
  """
  model: mg_retinanet.RetinaNet = dataclasses.field(
      default_factory=lambda: mg_retinanet.RetinaNet(num_classes=0))
  train_data: RetinaNetData = dataclasses.field(
      default_factory=lambda: RetinaNetData(is_training=True))
  validation_data: RetinaNetData = dataclasses.field(
      default_factory=lambda: RetinaNetData(is_training=False, tfds_split="validation",
                                            order="sequential", drop_remainder=False))
  evaluation: det_cfg.Evaluation = dataclasses.field(default_factory=det_cfg.Evaluation)
  use_coco_metrics: bool = False


TASKS = {"fasterrcnn": FasterRCNNTask, "retinanet": RetinaNetTask}
# The stock data fields carried over (the rest of a stock DataConfig names COCO files).
_DATA_FIELDS = ("global_batch_size", "dtype")


def stretched_schedule(optimizer: optimization.OptimizationConfig, stock_steps: int,
                       train_steps: int) -> optimization.OptimizationConfig:
  """`optimizer` with its stepwise learning-rate boundaries at the same fractions of `train_steps`
  as of `stock_steps`; values, warmup and optimizer unchanged."""
  config = optimization.OptimizationConfig(optimizer.as_dict())
  stepwise = config.learning_rate.stepwise
  stepwise.boundaries = [round(b * train_steps / stock_steps) for b in stepwise.boundaries]
  return config


def _stock_experiment(kind: str, tfds_name: str, num_classes: int) -> training.ExperimentConfig:
  stock = exp_factory.get_exp_config(STOCK[kind])
  task = TASKS[kind]()
  task.override({"model": stock.task.model.as_dict(), "losses": stock.task.losses.as_dict(),
                 "init_checkpoint": stock.task.init_checkpoint,
                 "init_checkpoint_modules": stock.task.init_checkpoint_modules}, is_strict=True)
  task.model.num_classes = num_classes
  for data, stock_data in ((task.train_data, stock.task.train_data),
                           (task.validation_data, stock.task.validation_data)):
    data.tfds_name = tfds_name
    data.override({k: stock_data.as_dict()[k] for k in _DATA_FIELDS}, is_strict=True)
    data.parser.override({k: v for k, v in stock_data.parser.as_dict().items()
                          if k != "skip_crowd_during_training"}, is_strict=True)
  batch = stock.task.train_data.global_batch_size
  steps_per_epoch = round(TRAIN_IMAGES / batch)
  train_steps = EPOCHS * steps_per_epoch
  params = training.ExperimentConfig(task=task)
  params.override({
      "runtime": {"mixed_precision_dtype": stock.runtime.mixed_precision_dtype},
      "trainer": {
          "optimizer_config": stretched_schedule(stock.trainer.optimizer_config,
                                                 stock.trainer.train_steps, train_steps),
          "train_steps": train_steps, "steps_per_loop": stock.trainer.steps_per_loop,
          "summary_interval": stock.trainer.summary_interval,
          "checkpoint_interval": stock.trainer.checkpoint_interval,
          "validation_interval": steps_per_epoch, "validation_steps": -1, "max_to_keep": 5,
          "best_checkpoint_eval_metric": MAP_KEY, "best_checkpoint_metric_comp": "higher"}},
      is_strict=True)
  return params


def _register_stock(kind: str, backbone: str = "resnet50fpn"):
  for release, (tfds_name, num_classes) in RELEASES.items():
    exp_factory.register_config_factory(f"oi_detector_{kind}_{backbone}_{release}")(
        lambda t=tfds_name, n=num_classes: _stock_experiment(kind, t, n))


_register_stock("fasterrcnn")
_register_stock("retinanet")


def _tiny(kind: str, model: dict, batch: int = 4, steps: int = 1000) -> training.ExperimentConfig:
  """The stock experiment of `kind`, shrunk for the sample on a CPU (see the module docstring)."""
  params = _stock_experiment(kind, "open_images/v6_original", 0)
  data = {"tfds_name": "open_images/v6_original", "global_batch_size": batch, "dtype": "float32",
          "parser": {"aug_scale_min": 1.0, "aug_scale_max": 1.0}}
  params.override({
      "runtime": {"mixed_precision_dtype": "float32"},
      "task": {"init_checkpoint": None, "train_data": data, "validation_data": data,
               "model": {"input_size": [128, 128, 3],
                         "backbone": {"resnet": {"model_id": 10, "depth_multiplier": 0.5}},
                         "decoder": {"fpn": {"num_filters": 64}},
                         "norm_activation": {"use_sync_bn": False, "norm_momentum": 0.9},
                         **model}},
      "trainer": det_cfg.tiny_trainer(steps)}, is_strict=True)
  return params


@exp_factory.register_config_factory("oi_detector_fasterrcnn_resnetfpn_tiny")
def oi_detector_fasterrcnn_resnetfpn_tiny() -> training.ExperimentConfig:
  """Faster R-CNN, half-width ResNet-10 FPN (levels 2-6) at 128 px, 64 proposals, for the sample."""
  return _tiny("fasterrcnn", {
      "anchor": {"anchor_size": 4.0},  # 16 px at level 2 ... 256 px at level 6
      "rpn_head": {"num_filters": 64},
      "roi_generator": {"pre_nms_top_k": 512, "num_proposals": 64, "test_pre_nms_top_k": 512,
                        "test_num_proposals": 64},
      "roi_sampler": {"num_sampled_rois": 64, "foreground_fraction": 0.5},
      "detection_head": {"num_convs": 1, "num_filters": 64, "fc_dims": 256},
      "detection_generator": {"max_num_detections": 50, "nms_version": "batched"}})


@exp_factory.register_config_factory("oi_detector_retinanet_resnetfpn_tiny")
def oi_detector_retinanet_resnetfpn_tiny() -> training.ExperimentConfig:
  """RetinaNet, half-width ResNet-10 FPN (levels 3-7) at 128 px, 2-conv heads, for the sample."""
  return _tiny("retinanet", {
      "anchor": {"anchor_size": 2.0},  # 16 px at level 3 ... 256 px at level 7
      "head": {"num_convs": 2, "num_filters": 64},
      "detection_generator": {"max_num_detections": 50, "nms_version": "batched"}})
