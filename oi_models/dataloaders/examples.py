"""Reads `open_images` TFDS examples into tf.data, in sequential, shuffled or class-aware order.

The input pipelines (`detection_input`, `classification_input`) start from the dataset's feature dict
with the image still JPEG-encoded (`tfds.decode.SkipDecoding`), so they decide how to decode it (the
classifier decodes only its random crop). This module produces those dicts.

Class-aware sampling needs random access: with an ArrayRecord build (`download_and_prepare(
file_format="array_record")`) `builder.as_data_source(split)` reads any example by index, and the
sampler's index stream (`oi_models.dataloaders.sampling`) drives the reads: a parallel map fetches raw records
in small batches through `tf.numpy_function`, then the TF graph parses them in parallel. A TFRecord build
has no random access; per-class filtered datasets mixed with `sample_from_datasets` would scan the whole
split for every draw of a rare class (601 scans per round at Open Images scale), so class-aware order on
TFRecord is refused with a message instead. Plain shuffling on TFRecord uses TFDS's file shuffling plus a
shuffle buffer.

Also here: mapping between the dataset's ClassLabel indices and a model's class list, and the ImageID's
64 bits as an int64 `source_id` (strings cannot go to TPUs; `readers.key_to_image_id` turns the bits back
into the hex ID after a `.view(np.uint64)`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from oi_models.dataloaders import sampling

ORDERS = ("sequential", "shuffle", "class_aware")


def class_index_map(source_names: Sequence[str], target_names: Sequence[str]) -> np.ndarray:
  """int32 array: entry i is the index of `source_names[i]` in `target_names`, or -1 if absent.

  Use it to move ClassLabel indices between class lists, e.g. the dataset's image-level MIDs to the
  boxable MIDs, or to a model's trainable classes.
  """
  target = {name: i for i, name in enumerate(target_names)}
  if len(target) != len(target_names):
    raise ValueError("target_names has duplicates")
  return np.fromiter((target.get(n, -1) for n in source_names), dtype=np.int32, count=len(source_names))


def decode_image(image: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] from encoded bytes (grayscale JPEGs become RGB) or from an already decoded image."""
  if image.dtype == tf.string:
    image = tf.io.decode_image(image, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def image_id_to_source_id(image_id: tf.Tensor) -> tf.Tensor:
  """A 16-hex-digit ImageID as int64 holding its 64 bits (the uint64 key of `readers`, bit-cast)."""
  tf.debugging.assert_equal(tf.strings.regex_full_match(image_id, "[0-9a-f]{16}"), True,
                            message="ImageID is not 16 lowercase hex digits")
  chars = tf.cast(tf.io.decode_raw(image_id, tf.uint8), tf.uint64)
  nibbles = tf.where(chars >= ord("a"), chars - (ord("a") - 10), chars - ord("0"))
  weights = tf.constant([16 ** (15 - i) for i in range(16)], tf.uint64)
  key = tf.reduce_sum(nibbles * weights)
  return tf.bitcast(key, tf.int64)


def open_data_source(builder: tfds.core.DatasetBuilder, split: str) -> Sequence[bytes]:
  """Random-access source of one split's serialized examples; NotImplementedError for TFRecord builds."""
  return builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)


def _fetch(source: Sequence[bytes]) -> Callable[[np.ndarray], np.ndarray]:
  def fetch(indices: np.ndarray) -> np.ndarray:
    keys = indices.tolist()
    records = source.__getitems__(keys) if hasattr(source, "__getitems__") else [source[k] for k in keys]
    return np.array(records, dtype=object)
  return fetch


def read_by_index(source: Sequence[bytes], features: tfds.features.FeaturesDict,
                  indices: tf.data.Dataset, *, fetch_size: int = 16) -> tf.data.Dataset:
  """The examples at `indices` (an int64 scalar dataset), image left encoded, in index order.

  Args:
    source: serialized examples by index (`open_data_source`, or any sequence of bytes).
    features: the dataset's `info.features`, to parse the records in the graph.
    indices: which examples to read, in order.
    fetch_size: records fetched per Python call; larger amortizes the call, smaller starts sooner.
  """
  fetch = _fetch(source)

  def read(batch):
    records = tf.numpy_function(fetch, [batch], tf.string)
    records.set_shape([None])
    return records

  def parse(record):
    return features.deserialize_example(record, decoders={"image": tfds.decode.SkipDecoding()})

  return (indices.batch(fetch_size)
          .map(read, num_parallel_calls=tf.data.AUTOTUNE)
          .unbatch()
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE))


_CONFIDENCE_OF = {"image_labels/label": "image_labels/confidence",
                  "machine_labels/label": "machine_labels/confidence"}


