"""Benchmark: the exported SavedModels against the in-process models they come from.

For the tiny classifier (`oi_classifier_tiny`, 64x64) and the tiny detector (`faster_rcnn.tiny`, 1/1/1
repeats, 96/160 keep-aspect), random weights: SavedModel load time (`tf.saved_model.load` in a fresh
process), per-image latency on a 1024x768 JPEG through the `image_bytes` signature, and batch
throughput (--batch images per call), against the in-process model doing the same work in the same
run (the module's own decode, preprocessing, model and outputs under one tf.function taking a batch
of any size, as the signature does).
Medians of --repeats timed calls after one warm-up. Targets (issue 11): serving latency within 10% of
in-process, load under 5 s.

  python benchmarks/serving.py                 # both models, 5 repeats, batch 8
  python benchmarks/serving.py --models=classifier --repeats=20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LOAD_SCRIPT = """
import sys, time
t = time.perf_counter()
import tensorflow as tf
imported = time.perf_counter()
tf.saved_model.load(sys.argv[1])
print(time.perf_counter() - imported)
"""


def _export(kind: str, export_dir: str):
  import tensorflow as tf
  from oi_models import labels
  from oi_models.serving import export_base
  classes = labels.LabelMap(tuple(f"/m/0b{i:02d}" for i in range(10)),
                            tuple(f"class {i}" for i in range(10)))
  if kind == "classifier":
    from official.core import exp_factory
    import oi_models.configs.classification  # pylint: disable=unused-import
    from oi_models.serving import classification
    module = classification.ClassifierModule(exp_factory.get_exp_config("oi_classifier_tiny"),
                                             label_map=classes)
  else:
    from oi_models.configs import faster_rcnn
    from oi_models.serving import detection
    module = detection.DetectorModule(faster_rcnn.tiny(num_classes=11), label_map=classes)
  # The same work as the signature, traced as it is (a batch of any size): what is left is the cost
  # of serving from a SavedModel.
  in_process = tf.function(lambda b: module._serve(export_base.decode_image, b),  # pylint: disable=protected-access
                           input_signature=[tf.TensorSpec([None], tf.string)])
  export_base.save(module, export_dir)
  return in_process


def _median_seconds(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="classifier,detector")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batch", type=int, default=8)
  args = parser.parse_args()
  import tensorflow as tf
  rng = np.random.default_rng(0)
  jpeg = tf.io.encode_jpeg(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)).numpy()
  one, batch = tf.constant([jpeg]), tf.constant([jpeg] * args.batch)
  rows = []
  for kind in args.models.split(","):
    with tempfile.TemporaryDirectory() as export_dir:
      in_process = _export(kind, export_dir)
      done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, export_dir], capture_output=True,
                            text=True, check=True)
      load = float(done.stdout.split()[-1])
      served = tf.saved_model.load(export_dir).signatures["image_bytes"]
      for name, inputs in (("1 image", one), (f"batch {args.batch}", batch)):
        ours = _median_seconds(lambda: served(image_bytes=inputs), args.repeats)
        base = _median_seconds(lambda: in_process(inputs), args.repeats)
        rows.append((kind, name, ours, base, len(inputs) / ours, load))
  print(f"{'model':<11}{'input (1024x768 JPEG)':<24}{'SavedModel s':>13}{'in-process s':>13}"
        f"{'ratio':>7}{'images/s':>10}{'load s':>8}")
  for kind, name, ours, base, rate, load in rows:
    print(f"{kind:<11}{name:<24}{ours:>13.4f}{base:>13.4f}{ours / base:>7.2f}{rate:>10.1f}{load:>8.2f}")
  print(json.dumps({"targets": "ratio <= 1.10, load < 5 s"}))


if __name__ == "__main__":
  main()
