"""The converter registry and what converters share: source kinds, unused-variable kinds, class lists."""

import subprocess
import sys

import pytest

from oi_models.io.errors import AnnotationError
from oi_models.modeling import converters
from oi_models.modeling.backbones import slim_resnet_v1
from tests.conftest import shared_path


def test_registry_lists_every_slim_resnet_depth_and_rejects_unknown_kinds():
  kinds = converters.kinds()
  # The TF-free table names exactly the depths the backbone builds.
  assert {k for k in kinds if k.startswith("slim_resnet_v1_")} == {
      f"slim_resnet_v1_{i}" for i in slim_resnet_v1.SLIM_RESNET_V1_BLOCKS}
  assert {"slim_resnet_v1", "slim_inception_resnet_v2", "od_faster_rcnn_inception_resnet_v2"} <= set(kinds)
  assert "oidv2-resnet_v1_101.ckpt" in kinds["slim_resnet_v1_101"]
  with pytest.raises(converters.ConversionError,
                     match="unknown source kind 'resnet'; known: .*slim_resnet_v1_101"):
    converters.get("resnet")


def test_every_kind_names_a_converter_function():
  for kind in converters.kinds():
    converter = converters.get(kind)
    assert callable(converter.func), kind
    assert converter.func.__module__.startswith("oi_models.modeling.converters."), kind
  assert converters.get("slim_resnet_v1_152").keywords == {"model_id": 152}


@pytest.mark.parametrize("name, kind", [
    ("resnet_v1_101/conv1/weights/RMSProp", "optimizer slot"),
    ("resnet_v1_101/conv1/weights/RMSProp_1", "optimizer slot"),
    ("resnet_v1_101/logits/biases/Momentum", "optimizer slot"),
    ("resnet_v1_101/conv1/weights/ExponentialMovingAverage", "moving average"),
    ("global_step", "step counter"),
    ("beta1_power", "optimizer state"),
    ("resnet_v1_101/logits_aux/weights", "other"),
    ("resnet_v1_101/block1/unit_1/bottleneck_v1/conv1/BatchNorm/beta", "other"),
])
def test_unused_variables_are_told_apart_by_kind(name, kind):
  assert converters.unused_kind(name) == kind


def test_class_list_from_a_mid_list_with_official_descriptions(tmp_path):
  descriptions = shared_path("class_lists", "class-descriptions.csv")
  path = tmp_path / "classes-trainable.txt"
  path.write_text("/m/01yrx\r\n/m/0bt9lr\n\n/m/068hy\n")  # CRLF and a blank line, as files come
  classes = converters.read_class_list(str(path), str(descriptions))
  assert classes.mids == ("/m/01yrx", "/m/0bt9lr", "/m/068hy")
  assert classes.names == ("Cat", "Dog", "Pet")
  assert converters.read_class_list(str(path)).names == classes.mids  # no descriptions: MIDs


def test_class_list_errors_name_file_and_line(tmp_path):
  descriptions = shared_path("class_lists", "class-descriptions.csv")
  path = tmp_path / "classes.txt"
  path.write_text("/m/01yrx\nCat\n")
  with pytest.raises(AnnotationError, match=r"classes.txt:2: field 'LabelName': 'Cat' is not a MID"):
    converters.read_class_list(str(path))
  path.write_text("/m/01yrx\n/m/0zzzzzzz\n")
  with pytest.raises(AnnotationError, match=r"classes.txt:2: .*/m/0zzzzzzz has no name in"):
    converters.read_class_list(str(path), str(descriptions))
  path.write_text("/m/01yrx\n/m/01yrx\n")
  with pytest.raises(AnnotationError, match="appears twice"):
    converters.read_class_list(str(path))


def test_class_list_from_csv_and_label_map():
  boxable = converters.read_class_list(str(shared_path("class_lists", "class-descriptions-boxable.csv")))
  assert len(boxable) == 601
  v4 = converters.read_class_list(str(shared_path("label_maps", "oid_v4_label_map.pbtxt")))
  assert len(v4) == 601 and set(v4.mids) == set(boxable.mids)


def test_a_file_that_is_not_a_checkpoint_is_a_conversion_error(tmp_path):
  path = tmp_path / "model.ckpt"
  path.write_text("not a checkpoint")
  with pytest.raises(converters.ConversionError, match="not a readable checkpoint"):
    converters.SourceCheckpoint(str(path))


def test_the_command_lists_its_kinds_without_loading_tensorflow():
  """`oi-convert-checkpoint --help` names every kind and loads neither TensorFlow nor a converter."""
  script = ("import sys; from oi_models.modeling import convert_checkpoint as c; c.define_flags(); "
            "from absl import flags; print(sorted(flags.FLAGS['source'].parser.enum_values)); "
            "print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'tf_keras', "
            "'official', 'oi_models.modeling.converters.'))))")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  listed, loaded = done.stdout.splitlines()
  assert listed == str(sorted(converters.kinds()))
  assert loaded == "[]", loaded