def image_classes(source: Sequence[bytes], field: str = "objects/label", fetch_size: int = 256,
                  min_confidence: float = 0.5) -> sampling.ImageClasses:
  """The classes shown on every example (one pass parsing only `field`), for `ClassAwareSampler`.

  `field` is `objects/label` (box classes), or an image-level list, `image_labels/label` or
  `machine_labels/label`: there only positives count, labels of confidence >= `min_confidence`
  (human-verified labels are 1 or 0; a 0 is a verified negative, a class the image does *not* show,
  which must not make the sampler draw the image for that class).
  """
  fetch = _fetch(source)
  confidence = _CONFIDENCE_OF.get(field)
  spec = {field: tf.io.RaggedFeature(tf.int64)}
  if confidence:
    spec[confidence] = tf.io.RaggedFeature(tf.float32)
  lists = []
  for start in range(0, len(source), fetch_size):
    records = fetch(np.arange(start, min(start + fetch_size, len(source))))
    parsed = tf.io.parse_example(records, spec)
    labels = parsed[field].numpy()
    if confidence:
      labels = [l[c >= min_confidence] for l, c in zip(labels, parsed[confidence].numpy())]
    lists.extend(labels)
  return sampling.ImageClasses.from_lists(lists)


def sampler_indices(sampler: sampling.Sampler, start_epoch: int = 0) -> tf.data.Dataset:
  """An endless int64 dataset of the sampler's indices for this worker, epoch after epoch."""
  def epoch(e):
    order = tf.numpy_function(sampler.epoch, [e], tf.int64)
    order.set_shape([len(sampler)])
    return tf.data.Dataset.from_tensor_slices(order)
  return tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch)


def with_determinism(dataset: tf.data.Dataset, deterministic: bool | None) -> tf.data.Dataset:
  """Sets `deterministic` on the whole pipeline (None keeps tf.data's default, which is ordered)."""
  if deterministic is None:
    return dataset
  options = tf.data.Options()
  options.deterministic = deterministic
  return dataset.with_options(options)


def load(builder: tfds.core.DatasetBuilder, split: str, *, order: str = "sequential", seed: int = 0,
         num_workers: int = 1, worker_index: int = 0, start_epoch: int = 0,
         image_classes_of_split: sampling.ImageClasses | None = None, shuffle_buffer: int = 1000,
         fetch_size: int = 16, deterministic: bool | None = None) -> tf.data.Dataset:
  """One worker's stream of a split's examples (image encoded); endless unless `order="sequential"`.

  Args:
    builder: a prepared `open_images` builder.
    split: TFDS split name.
    order: "sequential" (one pass), "shuffle" (a new permutation each epoch) or "class_aware"
      (`sampling.ClassAwareSampler`, needs ArrayRecord).
    seed: sampler seed; the stream is a function of (seed, epoch).
    num_workers, worker_index: this input pipeline's share. ArrayRecord: disjoint slices of one
      global stream (in sequential order, every num_workers-th example from worker_index). TFRecord:
      whole files, through TFDS's `tf.distribute.InputContext` sharding; TFDS refuses a split with
      fewer files than num_workers.
    start_epoch: the first epoch, to resume a stream (ArrayRecord shuffle and class-aware orders;
      sequential order ignores it). A TFRecord stream cannot resume: nonzero is a ValueError.
    image_classes_of_split: per-example classes for class-aware order; read from the split's box labels
      (one pass) when None.
    shuffle_buffer: for "shuffle" on a TFRecord build only.
    fetch_size: records per random-access fetch.
    deterministic: see `with_determinism`.
  """
  if order not in ORDERS:
    raise ValueError(f"order must be one of {ORDERS}; got {order!r}")
  features = builder.info.features
  try:
    source = open_data_source(builder, split)
  except NotImplementedError:
    source = None
  if source is None:
    if order == "class_aware":
      raise ValueError(f"class-aware order needs random access; {builder.name} was built as "
                       f"{builder.info.file_format}: rebuild with file_format='array_record'")
    if start_epoch:
      raise ValueError(f"a TFRecord stream cannot resume (start_epoch={start_epoch}); rebuild "
                       "with file_format='array_record' for resumable orders")
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, input_context=tf.distribute.InputContext(num_workers, worker_index))
    dataset = builder.as_dataset(split, shuffle_files=order == "shuffle", read_config=read_config,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    if order == "shuffle":
      dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    return with_determinism(dataset, deterministic)
  if order == "sequential":
    indices = tf.data.Dataset.range(worker_index, len(source), num_workers)
  else:
    if order == "shuffle":
      sampler = sampling.ShuffleSampler(len(source), seed, num_workers, worker_index)
    else:
      classes = image_classes_of_split or image_classes(source)
      sampler = sampling.ClassAwareSampler(classes, seed, num_workers, worker_index)
    indices = sampler_indices(sampler, start_epoch)
  return with_determinism(read_by_index(source, features, indices, fetch_size=fetch_size), deterministic)


def parse_and_batch(examples: tf.data.Dataset, parse_fn: Callable[[Any], Any], batch_size: int, *,
                    drop_remainder: bool, deterministic: bool | None = None) -> tf.data.Dataset:
  """Parallel parse (autotuned), batch to static shapes, prefetch."""
  dataset = examples.map(parse_fn, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
  return with_determinism(dataset, deterministic)
