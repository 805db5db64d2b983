"""Tests for oi_models.dataloaders.detection_input (decoder to Model Garden's dict, keep-aspect parser)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples
from oi_models.modeling.faster_rcnn import anchors
from tests.dataloaders import fake_open_images as fake

BOX = (0.25, 0.125, 0.75, 0.5)  # ymin, xmin, ymax, xmax.


def _bright_box_image(height, width, box=BOX):
  image = np.zeros((height, width, 3), np.uint8)
  ymin, xmin, ymax, xmax = box
  image[int(ymin * height):int(ymax * height), int(xmin * width):int(xmax * width)] = 255
  return image


def _decoded(height=64, width=128, **kwargs):
  """One example through serialization, parsing and the Decoder."""
  feats = fake.features()
  ex = fake.example(fake.image_id(3), _bright_box_image(height, width), **kwargs)
  record = fake.serialize(feats, [ex])[0]
  parsed = feats.deserialize_example(record, decoders={"image": tfds.decode.SkipDecoding()})
  return detection_input.Decoder.from_features(feats).decode(parsed)


def _example_kwargs():
  return dict(boxes=[BOX, (0.0, 0.0, 1.0, 1.0)], box_labels=[1, 0], group_of=[0, 1],
              # image-level: /m/b positive, /m/c (not boxable) negative, /m/a negative, /m/e positive.
              image_labels=[2, 1, 0, 4], confidences=[1.0, 0.0, 0.0, 1.0])


def test_decoder_produces_model_garden_keys_and_open_images_extras():
  d = _decoded(**_example_kwargs())
  assert d["image"].shape == (64, 128, 3) and d["image"].dtype == tf.uint8
  assert int(d["height"]) == 64 and int(d["width"]) == 128
  assert int(d["source_id"]) == np.array([int(fake.image_id(3), 16)], np.uint64).view(np.int64)[0]
  np.testing.assert_array_equal(d["groundtruth_classes"], [2, 1])  # Boxable index + 1.
  np.testing.assert_array_equal(d["groundtruth_is_crowd"], [False, True])
  np.testing.assert_allclose(d["groundtruth_boxes"], [BOX, (0, 0, 1, 1)])
  np.testing.assert_allclose(d["groundtruth_area"], [0.5 * 0.375 * 64 * 128, 64 * 128])
  np.testing.assert_array_equal(d["groundtruth_image_labels_positive"], [2])  # /m/b; /m/e not boxable.
  np.testing.assert_array_equal(d["groundtruth_image_labels_negative"], [1])  # /m/a.


def test_unknown_group_of_is_crowd_as_the_evaluator_counts_it():
  # IsGroupOf -1 (unknown) is group-of for the official evaluator (astype(bool)); the pipeline agrees.
  kwargs = dict(_example_kwargs(), boxes=[BOX, BOX, BOX], box_labels=[0, 1, 2], group_of=[-1, 0, 1])
  np.testing.assert_array_equal(_decoded(**kwargs)["groundtruth_is_crowd"], [True, False, True])


@pytest.mark.parametrize("height,width", [(64, 128), (128, 64), (40, 44)])
def test_eval_parse_resizes_keep_aspect_and_pads_statically(height, width):
  parser = detection_input.Parser(short_side=30, long_side=50, min_level=3, max_level=3,
                                  max_num_instances=4, max_num_image_labels=3)
  image, labels = parser.parse_fn(is_training=False)(_decoded(height, width, **_example_kwargs()))
  scale = min(30 / min(height, width), 50 / max(height, width))
  resized = (round(height * scale), round(width * scale))
  assert image.shape == (56, 56, 3)  # 50 rounded up to a multiple of 2**3.
  info = labels["image_info"].numpy()
  np.testing.assert_allclose(info[0], [height, width])
  np.testing.assert_allclose(info[1], resized)
  assert not np.any(image.numpy()[resized[0]:]) and not np.any(image.numpy()[:, resized[1]:])
  # The bright box is where the ground truth says, at the new scale.
  y0, x0, y1, x1 = (np.array(BOX) * (resized * 2)).astype(int)
  inside = image.numpy()[y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean()
  assert inside > 1.5 > image.numpy()[:resized[0], :resized[1]].mean()
  gt = labels["groundtruths"]
  np.testing.assert_allclose(gt["boxes"].numpy()[:2],
                             np.array([BOX, (0, 0, 1, 1)]) * [height, width, height, width], rtol=1e-6)
  np.testing.assert_array_equal(gt["boxes"].numpy()[2:], -1)
  np.testing.assert_array_equal(gt["classes"], [2, 1, -1, -1])
  np.testing.assert_array_equal(gt["is_crowds"], [0, 1, 0, 0])
  assert int(gt["num_detections"]) == 2
  np.testing.assert_array_equal(gt["image_labels_positive"], [2, -1, -1])
  np.testing.assert_array_equal(gt["image_labels_negative"], [1, -1, -1])
  assert int(gt["num_image_labels_positive"]) == 1


@pytest.mark.parametrize("backend", detection_input.RESIZE_BACKENDS)
def test_train_parse_flips_boxes_with_the_image_and_targets_are_static(backend):
  tf.random.set_seed(0)
  parser = detection_input.Parser(short_side=30, long_side=50, min_level=3, max_level=4,
                                  anchor_generator=anchors.AnchorGenerator(anchor_size=32.0),
                                  max_num_instances=4, rpn_batch_size_per_im=16,
                                  resize_backend=backend)
  decoded = _decoded(64, 128, boxes=[BOX], box_labels=[1])
  parse = parser.parse_fn(is_training=True)
  ds = tf.data.Dataset.from_tensors(decoded).repeat(12).map(parse).batch(12, drop_remainder=True)
  assert all(s.shape.is_fully_defined() for s in tf.nest.flatten(ds.element_spec))
  images, labels = next(iter(ds))
  scale = 50 / 128
  plain = np.array(BOX) * [64, 128, 64, 128] * scale
  flipped = plain[[0, 3, 2, 1]] * [1, -1, 1, -1] + [0, 50, 0, 50]
  boxes = labels["gt_boxes"].numpy()
  was_flipped = [np.allclose(b[0], flipped, atol=1e-4) for b in boxes]
  assert all(f or np.allclose(b[0], plain, atol=1e-4) for f, b in zip(was_flipped, boxes))
  assert 0 < sum(was_flipped) < 12
  for image, box in zip(images.numpy(), boxes[:, 0]):
    y0, x0, y1, x1 = np.round(box).astype(int)
    assert image[y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean() > 1.5
  np.testing.assert_array_equal(labels["gt_classes"].numpy()[:, 1:], -1)
  assert set(labels["rpn_score_targets"]) == {"3"}  # the model's one level
  assert (labels["rpn_score_targets"]["3"].numpy() == 1).any()  # Some anchor matched the box.


def test_train_parse_skips_group_of_only_when_asked():
  decoded = _decoded(64, 128, **_example_kwargs())
  for skip, classes in ((False, [2, 1]), (True, [2])):
    parser = detection_input.Parser(short_side=30, long_side=50, min_level=3, max_level=3,
                                    aug_rand_hflip=False, skip_group_of_during_training=skip,
                                    max_num_instances=3)
    _, labels = parser.parse_fn(is_training=True)(decoded)
    got = labels["gt_classes"].numpy()
    np.testing.assert_array_equal(got[got >= 0], classes)


def test_dataset_on_a_real_1024_px_photo_with_reference_settings(shared):
  path = shared("images", "train_2018_pyaf", "000002b97e5471a0.jpg")
  width, height = Image.open(path).size
  feats = fake.features()
  ex = fake.example("000002b97e5471a0", np.asarray(Image.open(path).convert("RGB")),
                    boxes=[BOX], box_labels=[0])
  records = fake.serialize(feats, [ex])
  examples_ds = examples.read_by_index(records, feats, tf.data.Dataset.range(1))
  ds = detection_input.dataset(examples_ds, detection_input.Decoder.from_features(feats),
                               detection_input.Parser(), is_training=False, batch_size=1,
                               deterministic=True)
  images, labels = next(iter(ds))
  scale = min(600 / min(height, width), 1024 / max(height, width))
  assert images.shape == (1, 1024, 1024, 3)
  np.testing.assert_allclose(labels["image_info"][0, 1], [round(height * scale), round(width * scale)])
  assert int(labels["groundtruths"]["source_id"][0]) == int("000002b97e5471a0", 16)


def test_resize_backends_agree_on_a_real_photo_within_one_level(shared):
  """OpenCV's fixed-point bilinear and TF's float one, both half-pixel centred, flipped or not."""
  image = tf.constant(np.asarray(Image.open(shared("images", "train_2018_pyaf",
                                                   "000002b97e5471a0.jpg")).convert("RGB")))
  outputs = {}
  for backend in detection_input.RESIZE_BACKENDS:
    parser = detection_input.Parser(normalize=False, resize_backend=backend)
    for flip in (False, True):
      out, info = parser._resize(image, tf.constant(flip))  # pylint: disable=protected-access
      outputs[backend, flip] = out.numpy().astype(int)
  h, w = info[1].numpy().astype(int)
  for flip in (False, True):
    diff = np.abs(outputs["opencv", flip] - outputs["tensorflow", flip])
    assert diff.max() <= 1 and diff.mean() < 0.5
  np.testing.assert_array_equal(outputs["opencv", True][:h, :w], outputs["opencv", False][:h, :w][:, ::-1])
  assert not outputs["opencv", True][h:].any() and not outputs["opencv", True][:, w:].any()


def test_unknown_resize_backend_is_refused():
  with pytest.raises(ValueError, match="resize_backend"):
    detection_input.Parser(resize_backend="pil")


@pytest.mark.parametrize("flip", [False, True])
def test_box_transform_equals_model_gardens_flip_denormalize_resize_chain(flip):
  from official.vision.ops import box_ops  # pylint: disable=import-outside-toplevel
  from official.vision.ops import preprocess_ops  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(int(flip))
  corners = np.sort(rng.uniform(-0.1, 1.1, size=(50, 2, 2)), axis=1)  # some outside the image
  boxes = tf.constant(np.concatenate([corners[:, 0], corners[:, 1]], axis=1), tf.float32)
  image_size = tf.constant([480.0, 640.0])
  size = detection_input.keep_aspect_size(image_size, 600, 1024)
  expected = box_ops.horizontal_flip_boxes(boxes) if flip else boxes
  expected = box_ops.denormalize_boxes(expected, image_size)
  expected = preprocess_ops.resize_and_crop_boxes(expected, size / image_size, size, tf.zeros([2]))
  got = detection_input.boxes_to_resized_pixels(boxes, size, tf.constant(flip))
  np.testing.assert_allclose(got, expected, atol=1e-3)



def test_train_parse_drops_boxes_empty_after_clipping_and_clips_to_max_instances():
  # The third box lies right of the image (empty once clipped); four kept boxes exceed max 3.
  boxes = [BOX, (0.0, 0.0, 1.0, 1.0), (0.2, 1.0, 0.4, 1.0), (0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.6, 0.6)]
  decoded = _decoded(64, 128, boxes=boxes, box_labels=[1, 0, 2, 0, 1])
  parser = detection_input.Parser(short_side=30, long_side=50, min_level=3, max_level=3,
                                  aug_rand_hflip=False, max_num_instances=3, rpn_targets=False)
  _, labels = parser.parse_fn(is_training=True)(decoded)
  assert labels["gt_boxes"].shape == (3, 4) and labels["gt_classes"].shape == (3,)
  np.testing.assert_array_equal(labels["gt_classes"], [2, 1, 1])  # Box classes + 1, third one dropped.
  np.testing.assert_allclose(labels["gt_boxes"][1], [0, 0, 64 * 50 / 128, 50], atol=1e-4)
  _, labels = detection_input.Parser(short_side=30, long_side=50, min_level=3, max_level=3,
                                     aug_rand_hflip=False, max_num_instances=6, rpn_targets=False
                                     ).parse_fn(is_training=True)(decoded)
  np.testing.assert_array_equal(labels["gt_classes"], [2, 1, 1, 2, -1, -1])
  np.testing.assert_array_equal(labels["gt_boxes"][4:], -1)
