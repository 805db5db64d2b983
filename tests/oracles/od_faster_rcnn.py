"""The reference detector, run as an oracle: the TF Object Detection API's Faster R-CNN Inception-ResNet-v2
atrous with the Open Images V4 pipeline settings (`faster_rcnn_inception_resnet_v2_atrous_oid_v4.config`).

`python od_faster_rcnn.py OUT_DIR --image IMAGE.npy [--num_classes 601 --min_dimension 600
--max_dimension 1024 --max_proposals 300 --seed 0 --timing_runs 0]`

Builds the model with `object_detection.builders.model_builder` in TF1 graph mode (inference), initialises
it at random and then makes the random model a useful oracle:
- batch norm gets non-trivial statistics (moving mean, variance and beta drawn per channel), so a converter
  that mixes up or drops them shows;
- the objectness and class predictors are rescaled so their logits have a standard deviation of a few
  units: random initialisation gives near-uniform scores, which leaves the NMS order to rounding; the
  box predictors so their encodings have a standard deviation of 1 (proposals move off the anchors).
It writes OUT_DIR/model.ckpt (a TF1 checkpoint with the released model's variable names), and for the uint8
image IMAGE.npy ([H, W, 3]) every stage to OUT_DIR/stages.npz: `preprocessed` (resized, in [-1, 1]),
`rpn_features_to_crop` (the block17 output), `rpn_box_predictor_features` (the 3x3 conv), `rpn_box_encodings`
[A, 4], `rpn_objectness` [A, 2] (logits, background first), `anchors` [A, 4] (absolute, clipped as at
inference), `proposal_boxes_normalized` [P, 4], `proposal_scores` [P], `num_proposals`,
`class_predictions_with_background` [P, K + 1], `refined_box_encodings` [P, K, 4], and the detections
`detection_boxes` (normalised), `detection_scores`, `detection_classes` (0-based, without background),
`num_detections`. `--more_images A.npy ...` writes the detections on each further image to OUT_DIR/detections_A.npz
(same graph and checkpoint; one build serves every image). `--timing_runs N` adds `seconds_per_image` (median of N runs after a warm-up), `build_seconds`
(graph construction) and `peak_rss_mb` (the process's peak resident set).
"""

import argparse
import pathlib
import resource
import sys
import time

if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.oracles import shims  # pylint: disable=wrong-import-position

PIPELINE = """
model {
  faster_rcnn {
    num_classes: %(num_classes)d
    image_resizer {
      keep_aspect_ratio_resizer { min_dimension: %(min_dimension)d max_dimension: %(max_dimension)d }
    }
    feature_extractor { type: "faster_rcnn_inception_resnet_v2" first_stage_features_stride: 8 }
    first_stage_anchor_generator {
      grid_anchor_generator {
        scales: [0.25, 0.5, 1.0, 2.0]
        aspect_ratios: [0.5, 1.0, 2.0]
        height_stride: 8
        width_stride: 8
      }
    }
    first_stage_atrous_rate: 2
    first_stage_box_predictor_conv_hyperparams {
      op: CONV
      regularizer { l2_regularizer { weight: 0.0 } }
      initializer { truncated_normal_initializer { stddev: 0.01 } }
    }
    first_stage_nms_score_threshold: 0.0
    first_stage_nms_iou_threshold: 0.7
    first_stage_max_proposals: %(max_proposals)d
    first_stage_localization_loss_weight: 2.0
    first_stage_objectness_loss_weight: 1.0
    initial_crop_size: 17
    maxpool_kernel_size: 1
    maxpool_stride: 1
    second_stage_box_predictor {
      mask_rcnn_box_predictor {
        use_dropout: false
        dropout_keep_probability: 1.0
        fc_hyperparams {
          op: FC
          regularizer { l2_regularizer { weight: 0.0 } }
          initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } }
        }
      }
    }
    second_stage_post_processing {
      batch_non_max_suppression {
        score_threshold: 0.0
        iou_threshold: 0.6
        max_detections_per_class: 100
        max_total_detections: 100
      }
      score_converter: SOFTMAX
    }
    second_stage_batch_size: %(max_proposals)d
    second_stage_localization_loss_weight: 2.0
    second_stage_classification_loss_weight: 1.0
  }
}
"""

# Target standard deviation of the rescaled logits: wide enough that softmax scores differ by far more
# than float32 rounding, narrow enough that many classes stay above zero after NMS.
OBJECTNESS_LOGIT_STD = 2.0
CLASS_LOGIT_STD = 3.0
# Box encodings are scaled by [10, 10, 5, 5] before decoding: a standard deviation of 1 moves centres by
# about a tenth and sizes by about a fifth of the anchor or proposal, so decoding, clipping and NMS
# across the image border are exercised rather than proposals being the anchors.
BOX_ENCODING_STD = 1.0


def _load(sess, values):
  """Sets {variable: value} in one run, feeding the variables' initializers (no new ops: each new op and
  each distinct fetch makes TF1 prune the whole graph again, minutes for ~900 variables one by one)."""
  sess.run([var.initializer for var in values],
           {var.initializer.inputs[1]: value for var, value in values.items()})


