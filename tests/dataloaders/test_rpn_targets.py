"""One anchor generator: the parser's RPN targets (`rpn_targets=True`, Model Garden's Faster R-CNN task
layout) are the detector task's own (anchors and matching in its step), on the built sample.

Both take the model's generator (`modeling.faster_rcnn.model.anchor_generator`) and the proposals'
box coder. With a sampling budget larger than the anchor count, the balanced sampler keeps every
positive and negative, so the two assignments are compared exactly rather than in distribution.
"""

import numpy as np
import pytest
import tensorflow as tf
from official.core import task_factory

from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples
from oi_models.modeling.faster_rcnn import model as model_lib
from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from tests.tasks import sample_data

BATCH = 4
EVERY_ANCHOR = 1_000_000  # rpn_batch_size_per_im past the anchor count: no random subsampling


@pytest.fixture(scope="module")
def task_and_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("rpn_targets_sample")
  data_dir = sample_data.build(root, num_images=16)
  params = sample_data.experiment_params("oi_detector_irv2_tiny", data_dir, task={
      "train_data": {"parser": {"rpn_batch_size_per_im": EVERY_ANCHOR, "aug_rand_hflip": False}}})
  task = task_factory.get_task(params.task)
  return task, params.task


def _parser(task, config, rpn_targets=True):
  model = config.model
  return detection_input.Parser(
      short_side=model.preprocessing.min_dimension, long_side=model.preprocessing.max_dimension,
      min_level=model.min_level, max_level=model.max_level,
      anchor_generator=model_lib.anchor_generator(model),
      box_coder_weights=model.roi_generator.decode_weights,
      rpn_batch_size_per_im=EVERY_ANCHOR, aug_rand_hflip=False, rpn_targets=rpn_targets,
      normalize=False)


def _batch(task, config, is_training):
  builder = task._builder(config.train_data)  # pylint: disable=protected-access
  stream = examples.load(builder, "train", order="sequential", deterministic=True)
  ds = detection_input.dataset(stream, detection_input.Decoder.from_features(builder.info.features),
                               _parser(task, config), is_training=is_training, batch_size=BATCH,
                               deterministic=True)
  return next(iter(ds))


def test_parser_targets_are_the_tasks(task_and_data):
  task, config = task_and_data
  images, labels = _batch(task, config, is_training=True)
  anchors = task.anchor_boxes(images)
  assert set(anchors) == set(labels["anchor_boxes"]) == {"3"}
  np.testing.assert_array_equal(labels["anchor_boxes"]["3"], anchors["3"])
  scores, boxes = task.rpn_targets(anchors, labels["gt_boxes"], labels["gt_classes"],
                                   labels["image_info"][:, 1, :])
  got = labels["rpn_score_targets"]["3"].numpy()
  np.testing.assert_array_equal(got, scores["3"])
  positive = got == 1
  assert positive.any() and (got == 0).any() and (got == -1).any()  # padding and the IoU band
  # Box targets of the anchors that train them (positives; the rest are masked by the loss).
  mask = np.repeat(positive, 4, axis=-1)
  np.testing.assert_allclose(labels["rpn_box_targets"]["3"].numpy()[mask], boxes["3"].numpy()[mask],
                             atol=1e-5)


def test_eval_anchors_are_the_models(task_and_data):
  task, config = task_and_data
  images, labels = _batch(task, config, is_training=False)
  model_anchors = model_lib.anchor_generator(config.model)(images.shape[1:3])
  np.testing.assert_array_equal(labels["anchor_boxes"]["3"][0], model_anchors["3"])
  np.testing.assert_array_equal(labels["anchor_boxes"]["3"], task.anchor_boxes(images)["3"])


def test_parser_without_targets_leaves_anchors_to_the_model(task_and_data):
  task, config = task_and_data
  parser = _parser(task, config, rpn_targets=False)
  image = tf.zeros([100, 150, 3], tf.uint8)
  decoded = {"image": image, "groundtruth_classes": tf.constant([1], tf.int64),
             "groundtruth_boxes": tf.constant([[0.1, 0.1, 0.5, 0.5]]),
             "groundtruth_is_crowd": tf.constant([False])}
  _, labels = parser.parse_fn(is_training=True)(decoded)
  assert not {"anchor_boxes", "rpn_score_targets", "rpn_box_targets"} & set(labels)
