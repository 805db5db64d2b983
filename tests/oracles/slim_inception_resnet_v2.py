"""Oracle: TF-slim's Inception-ResNet-v2 classifier, random init.

Usage: slim_inception_resnet_v2.py OUT_DIR HEIGHT WIDTH

Builds slim's classifier `inception_resnet_v2(num_classes=1001)` (VALID padding, as slim's ImageNet
checkpoint) in a TF1 graph, end points PreAuxLogits (output stride 16), Conv2d_7b_1x1 and Logits. (The
OD API's Faster R-CNN feature extractor, the other layout of these weights, is compared in the whole
reference detector by tests/modeling/faster_rcnn/test_parity.py.)
Every variable gets random values (batch-norm statistics, betas and biases too, so that none is a no-op);
writes OUT_DIR/model.ckpt, OUT_DIR/features.npz (the input and the end points) and OUT_DIR/variables.txt.
"""

import pathlib
import sys

from tests.oracles import shims

shims.install()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position
import tf_slim as slim  # pylint: disable=wrong-import-position
from nets import inception_resnet_v2  # pylint: disable=wrong-import-position


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


def main(out_dir: str, height: str, width: str) -> None:
  out = pathlib.Path(out_dir)
  tf.set_random_seed(0)
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (1, int(height), int(width), 3)).astype(np.float32)
  images_in = tf.placeholder(tf.float32, image.shape)
  fetches = {}
  with slim.arg_scope(inception_resnet_v2.inception_resnet_v2_arg_scope()):
    _, points = inception_resnet_v2.inception_resnet_v2(images_in, num_classes=1001, is_training=False)
    fetches["valid_16/PreAuxLogits"] = points["PreAuxLogits"]
    fetches["valid_16/Conv2d_7b_1x1"] = points["Conv2d_7b_1x1"]
    fetches["valid_16/Logits"] = points["Logits"]
  randomize = _randomize()
  with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    sess.run(randomize)
    tf.train.Saver().save(sess, str(out / "model.ckpt"), write_meta_graph=False)
    values = sess.run(fetches, {images_in: image})
  np.savez(out / "features.npz", image=image, **values)
  (out / "variables.txt").write_text("".join(f"{v.op.name}\n" for v in tf.global_variables()))


if __name__ == "__main__":
  main(*sys.argv[1:])
