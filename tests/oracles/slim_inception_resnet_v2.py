"""Oracle: TF-slim's Inception-ResNet-v2 and the OD API's Faster R-CNN feature extractor, random init.

Usage: slim_inception_resnet_v2.py OUT_DIR HEIGHT WIDTH NUM_CROPS

Builds, in one TF1 graph and each under a variable prefix of its own (each costs ~10 s of graph
construction, so the oracle holds two):
- `InceptionResnetV2/...`: slim's classifier `inception_resnet_v2(num_classes=1001)` (VALID padding, as
  slim's ImageNet checkpoint), end points PreAuxLogits (output stride 16), Conv2d_7b_1x1 and Logits;
- `FirstStageFeatureExtractor/...` and `SecondStageFeatureExtractor/...`: the OD API's
  `FasterRCNNInceptionResnetV2FeatureExtractor` at first-stage stride 8 (inference), its RPN features on
  the image and its box-classifier features on random 17x17x1088 crops.
Every variable gets random values (batch-norm statistics, betas and biases too, so that none is a no-op);
writes OUT_DIR/model.ckpt and OUT_DIR/features.npz (inputs and end points), and OUT_DIR/variables.txt.
"""

import pathlib
import sys

from tests.oracles import shims

shims.install()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position
import tf_slim as slim  # pylint: disable=wrong-import-position
from nets import inception_resnet_v2  # pylint: disable=wrong-import-position
from object_detection.models import faster_rcnn_inception_resnet_v2_feature_extractor as od_irv2  # pylint: disable=wrong-import-position


def _randomize() -> tf.Operation:
  """Xavier weights stay; batch-norm statistics, betas and biases get random values (one op)."""
  assigns = []
  for var in tf.global_variables():
    name, shape = var.op.name, var.shape
    if name.endswith("moving_variance"):
      assigns.append(var.assign(tf.random.uniform(shape, 0.5, 1.5)))
    elif name.endswith(("moving_mean", "beta", "biases")):
      assigns.append(var.assign(tf.random.normal(shape, 0.0, 0.2)))
  return tf.group(assigns)


def main(out_dir: str, height: str, width: str, num_crops: str) -> None:
  out = pathlib.Path(out_dir)
  tf.set_random_seed(0)
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (1, int(height), int(width), 3)).astype(np.float32)
  crops = rng.uniform(0, 2, (int(num_crops), 17, 17, 1088)).astype(np.float32)
  images_in = tf.placeholder(tf.float32, image.shape)
  crops_in = tf.placeholder(tf.float32, crops.shape)
  fetches = {}
  with slim.arg_scope(inception_resnet_v2.inception_resnet_v2_arg_scope()):
    _, points = inception_resnet_v2.inception_resnet_v2(images_in, num_classes=1001, is_training=False)
    fetches["valid_16/PreAuxLogits"] = points["PreAuxLogits"]
    fetches["valid_16/Conv2d_7b_1x1"] = points["Conv2d_7b_1x1"]
    fetches["valid_16/Logits"] = points["Logits"]
  extractor = od_irv2.FasterRCNNInceptionResnetV2FeatureExtractor(
      is_training=False, first_stage_features_stride=8)
  rpn_features, _ = extractor.extract_proposal_features(images_in, scope="FirstStageFeatureExtractor")
  fetches["od_8/PreAuxLogits"] = rpn_features
  fetches["od_8/box_classifier_features"] = extractor.extract_box_classifier_features(
      crops_in, scope="SecondStageFeatureExtractor")
  randomize = _randomize()
  with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    sess.run(randomize)
    tf.train.Saver().save(sess, str(out / "model.ckpt"), write_meta_graph=False)
    values = sess.run(fetches, {images_in: image, crops_in: crops})
  np.savez(out / "features.npz", image=image, crops=crops, **values)
  (out / "variables.txt").write_text("".join(f"{v.op.name}\n" for v in tf.global_variables()))


if __name__ == "__main__":
  main(*sys.argv[1:])
