"""The detector at reduced depth (1/1/1 repeats): builds, detects, trains through Model Garden's losses."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.losses import maskrcnn_losses
from official.vision.ops import anchor

from oi_models.configs import faster_rcnn as faster_rcnn_config
from oi_models.modeling.faster_rcnn import model as model_lib
from oi_models.modeling.faster_rcnn import rpn_head

NUM_CLASSES = 11  # 10 + background


@pytest.fixture(scope="module")
def tiny():
  config = faster_rcnn_config.tiny(NUM_CLASSES)
  return config, model_lib.build_faster_rcnn(config)


def test_tiny_config_layout(tiny):
  config, model = tiny
  assert config.backbone.inception_resnet_v2.block17_repeats == 1
  head = model.detection_head[0]
  assert head.class_predictor.kernel.shape == (1536, NUM_CLASSES)
  assert head.box_predictor.kernel.shape == (1536, (NUM_CLASSES - 1) * 4)  # no background box
  assert model.rpn_head.conv.kernel.shape == (3, 3, 1088, 512)
  assert model.rpn_head.conv.dilation_rate == (2, 2)
  assert not any("batch_normalization" in v.name for v in model.rpn_head.variables)


def test_detect_uint8_image(tiny):
  _, model = tiny
  image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
  out = model.detect(tf.constant(image))
  num = int(out["num_detections"][0])
  assert 0 < num <= 100
  boxes = out["detection_boxes"][0, :num].numpy()
  assert (boxes >= 0).all() and (boxes <= 1).all()
  assert (boxes[:, 2:] >= boxes[:, :2]).all()
  classes = out["detection_classes"][0, :num].numpy()
  assert ((classes >= 1) & (classes < NUM_CLASSES)).all()
  scores = out["detection_scores"][0, :num].numpy()
  assert (np.diff(scores) <= 0).all()


def test_same_detections_in_a_graph_of_any_image_size(tiny):
  _, model = tiny
  detect = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  for shape in ((100, 130, 3), (140, 90, 3)):
    image = tf.constant(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8))
    eager, graph = model.detect(image), detect(image)
    np.testing.assert_allclose(graph["detection_scores"], eager["detection_scores"], rtol=1e-5)
    np.testing.assert_array_equal(graph["detection_classes"], eager["detection_classes"])


def test_training_forward_feeds_model_garden_losses(tiny):
  config, model = tiny
  size = 96
  images = tf.random.uniform([2, size, size, 3], -1, 1)
  image_shape = tf.constant([[size, size], [size, 80]], tf.float32)
  gt_boxes = tf.constant([[[10, 10, 60, 50], [-1, -1, -1, -1]], [[20, 5, 90, 70], [0, 0, 30, 30]]],
                         tf.float32)
  gt_classes = tf.constant([[3, -1], [1, 7]], tf.int32)
  anchors = model.anchor_generator([size, size])
  labeler = anchor.RpnAnchorLabeler(0.7, 0.3, 256, 0.5)
  targets = [labeler.label_anchors(anchors, gt_boxes[i], tf.cast(gt_classes[i, :, None], tf.float32))
             for i in range(2)]
  with tf.GradientTape() as tape:
    outputs = model(images, image_shape, model.anchor_generator.batched([size, size], 2),
                    gt_boxes=gt_boxes, gt_classes=gt_classes, training=True)
    rpn_score = maskrcnn_losses.RpnScoreLoss(256)(
        outputs["rpn_scores"], {"3": tf.stack([t[0]["3"] for t in targets])})
    rpn_box = maskrcnn_losses.RpnBoxLoss(1.0 / 9)(
        outputs["rpn_boxes"], {"3": tf.stack([t[1]["3"] for t in targets])})
    cls = maskrcnn_losses.FastrcnnClassLoss()(outputs["class_outputs"], outputs["class_targets"])
    box = maskrcnn_losses.FastrcnnBoxLoss(1.0)(
        outputs["box_outputs"], outputs["class_targets"], outputs["box_targets"])
    loss = rpn_score + rpn_box + cls + 2.0 * box
  assert outputs["class_outputs"].shape == (2, config.roi_sampler.num_sampled_rois, NUM_CLASSES)
  assert np.isfinite(loss.numpy()) and loss > 0
  grads = tape.gradient(loss, [model.rpn_head.score_predictor.kernel,
                               model.detection_head[0].class_predictor.kernel])
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_softmax_objectness_option_builds_two_logits_per_anchor():
  head = rpn_head.ReferenceRPNHead(objectness="softmax")
  scores, boxes = head({"3": tf.zeros([1, 5, 6, 1088])})
  assert scores["3"].shape == (1, 5, 6, 24) and boxes["3"].shape == (1, 5, 6, 48)
  with pytest.raises(ValueError, match="objectness"):
    rpn_head.ReferenceRPNHead(objectness="tanh")
