"""slim resnet_v1 -> TF2 conversion on a small slim model: parity with slim's logits, and every variable
of the source used or reported (extra variables, moving averages, a missing head, the wrong model).

The full-size resnet_v1_101 (5000 classes) through the installed CLI is test_slim_resnet_v1_101.py.
"""

import json

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from oi_models.modeling import convert_checkpoint
from oi_models.modeling import converters
from tests.conftest import shared_path
from tests.modeling.converters import conftest

SCOPE = "resnet_v1_tiny"


def _seven_classes(tmp_path):
  """The first 7 trainable MIDs, one per line as `classes-trainable.txt` is, and their names."""
  mids = shared_path("class_lists", "tfds", "open_images_classes_trainable.txt").read_text().split()[:7]
  path = tmp_path / "classes-trainable.txt"
  path.write_text("\n".join(mids) + "\n")
  return path, mids


def _variant(tiny_oracle, tmp_path, change):
  """A copy of the oracle's checkpoint with `change(tensors)` applied."""
  tensors = conftest.read_tf1_checkpoint(tiny_oracle["checkpoint"])
  change(tensors)
  return conftest.write_tf1_checkpoint(str(tmp_path / "variant.ckpt"), tensors)


def test_converted_model_gives_slims_logits(tiny_oracle, tmp_path):
  classes, mids = _seven_classes(tmp_path)
  descriptions = shared_path("class_lists", "class-descriptions.csv")
  out = tmp_path / "converted"
  report = convert_checkpoint.convert("slim_resnet_v1", tiny_oracle["checkpoint"], str(out),
                                      str(classes), str(descriptions))
  # 29 convs x (weights + beta + 2 moving statistics) + logits weights and biases; nothing else.
  assert (report["source_variables"], report["used"], report["unused"]) == (118, 118, {})
  assert (report["model_variables"], report["model_variables_set"], report["left_at_init"]) == (
      118, 118, [])
  model, task = conftest.build_from_config(out / "config.yaml", "task.model.input_size=[64,64,3]")
  assert task.train_data.preprocessing == task.validation_data.preprocessing == "vgg"
  assert task.model.backbone.slim_resnet_v1.block_repeats == [2, 2, 2, 2]
  got = model(tiny_oracle["images"], training=False).numpy()
  difference = conftest.max_relative_difference(got, tiny_oracle["logits"])
  print(f"tiny resnet_v1: max relative difference {difference:.2e}")
  assert difference <= 1e-4
  lines = (out / "class_list.csv").read_text().splitlines()
  assert [line.split(",")[0] for line in lines] == mids
  assert lines[0].split(",", 1)[1] != mids[0]  # a display name from class-descriptions.csv
  assert task.class_list == str(out / "class_list.csv")


def test_extra_variables_are_reported_by_kind_and_strict_fails(tiny_oracle, tmp_path):
  def add(tensors):
    tensors[f"{SCOPE}/aux_head/weights"] = np.ones([3, 3], np.float32)
    tensors[f"{SCOPE}/conv1/weights/RMSProp"] = np.zeros([7, 7, 3, 64], np.float32)
    tensors["global_step"] = np.array(7, np.int64)
  checkpoint = _variant(tiny_oracle, tmp_path, add)
  convert_checkpoint.define_flags()  # what its run() does before absl parses the command line
  flags.FLAGS.mark_as_parsed()
  common = dict(source="slim_resnet_v1", checkpoint=checkpoint)
  with flagsaver.flagsaver(output_dir=str(tmp_path / "strict"), strict=True, **common):
    assert convert_checkpoint.main(["oi-convert-checkpoint"]) == 1
  report = json.loads((tmp_path / "strict" / "conversion_report.json").read_text())
  assert (report["source_variables"], report["used"]) == (121, 118)
  assert report["unused"] == {"other": [f"{SCOPE}/aux_head/weights"],
                              "optimizer slot": [f"{SCOPE}/conv1/weights/RMSProp"],
                              "step counter": ["global_step"]}
  lines = convert_checkpoint.problems(report)
  assert any("aux_head" in line and "(other)" in line for line in lines)
  # Without --strict the same conversion succeeds (the unused variables are warnings).
  with flagsaver.flagsaver(output_dir=str(tmp_path / "lenient"), **common):
    assert convert_checkpoint.main(["oi-convert-checkpoint"]) == 0


