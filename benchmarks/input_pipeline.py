"""Detector input-pipeline throughput against JPEG decoding alone, on real 1024-px Open Images photos.

Both pipelines read the same encoded JPEGs (the real train images in the shared folder, repeated) from
memory, with tf.data's autotuned parallelism on one private thread pool of `--cores` threads: the
baseline only decodes; the detector pipelines (`detection_input.dataset`, as training runs it) decode,
resize keep-aspect (600/1024), flip, pad to 1024x1024 and batch. Rows:
- "detector, uint8, OpenCV resize": the configuration the detector trains with. Pixels go to the
  accelerator as uint8 and the model normalizes them and matches anchors there, as the TF Object
  Detection API did. Target: at least 60% of decode-only throughput.
- "detector, uint8, TF resize": the same with TF's resize kernel (a pure-graph parser).
- "detector, float + RPN targets": Model Garden's Faster R-CNN task layout (normalized float image,
  anchors matched on the CPU), for comparison: anchor matching over 1024x1024 dominates it.
Figures are images per second per core after an untimed warm-up of as many images (tf.data's
autotuning settled, as in training), medians over repeats; the ratio is against decode-only.

With `--sample_images > 0` it also builds the `open_images` dataset from a freshly made sample of that
many images and reports the build's images per second per core.

    python benchmarks/input_pipeline.py --repeats 3 --num_images 100
"""

import os
import pathlib
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from oi_models.dataloaders import detection_input

_IMAGES_DIR = flags.DEFINE_string(
    "images_dir",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "openimages" / "images" /
        "train_2018_pyaf"),
    "Folder of real Open Images JPEGs (1024 px long side).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 200, "Images per timed run (the files, repeated).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per pipeline; the median is reported.")
_CORES = flags.DEFINE_integer("cores", 2, "tf.data thread pool size and parallel calls; figures are "
                              "divided by it.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 2, "Detector pipeline batch size.")
_BOXES = flags.DEFINE_integer("boxes_per_image", 10, "Synthetic ground-truth boxes per image.")
_SAMPLE_IMAGES = flags.DEFINE_integer("sample_images", 300, "If > 0, also time a TFDS build of a sample "
                                      "of this many images (needs oi_models.datasets.builder).")


def _examples(jpegs, num_boxes):
  """In-memory open_images-shaped examples (image encoded) with random boxes."""
  rng = np.random.default_rng(0)
  n = len(jpegs)
  corners = np.sort(rng.uniform(0, 1, size=(n, num_boxes, 2, 2)), axis=2)  # [n, box, (min,max), (y,x)]
  boxes = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1).astype(np.float32)
  return tf.data.Dataset.from_tensor_slices({
      "image": tf.constant(jpegs),
      "image/id": tf.constant([f"{i:016x}" for i in range(n)]),
      "objects": {
          "bbox": boxes,
          "label": rng.integers(0, 600, size=(n, num_boxes)),
          "is_group_of": (rng.random((n, num_boxes)) < 0.1).astype(np.int8),
      },
      "image_labels": {
          "label": rng.integers(0, 600, size=(n, 5)),
          "confidence": rng.integers(0, 2, size=(n, 5)).astype(np.float32),
      },
  })


def _options(cores):
  options = tf.data.Options()
  options.threading.private_threadpool_size = cores
  options.deterministic = False
  return options


def _rate(iterator, num_elements: int, images_per_element: int) -> float:
  """Images per second over the next `num_elements` elements of a running iterator."""
  start = time.perf_counter()
  for _ in range(num_elements):
    next(iterator)
  return num_elements * images_per_element / (time.perf_counter() - start)


def _decode_only(examples, cores):
  return (examples.map(lambda ex: tf.shape(tf.io.decode_image(ex["image"], channels=3,
                                                             expand_animations=False)),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
          .with_options(_options(cores)))


def _detector(examples, cores, batch_size, **parser_kwargs):
  """The training pipeline exactly as `detection_input.dataset` builds it (autotuned map, batch)."""
  return detection_input.dataset(examples, detection_input.Decoder(np.arange(600)),
                                 detection_input.Parser(**parser_kwargs), is_training=True,
                                 batch_size=batch_size).with_options(_options(cores))


def _build_rates(num_images, cores, builds=3):
  """Images per second per core of `download_and_prepare` of a fresh sample, build after build.

  The first build in a process pays one-off set-up (imports, TFDS registration, graph tracing).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import builder  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import make_sample  # pylint: disable=import-outside-toplevel
  rates = []
  with tempfile.TemporaryDirectory() as tmp:
    manual = os.path.join(tmp, "manual")
    make_sample.make_sample(manual, num_images=num_images, seed=0)
    for i in range(builds):
      start = time.perf_counter()
      b = builder.OpenImages(config="v6_original", data_dir=os.path.join(tmp, f"data{i}"))
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
      total = sum(s.num_examples for s in b.info.splits.values())
      rates.append(total / (time.perf_counter() - start) / cores)
  return rates


def main(argv):
  del argv
  files = sorted(pathlib.Path(_IMAGES_DIR.value).glob("*.jpg"))
  if not files:
    raise app.UsageError(f"no JPEGs in {_IMAGES_DIR.value}")
  jpegs = [f.read_bytes() for f in files]
  jpegs = [jpegs[i % len(jpegs)] for i in range(_NUM_IMAGES.value)]
  n = len(jpegs) - len(jpegs) % _BATCH_SIZE.value
  examples = _examples(jpegs[:n], _BOXES.value).cache()
  for _ in examples:  # Fill the cache: both pipelines then read from memory.
    pass
  cores = _CORES.value
  batch = _BATCH_SIZE.value
  pipelines = {
      "decode only (baseline)": _decode_only(examples, cores),
      "detector, uint8, OpenCV resize": _detector(examples, cores, batch, normalize=False,
                                                  rpn_targets=False, resize_backend="opencv"),
      "detector, uint8, TF resize": _detector(examples, cores, batch, normalize=False,
                                              rpn_targets=False, resize_backend="tensorflow"),
      "detector, float + RPN targets": _detector(examples, cores, batch),
  }
  per_element = {name: 1 if name.startswith("decode") else batch for name in pipelines}
  rates = {name: [] for name in pipelines}
  for _ in range(_REPEATS.value):  # Interleaved, so load from others hits all alike.
    for name, ds in pipelines.items():
      # A fresh iterator, warmed up untimed so that tf.data's autotuning settles as in a long
      # training run; deleted after its window so that no other pipeline runs in the background.
      iterator = iter(ds.repeat())
      _rate(iterator, n // per_element[name], per_element[name])
      rates[name].append(_rate(iterator, n // per_element[name], per_element[name]) / cores)
      del iterator
  base = statistics.median(rates["decode only (baseline)"])
  print(f"{len(files)} distinct JPEGs, {n} images per run, {_REPEATS.value} runs, {cores} cores")
  print(f"{'pipeline':<32}{'img/s/core (median)':>22}{'min':>8}{'max':>8}{'ratio':>8}")
  for name, r in rates.items():
    median = statistics.median(r)
    print(f"{name:<32}{median:>22.1f}{min(r):>8.1f}{max(r):>8.1f}{median / base:>8.2f}")
  if _SAMPLE_IMAGES.value > 0:
    rates = _build_rates(_SAMPLE_IMAGES.value, cores)
    print(f"TFDS build of a {_SAMPLE_IMAGES.value}-image sample (v6_original): first build "
          f"{rates[0]:.1f} img/s/core, later builds {statistics.median(rates[1:]):.1f} img/s/core")


if __name__ == "__main__":
  app.run(main)
