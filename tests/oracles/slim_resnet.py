"""Oracle: TF-slim's own resnet_v1, randomly initialised, saved as a TF1 checkpoint with its logits.

  python tests/oracles/slim_resnet.py OUT_DIR MODEL IMAGE_SIZE [IMAGE.jpg ...]   (via tests.oracles.run)

MODEL is `resnet_v1_101` (5000 classes, `resnet_arg_scope()` as tf-slim ships it: batch norm with gamma)
or `tiny` (slim's `resnet_v1` generator on four `resnet_v1_block`s of two units, base depths 8/16/32/64,
1/8 of the real ones; 7 classes; batch norm without gamma, as slim's older arg scope built it). Every
image goes through slim's own `vgg_preprocessing` for evaluation at IMAGE_SIZE (smallest side resized
to 256 * size / 224, as the Open Images classifier's authors did); one uniform-noise image is added.

Random initialisation alone leaves batch norm at mean 0, variance 1, beta 0: a converter that mixed up
those variables would still pass. So every batch-norm variable gets random values too; the last batch
norm of each residual branch gets a larger variance so that activations stay in range through 33 units.

Writes OUT_DIR/model.ckpt* and OUT_DIR/oracle.npz (`images`: the preprocessed inputs, `logits`,
`names`: the input files).
"""

import pathlib
import sys

from tests.oracles import shims

shims.install()

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position
import tf_slim as slim  # pylint: disable=wrong-import-position
from preprocessing import vgg_preprocessing  # pylint: disable=wrong-import-position
from tf_slim.nets import resnet_utils  # pylint: disable=wrong-import-position
from tf_slim.nets import resnet_v1  # pylint: disable=wrong-import-position


def build(model: str, images):
  if model == "resnet_v1_101":
    with slim.arg_scope(resnet_v1.resnet_arg_scope()):
      return resnet_v1.resnet_v1_101(images, num_classes=5000, is_training=False)
  if model == "tiny":
    blocks = [resnet_v1.resnet_v1_block(f"block{i + 1}", base_depth=depth, num_units=2, stride=stride)
              for i, (depth, stride) in enumerate(zip((8, 16, 32, 64), (2, 2, 2, 1)))]
    with slim.arg_scope(resnet_utils.resnet_arg_scope(batch_norm_scale=False)):
      return resnet_v1.resnet_v1(images, blocks, num_classes=7, is_training=False,
                                 scope="resnet_v1_tiny")
  raise SystemExit(f"unknown model {model}")


def randomize(session, rng):
  """Random values for what initialisation leaves trivial (batch-norm statistics, betas, biases)."""
  feeds = {}
  for var in tf.global_variables():
    shape = var.shape.as_list()
    name = var.op.name
    if name.endswith("moving_variance"):
      high = 16.0 if "/conv3/" in name else 2.0
      value = rng.uniform(0.5, high, shape)
    elif name.endswith(("moving_mean", "beta", "biases")):
      value = rng.normal(0.0, 0.2, shape)
    elif name.endswith("gamma"):
      value = rng.uniform(0.5, 1.5, shape)
    else:
      continue
    feeds[var] = value.astype(np.float32)
  placeholders = {var: tf.placeholder(tf.float32, var.shape) for var in feeds}
  session.run([tf.assign(var, p) for var, p in placeholders.items()],
              {placeholders[var]: value for var, value in feeds.items()})


def main(out_dir: str, model: str, size: str, *image_files: str):
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  size = int(size)
  rng = np.random.default_rng(0)
  with tf.Graph().as_default(), tf.Session() as session:
    tf.set_random_seed(0)
    jpeg = tf.placeholder(tf.string, [])
    decoded = tf.image.decode_jpeg(jpeg, channels=3)
    preprocessed = vgg_preprocessing.preprocess_image(
        decoded, size, size, is_training=False, resize_side_min=int(256 * size / 224))
    inputs = [session.run(preprocessed, {jpeg: pathlib.Path(f).read_bytes()}) for f in image_files]
    # pylint: disable-next=protected-access
    means = [vgg_preprocessing._R_MEAN, vgg_preprocessing._G_MEAN, vgg_preprocessing._B_MEAN]
    inputs.append(rng.uniform(0, 255, (size, size, 3)) - means)
    images = np.stack(inputs).astype(np.float32)

    placeholder = tf.placeholder(tf.float32, [None, size, size, 3])
    logits, _ = build(model, placeholder)
    session.run(tf.global_variables_initializer())
    randomize(session, rng)
    values = session.run(tf.squeeze(logits, [1, 2]), {placeholder: images})
    tf.train.Saver().save(session, str(out / "model.ckpt"), write_meta_graph=False)
    num_variables = len(tf.global_variables())
  np.savez(out / "oracle.npz", images=images, logits=values,
           names=np.array([pathlib.Path(f).name for f in image_files] + ["uniform noise"]))
  print(f"{model}: {num_variables} variables, logits {values.shape}, "
        f"|logits| max {np.abs(values).max():.3g}, std {values.std():.3g}")


if __name__ == "__main__":
  main(*sys.argv[1:])
