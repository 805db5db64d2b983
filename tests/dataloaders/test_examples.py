"""Tests for oi_models.dataloaders.examples: reading open_images examples by index, in sampler order."""

import numpy as np
import pytest
import tensorflow as tf

from oi_models.dataloaders import examples
from oi_models.dataloaders import sampling
from tests.dataloaders import fake_open_images as fake


def _signed(hex_id):
  value = int(hex_id, 16)
  return value - 2**64 if value >= 2**63 else value


@pytest.fixture(scope="module")
def source():
  """12 examples; example i has box class i % 3 (class 2 only on every third image)."""
  rng = np.random.default_rng(0)
  feats = fake.features()
  exs = [fake.example(fake.image_id(i), fake.noise_image(rng, 16, 24), boxes=[(0.1, 0.1, 0.9, 0.9)],
                      box_labels=[i % 3]) for i in range(12)]
  return feats, fake.serialize(feats, exs)


def test_class_index_map_by_name_with_missing():
  np.testing.assert_array_equal(
      examples.class_index_map(["/m/a", "/m/c", "/m/b"], ["/m/b", "/m/a"]), [1, -1, 0])
  with pytest.raises(ValueError, match="duplicates"):
    examples.class_index_map(["/m/a"], ["/m/a", "/m/a"])


def test_image_id_to_source_id_holds_the_64_bits():
  ids = ["0000000000000000", "000002b97e5471a0", "ffffffffffffffff", fake.image_id(7)]
  got = [int(examples.image_id_to_source_id(tf.constant(i))) for i in ids]
  assert got == [_signed(i) for i in ids]
  assert np.array(got, np.int64).view(np.uint64).tolist() == [int(i, 16) for i in ids]
  with pytest.raises(tf.errors.InvalidArgumentError, match="16 lowercase hex"):
    examples.image_id_to_source_id(tf.constant("000002B97E5471A0"))


def test_decode_image_makes_rgb_from_grayscale_jpeg():
  gray = tf.io.encode_jpeg(tf.fill([5, 7, 1], tf.constant(200, tf.uint8)))
  image = examples.decode_image(gray)
  assert image.shape == (5, 7, 3) and image.dtype == tf.uint8


def test_read_by_index_returns_the_indexed_examples_in_order(source):
  feats, records = source
  order = [5, 0, 11, 5, 3, 7, 2]
  ds = examples.read_by_index(records, feats, tf.data.Dataset.from_tensor_slices(
      tf.constant(order, tf.int64)), fetch_size=3)
  got = list(examples.with_determinism(ds, True).as_numpy_iterator())
  assert [g["image/id"].decode() for g in got] == [fake.image_id(i) for i in order]
  assert [int(g["objects"]["label"][0]) for g in got] == [i % 3 for i in order]
  assert got[0]["image"].startswith(b"\xff\xd8")  # Still JPEG-encoded: pipelines decode it themselves.


def test_image_classes_reads_the_box_labels(source):
  _, records = source
  ic = examples.image_classes(records, fetch_size=5)
  expected = sampling.ImageClasses.from_lists([[i % 3] for i in range(12)])
  np.testing.assert_array_equal(ic.offsets, expected.offsets)
  np.testing.assert_array_equal(ic.classes, expected.classes)


def test_image_classes_of_image_level_labels_count_only_positives():
  feats = fake.features(machine_labels=True)
  rng = np.random.default_rng(1)
  labels = [([0, 1, 3], [1.0, 0.0, 1.0]), ([1], [0.0]), ([2, 4], [1.0, 1.0]), ([], [])]
  machine = [([4], [0.7]), ([1, 2], [0.2, 0.5]), ([], []), ([0], [0.49])]
  exs = [fake.example(fake.image_id(i), fake.noise_image(rng, 8, 8), image_labels=l,
                      confidences=c, machine=m) for i, ((l, c), m) in enumerate(zip(labels, machine))]
  records = fake.serialize(feats, exs)
  human = examples.image_classes(records, field="image_labels/label", fetch_size=3)
  np.testing.assert_array_equal(human.offsets, [0, 2, 2, 4, 4])  # Image 1 has only a negative.
  np.testing.assert_array_equal(human.classes, [0, 3, 2, 4])
  assert human.images_per_class(5).tolist() == [1, 0, 1, 1, 1]  # Class 1: verified negatives only.
  machine_classes = examples.image_classes(records, field="machine_labels/label")
  np.testing.assert_array_equal(machine_classes.offsets, [0, 1, 2, 2, 2])
  np.testing.assert_array_equal(machine_classes.classes, [4, 2])