def test_moving_averages_are_taken_on_request_and_reported_otherwise(tiny_oracle, tmp_path):
  name = f"{SCOPE}/block2/unit_1/bottleneck_v1/conv2/weights"
  def add(tensors):
    tensors[name + "/ExponentialMovingAverage"] = tensors[name] * 2
  checkpoint = _variant(tiny_oracle, tmp_path, add)
  raw = converters.SourceCheckpoint(checkpoint)
  plain = converters.get("slim_resnet_v1")(raw, None)
  assert raw.unused() == {"moving average": [name + "/ExponentialMovingAverage"]}
  averaged = converters.get("slim_resnet_v1")(
      converters.SourceCheckpoint(checkpoint, prefer_moving_averages=True), None)
  layer = "block2/unit_1/bottleneck_v1/conv2"
  conv_plain = plain.model.backbone.slim_layers[layer][0].kernel.numpy()
  conv_averaged = averaged.model.backbone.slim_layers[layer][0].kernel.numpy()
  np.testing.assert_array_equal(conv_averaged, 2 * conv_plain)
  assert averaged.transfer.source.unused() == {}


def test_a_checkpoint_without_logits_needs_a_class_list_and_reports_the_new_head(tiny_oracle,
                                                                                tmp_path):
  def drop(tensors):
    del tensors[f"{SCOPE}/logits/weights"], tensors[f"{SCOPE}/logits/biases"]
  checkpoint = _variant(tiny_oracle, tmp_path, drop)
  with pytest.raises(converters.ConversionError, match="give a class list"):
    convert_checkpoint.convert("slim_resnet_v1", checkpoint, str(tmp_path / "a"))
  classes, _ = _seven_classes(tmp_path)
  report = convert_checkpoint.convert("slim_resnet_v1", checkpoint, str(tmp_path / "b"), str(classes))
  assert report["used"] == report["source_variables"] == 116
  assert len(report["left_at_init"]) == 2 and all("dense" in n for n in report["left_at_init"])
  assert any("left at initialisation" in line for line in convert_checkpoint.problems(report))


def test_wrong_model_is_one_error_naming_what_is_missing(tiny_oracle, tmp_path):
  with pytest.raises(converters.ConversionError) as error:
    convert_checkpoint.convert("slim_resnet_v1_101", tiny_oracle["checkpoint"], str(tmp_path / "a"))
  message = str(error.value)
  assert "is not a slim resnet_v1_101 checkpoint: it has no variable under resnet_v1_101/" in message
  assert "resnet_v1_101/conv1/weights" in message and f"under: {SCOPE} (118)" in message
  assert not (tmp_path / "a").exists()  # nothing written

  # A shallower model under resnet_v1_50's scope: its missing units are named.
  def rename(tensors):
    for name in list(tensors):
      tensors[name.replace(SCOPE, "resnet_v1_50")] = tensors.pop(name)
  checkpoint = _variant(tiny_oracle, tmp_path, rename)
  with pytest.raises(converters.ConversionError, match="not a slim resnet_v1_50 checkpoint") as error:
    convert_checkpoint.convert("slim_resnet_v1_50", checkpoint, str(tmp_path / "c"))
  assert "resnet_v1_50/block1/unit_3/bottleneck_v1/conv1/weights" in str(error.value)
  # 53 convs x 4 variables (no gamma); absent: units 3 of block1 and block4, 3-4 of block2, 3-6 of block3.
  assert "96 of its 212 variables are missing" in str(error.value)

  missing = f"{SCOPE}/block3/unit_2/bottleneck_v1/conv2/BatchNorm/moving_variance"
  checkpoint = _variant(tiny_oracle, tmp_path, lambda tensors: tensors.pop(missing))
  with pytest.raises(converters.ConversionError, match="1 of its 116 variables are missing") as error:
    convert_checkpoint.convert("slim_resnet_v1", checkpoint, str(tmp_path / "b"))
  assert missing in str(error.value)


def test_class_list_must_match_the_logits(tiny_oracle, tmp_path):
  path = tmp_path / "eight.txt"
  mids = shared_path("class_lists", "tfds", "open_images_classes_trainable.txt").read_text().split()
  path.write_text("\n".join(mids[:8]))
  with pytest.raises(converters.ConversionError, match="has 7 classes, the class list 8"):
    convert_checkpoint.convert("slim_resnet_v1", tiny_oracle["checkpoint"], str(tmp_path / "a"),
                               str(path))


def test_an_existing_conversion_is_kept_unless_overwrite(tiny_oracle, tmp_path):
  (tmp_path / "checkpoint").write_text("an earlier conversion")
  with pytest.raises(converters.ConversionError, match="--overwrite"):
    convert_checkpoint.convert("slim_resnet_v1", tiny_oracle["checkpoint"], str(tmp_path))
