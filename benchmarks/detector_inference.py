"""Benchmark: seconds per image of the detector against the reference graph, in the same run.

The reference is the TF Object Detection API's Faster R-CNN Inception-ResNet-v2 atrous with the OID V4
settings (601 classes, 300 proposals), built and run in TF1 graph mode by the test oracle
(tests/oracles/od_faster_rcnn.py, random weights with spread scores). Its checkpoint is converted
(`od_faster_rcnn_inception_resnet_v2`) into this package's model, which then runs the same image
(600x1024, which the keep-aspect resize inside both models leaves as it is) as a `tf.function`, and as a `tf.function` with
XLA auto-clustering (`TF_XLA_FLAGS=--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit`: the convolutional
networks compile, NMS stays a TensorFlow kernel). Each variant runs in a process of its own; seconds are
the median of --runs timed runs after one warm-up, peak memory the process's peak resident set. Each
variant's detections are checked against the reference's (same count and classes in the same order).

  python benchmarks/detector_inference.py              # 3 timed runs each, a real 1024-px photo
  python benchmarks/detector_inference.py --runs=5 --variants=tf_function
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = pathlib.Path(os.environ.get("OI_SHARED", REPO.parent / "shared" / "openimages"))
DEFAULT_IMAGE = SHARED / "images" / "train_2018_pyaf" / "000018acd19b4ad3.jpg"  # 1024x683
VARIANTS = {
    "tf_function": {},
    "xla": {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"},
}

_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs per variant (after one warm-up); medians shown.")
_IMAGE = flags.DEFINE_string("image", str(DEFAULT_IMAGE),
                             "A JPEG to detect on, centre-cropped to 600x1024 (the reference's input "
                             "size: resizing leaves it as it is); default a real Open Images photo, "
                             "a synthetic image if absent.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 601, "Classes of the reference (without background).")
_PROPOSALS = flags.DEFINE_integer("proposals", 300, "First-stage proposals.")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"Variants of the package's model: {list(VARIANTS)}.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: run one variant in this process.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where the reference's checkpoint goes (default: temp).")


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_image(path: str, height: int = 600, width: int = 1024) -> np.ndarray:
  """RGB uint8 [height, width, 3]: the photo resized to cover that size, centre-cropped to it."""
  if not os.path.exists(path):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
  import cv2  # pylint: disable=import-outside-toplevel
  image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
  scale = max(height / image.shape[0], width / image.shape[1])
  image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA)
  top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
  return np.ascontiguousarray(image[top:top + height, left:left + width])


def worker(work_dir: pathlib.Path) -> dict:
  """Converts the reference checkpoint, times `detect` as a tf.function; prints a JSON line."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from oi_models.modeling import converters  # pylint: disable=import-outside-toplevel
  from oi_models.modeling.converters import od_faster_rcnn  # pylint: disable=import-outside-toplevel

  image = tf.constant(np.load(work_dir / "image.npy"))
  start = time.perf_counter()
  source = converters.SourceCheckpoint(str(work_dir / "reference" / "model.ckpt"))
  model = od_faster_rcnn.convert(source, overrides={"roi_generator": {"num_proposals": _PROPOSALS.value}}
                                 ).model
  detect = tf.function(model.detect, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  outputs = detect(image)  # trace and warm up
  build_seconds = time.perf_counter() - start
  times = []
  for _ in range(_RUNS.value):
    tick = time.perf_counter()
    outputs = detect(image)
    outputs["num_detections"].numpy()
    times.append(time.perf_counter() - tick)
  reference = np.load(work_dir / "reference" / "stages.npz")
  num = int(reference["num_detections"])
  same = (int(outputs["num_detections"][0]) == num and np.array_equal(
      outputs["detection_classes"][0, :num].numpy() - 1, reference["detection_classes"][:num]))
  return dict(seconds_per_image=statistics.median(times), build_seconds=build_seconds,
              peak_rss_mb=peak_rss_mb(), same_detections=bool(same), num_detections=num)


def main(argv):
  del argv
  if _WORKER.value:
    print(json.dumps(worker(pathlib.Path(_WORK_DIR.value))))
    return
  from tests import oracles  # pylint: disable=import-outside-toplevel
  work_dir = pathlib.Path(_WORK_DIR.value or tempfile.mkdtemp(prefix="detector_inference_"))
  work_dir.mkdir(parents=True, exist_ok=True)
  image = load_image(_IMAGE.value)
  np.save(work_dir / "image.npy", image)
  print(f"image {image.shape[1]}x{image.shape[0]} ({_IMAGE.value if os.path.exists(_IMAGE.value) else 'synthetic'}), "
        f"{_NUM_CLASSES.value} classes, {_PROPOSALS.value} proposals, {_RUNS.value} timed runs each",
        flush=True)
  oracles.run("od_faster_rcnn", work_dir / "reference", "--image", work_dir / "image.npy",
              "--num_classes", _NUM_CLASSES.value, "--max_proposals", _PROPOSALS.value,
              "--timing_runs", _RUNS.value, timeout=3600)
  reference = np.load(work_dir / "reference" / "stages.npz")
  rows = [("TF OD API reference (TF1 graph)", float(reference["seconds_per_image"]),
           float(reference["build_seconds"]), float(reference["peak_rss_mb"]), "-")]
  for variant in _VARIANTS.value:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **VARIANTS[variant])
    done = subprocess.run([sys.executable, __file__, f"--worker={variant}", f"--work_dir={work_dir}",
                           f"--runs={_RUNS.value}", f"--proposals={_PROPOSALS.value}"],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
      raise RuntimeError(f"variant {variant} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows.append((f"oi_models, {variant}", result["seconds_per_image"], result["build_seconds"],
                 result["peak_rss_mb"], "yes" if result["same_detections"] else "NO"))
  base = rows[0][1]
  print(f"\n{'model':34s} {'s/image':>8s} {'ratio':>6s} {'build+warm-up s':>16s} {'peak MB':>8s} "
        f"{'same detections':>16s}")
  for name, seconds, build, memory, same in rows:
    print(f"{name:34s} {seconds:8.2f} {seconds / base:6.2f} {build:16.1f} {memory:8.0f} {same:>16s}")


if __name__ == "__main__":
  app.run(main)