def _rescaled(sess, scopes_and_targets, feed):
  """{variable: value} multiplying linear predictors' weights and biases so that each one's output has
  its target standard deviation; `scopes_and_targets`: [(scope, output tensor, target std)], measured
  in one run."""
  stds = sess.run([output for _, output, _ in scopes_and_targets], feed)
  graph_vars = {v.op.name: v for v in sess.graph.get_collection("variables")}
  values = {}
  for (scope, _, target), output in zip(scopes_and_targets, stds):
    variables = [graph_vars[f"{scope}/weights"], graph_vars[f"{scope}/biases"]]
    for var, value in zip(variables, sess.run(variables)):
      values[var] = value * (target / max(float(output.std()), 1e-12))
  return values


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("out_dir", type=pathlib.Path)
  parser.add_argument("--image", type=pathlib.Path, required=True)
  parser.add_argument("--num_classes", type=int, default=601)
  parser.add_argument("--min_dimension", type=int, default=600)
  parser.add_argument("--max_dimension", type=int, default=1024)
  parser.add_argument("--max_proposals", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--timing_runs", type=int, default=0)
  parser.add_argument("--more_images", type=pathlib.Path, nargs="*", default=[])
  args = parser.parse_args(argv)

  shims.install()
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow.compat.v1 as tf1  # pylint: disable=import-outside-toplevel
  from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
  from object_detection.builders import model_builder  # pylint: disable=import-outside-toplevel
  from object_detection.protos import pipeline_pb2  # pylint: disable=import-outside-toplevel

  args.out_dir.mkdir(parents=True, exist_ok=True)
  image = np.load(args.image)
  pipeline = text_format.Parse(PIPELINE % vars(args), pipeline_pb2.TrainEvalPipelineConfig())

  start = time.perf_counter()
  tf1.set_random_seed(args.seed)
  model = model_builder.build(pipeline.model, is_training=False)
  image_in = tf1.placeholder(tf1.uint8, [1, None, None, 3], name="image")
  preprocessed, true_shapes = model.preprocess(tf1.cast(image_in, tf1.float32))
  predictions = model.predict(preprocessed, true_shapes)
  detections = model.postprocess(predictions, true_shapes)

  objectness = predictions["rpn_objectness_predictions_with_background"]
  objectness_logit = objectness[..., 1] - objectness[..., 0]
  fetch = {
      "preprocessed": preprocessed,
      "rpn_features_to_crop": predictions["rpn_features_to_crop"][0],
      "rpn_box_predictor_features": predictions["rpn_box_predictor_features"][0],
      "rpn_box_encodings": predictions["rpn_box_encodings"],
      "rpn_objectness": objectness,
      "anchors": predictions["anchors"],
      "proposal_boxes_normalized": predictions["proposal_boxes_normalized"],
      "num_proposals": predictions["num_proposals"],
      "class_predictions_with_background": predictions["class_predictions_with_background"],
      "refined_box_encodings": predictions["refined_box_encodings"],
      "detection_boxes": detections["detection_boxes"],
      "detection_scores": detections["detection_scores"],
      "detection_classes": detections["detection_classes"],
      "num_detections": detections["num_detections"],
  }
  # The proposals' objectness: the first-stage postprocessor's scores, through the same NMS.
  rpn_only = model._postprocess_rpn(  # pylint: disable=protected-access
      predictions["rpn_box_encodings"], objectness, predictions["anchors"],
      model._image_batch_shape_2d(predictions["image_shape"]), true_shapes)  # pylint: disable=protected-access
  fetch["proposal_scores"] = rpn_only[1]
  saver = tf1.train.Saver()
  build_seconds = time.perf_counter() - start
  print(f"built in {build_seconds:.1f} s", file=sys.stderr)

  rng = np.random.default_rng(args.seed)
  feed = {image_in: image[None]}
  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    statistics = {}
    for var in tf1.global_variables():
      name, shape = var.op.name, var.shape.as_list()
      if name.endswith("moving_mean") or name.endswith("BatchNorm/beta"):
        statistics[var] = rng.normal(0.0, 0.1, shape).astype(np.float32)
      elif name.endswith("moving_variance"):
        statistics[var] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    _load(sess, statistics)
    _load(sess, _rescaled(sess, [
        ("FirstStageBoxPredictor/ClassPredictor", objectness_logit,
         OBJECTNESS_LOGIT_STD),
        ("FirstStageBoxPredictor/BoxEncodingPredictor", predictions["rpn_box_encodings"],
         BOX_ENCODING_STD)], feed))
    _load(sess, _rescaled(sess, [
        ("SecondStageBoxPredictor/ClassPredictor", predictions["class_predictions_with_background"],
         CLASS_LOGIT_STD),
        ("SecondStageBoxPredictor/BoxEncodingPredictor", predictions["refined_box_encodings"],
         BOX_ENCODING_STD)], feed))
    saver.save(sess, str(args.out_dir / "model.ckpt"), write_meta_graph=False)

    out = sess.run(fetch, feed)
    # Drop the batch dimension of one-image outputs.
    stages = {k: (v[0] if k not in ("anchors", "class_predictions_with_background",
                                    "refined_box_encodings") else v) for k, v in out.items()}
    for path in args.more_images:
      found = sess.run(detections, {image_in: np.load(path)[None]})
      np.savez(args.out_dir / f"detections_{path.stem}.npz", **{k: v[0] for k, v in found.items()})
    if args.timing_runs:
      sess.run(detections, feed)
      times = []
      for _ in range(args.timing_runs):
        tick = time.perf_counter()
        sess.run(detections, feed)
        times.append(time.perf_counter() - tick)
      stages["seconds_per_image"] = np.median(times)
      stages["build_seconds"] = build_seconds
      stages["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  np.savez(args.out_dir / "stages.npz", **stages)


if __name__ == "__main__":
  main()
