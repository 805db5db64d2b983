"""The reference detector's training step, timed: the TF Object Detection API's Faster R-CNN
Inception-ResNet-v2 atrous (the OID V4 pipeline of `od_faster_rcnn.py`) built with `is_training=True`,
its losses (both stages) minimised by momentum 0.9 with gradients clipped to global norm 10, as the
reference's `faster_rcnn_inception_resnet_v2_atrous_oid_v4.config` trains.

`python od_faster_rcnn_train.py OUT.npz --image IMAGE.npy --boxes BOXES.npy --classes CLASSES.npy
[--num_classes 601 --min_dimension 600 --max_dimension 1024 --max_proposals 300
--second_stage_batch_size 64 --steps 2]`

BOXES [N, 4] normalised (ymin, xmin, ymax, xmax), CLASSES [N] 0-based. Writes `seconds_per_step` (median
of --steps steps after one warm-up step), `first_step_seconds`, `build_seconds`, `peak_rss_mb` and the
losses of the last step.
"""

import argparse
import pathlib
import resource
import sys
import time

if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.oracles import od_faster_rcnn  # pylint: disable=wrong-import-position
from tests.oracles import shims  # pylint: disable=wrong-import-position


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("out", type=pathlib.Path)
  parser.add_argument("--image", type=pathlib.Path, required=True)
  parser.add_argument("--boxes", type=pathlib.Path, required=True)
  parser.add_argument("--classes", type=pathlib.Path, required=True)
  parser.add_argument("--num_classes", type=int, default=601)
  parser.add_argument("--min_dimension", type=int, default=600)
  parser.add_argument("--max_dimension", type=int, default=1024)
  parser.add_argument("--max_proposals", type=int, default=300)
  parser.add_argument("--second_stage_batch_size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=2)
  args = parser.parse_args(argv)

  shims.install()
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow.compat.v1 as tf1  # pylint: disable=import-outside-toplevel
  from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
  from object_detection.builders import model_builder  # pylint: disable=import-outside-toplevel
  from object_detection.protos import pipeline_pb2  # pylint: disable=import-outside-toplevel

  image = np.load(args.image)
  boxes = np.load(args.boxes).astype(np.float32)
  classes = np.load(args.classes).astype(np.int64)
  pipeline = text_format.Parse(od_faster_rcnn.PIPELINE % vars(args),
                               pipeline_pb2.TrainEvalPipelineConfig())
  pipeline.model.faster_rcnn.second_stage_batch_size = args.second_stage_batch_size

  start = time.perf_counter()
  tf1.set_random_seed(args.seed)
  model = model_builder.build(pipeline.model, is_training=True)
  model.provide_groundtruth(
      groundtruth_boxes_list=[tf1.constant(boxes)],
      groundtruth_classes_list=[tf1.one_hot(tf1.constant(classes), args.num_classes)])
  image_in = tf1.placeholder(tf1.uint8, [1, None, None, 3], name="image")
  preprocessed, true_shapes = model.preprocess(tf1.cast(image_in, tf1.float32))
  predictions = model.predict(preprocessed, true_shapes)
  losses = model.loss(predictions, true_shapes)
  total = tf1.add_n(list(losses.values()))
  optimizer = tf1.train.MomentumOptimizer(6e-5, momentum=0.9)
  gradients, variables = zip(*optimizer.compute_gradients(total))
  gradients, _ = tf1.clip_by_global_norm(gradients, 10.0)
  # As the OD API's trainer: batch norm updates (none when its batch norm is frozen, as here) run with
  # the step.
  train_op = tf1.group(optimizer.apply_gradients(zip(gradients, variables)),
                       *tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
  build_seconds = time.perf_counter() - start

  feed = {image_in: image[None]}
  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    # Every run fetches the same tensors: TF1 prunes and optimises the graph anew for each distinct
    # set of fetches (tens of seconds for this graph), which the first run pays once.
    fetches = [train_op, losses]
    tick = time.perf_counter()
    sess.run(fetches, feed)
    first = time.perf_counter() - tick
    times = []
    for _ in range(args.steps):
      tick = time.perf_counter()
      _, values = sess.run(fetches, feed)
      times.append(time.perf_counter() - tick)
  np.savez(args.out, seconds_per_step=np.median(times), first_step_seconds=first,
           build_seconds=build_seconds,
           peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           **{k.replace("/", "_"): v for k, v in values.items()})


if __name__ == "__main__":
  main()