def test_class_aware_stream_reads_the_sampler_sequence_across_epochs(source):
  feats, records = source
  sampler = sampling.ClassAwareSampler(examples.image_classes(records), seed=4, num_workers=2,
                                       worker_index=1)
  ds = examples.read_by_index(records, feats, examples.sampler_indices(sampler, start_epoch=3))
  got = [g["image/id"].decode() for g in ds.take(2 * len(sampler)).as_numpy_iterator()]
  expected = np.concatenate([sampler.epoch(3), sampler.epoch(4)])
  assert got == [fake.image_id(i) for i in expected]


def test_parse_and_batch_is_static_and_ordered_when_deterministic():
  ds = examples.parse_and_batch(tf.data.Dataset.range(10), lambda x: x * 2, 4, drop_remainder=True,
                                deterministic=True)
  assert ds.element_spec.shape == (4,)
  assert [b.tolist() for b in ds.as_numpy_iterator()] == [[0, 2, 4, 6], [8, 10, 12, 14]]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
  """The real builder on a 12-image sample (train 8), as ArrayRecord and as TFRecord."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import builder  # pylint: disable=import-outside-toplevel
  from oi_models.datasets import make_sample  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("examples_load")
  make_sample.make_sample(root / "sample", num_images=12, splits=(8, 2, 2))
  built = {}
  for file_format in ("array_record", "tfrecord"):
    ds_builder = builder.OpenImages(config="v6_original", data_dir=str(root / file_format),
                                    file_format=file_format)
    ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(root / "sample")))
    built[file_format] = ds_builder
  return built


def _ids(dataset, count=None):
  dataset = dataset if count is None else dataset.take(count)
  return [ex["image/id"].decode() for ex in dataset.as_numpy_iterator()]


def test_load_sequential_workers_read_disjoint_shares_of_the_whole_split(builds):
  ds_builder = builds["array_record"]
  everything = _ids(examples.load(ds_builder, "train"))
  assert len(everything) == 8 == len(set(everything))
  shares = [_ids(examples.load(ds_builder, "train", num_workers=2, worker_index=w, deterministic=True))
            for w in range(2)]
  assert shares == [everything[0::2], everything[1::2]]
  assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(everything)


def test_load_class_aware_reads_the_sampler_order_and_resumes(builds):
  ds_builder = builds["array_record"]
  id_of_index = _ids(examples.load(ds_builder, "train"))
  source = examples.open_data_source(ds_builder, "train")
  classes = examples.image_classes(source)

  def stream(seed, start_epoch=0, epochs=2):
    return _ids(examples.load(ds_builder, "train", order="class_aware", seed=seed, num_workers=2,
                              worker_index=1, start_epoch=start_epoch, deterministic=True,
                              fetch_size=3), 4 * epochs)

  sampler = sampling.ClassAwareSampler(classes, seed=7, num_workers=2, worker_index=1)
  assert len(sampler) == 4
  expected = [id_of_index[i] for i in np.concatenate([sampler.epoch(0), sampler.epoch(1)])]
  got = stream(7)
  assert got == expected
  assert stream(7, start_epoch=1, epochs=1) == expected[4:]  # Resumes where epoch 1 starts.
  assert stream(8) != got
  # Passing the classes gives the same stream as reading them from the split.
  given = examples.load(ds_builder, "train", order="class_aware", seed=7, num_workers=2, worker_index=1,
                        image_classes_of_split=classes, deterministic=True)
  assert _ids(given, 8) == expected


def test_load_refuses_what_a_tfrecord_build_cannot_do(builds):
  ds_builder = builds["tfrecord"]
  assert len(_ids(examples.load(ds_builder, "train"))) == 8
  with pytest.raises(ValueError, match="array_record"):
    examples.load(ds_builder, "train", order="class_aware")
  with pytest.raises(ValueError, match="cannot resume"):
    examples.load(ds_builder, "train", order="shuffle", start_epoch=1)
  with pytest.raises(ValueError, match="order must be one of"):
    examples.load(ds_builder, "train", order="random")
