"""Ground truth from the official files: class-list filtering, verified labels, hierarchy expansion."""

import csv
import json
import re

import numpy as np
import pytest

from oi_models import labels
from oi_models.datasets import make_sample
from oi_models.io import readers
from oi_models.evaluation import ground_truth
from oi_models.evaluation import predictions

# Root > Animal > {Dog, Cat}; Root > Pet > Dog (Dog has two parents); Root > Vehicle > Car.
TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/an", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"}]},
    {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/dog"}]},
    {"LabelName": "/m/veh", "Subcategory": [{"LabelName": "/m/car"}]}]}
CLASSES = [("/m/an", "Animal"), ("/m/dog", "Dog"), ("/m/cat", "Cat"), ("/m/pet", "Pet"),
           ("/m/veh", "Vehicle"), ("/m/car", "Car"), ("/m/oth", "Other")]
AN, DOG, CAT, PET, VEH, CAR, OTH = range(7)
IMG1, IMG2, IMG3 = "000000000000000a", "000000000000000b", "000000000000000c"


@pytest.fixture
def files(tmp_path):
  (tmp_path / "h.json").write_text(json.dumps(TREE))
  (tmp_path / "classes.csv").write_text("".join(f"{m},{n}\n" for m, n in CLASSES))
  (tmp_path / "boxes.csv").write_text(
      "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
      f"{IMG1},/m/dog,0.1,0.5,0.2,0.6,0\n"
      f"{IMG1},/m/car,0.25,0.75,0,1,1\n"
      f"{IMG2},/m/oth,0,0.5,0,0.5,0\n"
      f"{IMG2},/m/notlisted,0,0.5,0,0.5,0\n")
  (tmp_path / "labels.csv").write_text(
      "ImageID,Source,LabelName,Confidence\n"
      f"{IMG1},verification,/m/dog,1\n"
      f"{IMG1},verification,/m/veh,0\n"
      f"{IMG3},verification,/m/an,0\n"
      f"{IMG3},verification,/m/cat,1\n"
      f"{IMG3},machine,/m/dog,0.6\n")
  return tmp_path


def test_hand_worked_expansion(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  truth = ground_truth.load(files / "boxes.csv", label_map, files / "h.json", files / "labels.csv")
  key1, key2, key3 = readers.image_id_to_key([IMG1, IMG2, IMG3])
  # Each box, then its copies for its ancestors (by class index), in file order.
  np.testing.assert_array_equal(truth.box_image_ids, [key1] * 5 + [key2])
  np.testing.assert_array_equal(truth.box_labels, [DOG, AN, PET, CAR, VEH, OTH])
  dog_box, car_box = [0.2, 0.1, 0.6, 0.5], [0.0, 0.25, 1.0, 0.75]
  # Exactly the float64 values of the text, as the official evaluator's pandas reads them.
  np.testing.assert_array_equal(truth.boxes, [dog_box] * 3 + [car_box] * 2 + [[0, 0, 0.5, 0.5]])
  np.testing.assert_array_equal(truth.box_is_group_of, [0, 0, 0, 1, 1, 0])
  # Positives up, negatives down; on IMG3 Cat's positive beats Animal's negative for Animal and Cat;
  # the machine label is not used.
  np.testing.assert_array_equal(truth.label_image_ids, [key1] * 5 + [key3] * 3)
  np.testing.assert_array_equal(truth.label_labels, [AN, DOG, PET, VEH, CAR, AN, DOG, CAT])
  _, _, positive = ground_truth.read_verified_labels(files / "labels.csv", label_map,
                                                     ground_truth.make_expander(files / "h.json",
                                                                                label_map))
  np.testing.assert_array_equal(positive, [1, 1, 1, 0, 0, 1, 0, 1])
  assert truth.expanded
  assert truth.reports["boxes"].skipped == {ground_truth.OUTSIDE_CLASS_LIST: 1}
  assert truth.reports["boxes"].rows_kept == 3
  assert truth.reports["image_labels"].skipped == {ground_truth.NOT_VERIFIED: 1}


def test_expand_false_keeps_rows(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  truth = ground_truth.load(files / "boxes.csv", label_map, files / "h.json", files / "labels.csv",
                            expand=False)
  np.testing.assert_array_equal(truth.box_labels, [DOG, CAR, OTH])
  np.testing.assert_array_equal(truth.label_labels, [DOG, VEH, AN, CAT])
  assert not truth.expanded


def test_expand_predictions(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  expander = ground_truth.make_expander(files / "h.json", label_map)
  preds = predictions.Predictions(np.array([7, 8], np.uint64), np.array([DOG, OTH], np.int32),
                                  np.array([0.9, 0.4]), np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]]))
  out = ground_truth.expand_predictions(preds, expander)
  np.testing.assert_array_equal(out.label, [DOG, AN, PET, OTH])
  np.testing.assert_array_equal(out.image_id, [7, 7, 7, 8])
  np.testing.assert_array_equal(out.score, [0.9, 0.9, 0.9, 0.4])


def test_wrong_class_list_is_an_error(files, tmp_path):
  (tmp_path / "other.csv").write_text("/m/x,X\n")
  with pytest.raises(ValueError, match="class list"):
    ground_truth.load(files / "boxes.csv", labels.LabelMap.from_file(tmp_path / "other.csv"))


def test_unknown_group_of_counts_as_group_of_and_a_v3_file_has_none(files):
  """The official evaluator casts IsGroupOf to bool: -1 is group-of. V3 files lack the column."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  unknown = files / "unknown.csv"
  unknown.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                     f"{IMG1},/m/oth,0.1,0.5,0.2,0.6,-1\n{IMG1},/m/oth,0.1,0.5,0.2,0.6,0\n")
  truth = ground_truth.load(unknown, label_map)
  np.testing.assert_array_equal(truth.box_is_group_of, [True, False])
  assert truth.reports["boxes"].adjusted[ground_truth.UNKNOWN_GROUP_OF] == 1
  v3 = files / "v3.csv"
  v3.write_text("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax\n"
                f"{IMG1},xclick,/m/oth,1,0.1,0.5,0.2,0.6\n")
  truth = ground_truth.load(v3, label_map)
  np.testing.assert_array_equal(truth.box_is_group_of, [False])
  assert truth.reports["boxes"].adjusted[ground_truth.NO_GROUP_OF_COLUMN] == 1


def test_strict_names_line(files):
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "bad.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/dog,0.1,0.5,0.2,0.6,0\n{IMG1},/m/dog,0.1,0.5,0.2,x,0\n")
  with pytest.raises(readers.AnnotationError) as error:
    ground_truth.load(path, label_map, strict=True)
  assert (error.value.line, error.value.field) == (3, "YMax")


def test_matches_direct_expansion_on_sample(tmp_path):
  """Expansion of make_sample's files equals a row-by-row expansion through Hierarchy's sets."""
  info = make_sample.make_sample(tmp_path / "sample", num_images=40)
  label_map = labels.LabelMap.from_file(info.class_list)
  hierarchy = labels.Hierarchy.from_json(info.hierarchy)
  boxes, image_labels = info.boxes["train"], info.image_labels["train"]
  truth = ground_truth.load(boxes, label_map, hierarchy, image_labels)

  expected = []
  with open(boxes) as f:
    for row in csv.DictReader(f):
      mid = row["LabelName"]
      for cls in [mid] + sorted(hierarchy.ancestors(mid), key=label_map.index):
        box = tuple(float(row[k]) for k in ("YMin", "XMin", "YMax", "XMax"))
        expected.append((row["ImageID"], label_map.index(cls), box, row["IsGroupOf"] == "1"))
  got = list(zip(readers.key_to_image_id(truth.box_image_ids), truth.box_labels.tolist(),
                 truth.box_is_group_of.tolist()))
  assert got == [(i, c, g) for i, c, _, g in expected]  # Same rows in the same order.
  np.testing.assert_array_equal(truth.boxes, [b for _, _, b, _ in expected])
  assert truth.box_is_group_of.any()

  verdict = {}
  with open(image_labels) as f:
    for row in csv.DictReader(f):
      if row["LabelName"] not in label_map or row["Confidence"] not in ("0", "1"):
        continue
      mid, positive = row["LabelName"], row["Confidence"] == "1"
      related = hierarchy.ancestors(mid) if positive else hierarchy.descendants(mid)
      for cls in {mid} | {m for m in related if m in label_map}:
        key = (row["ImageID"], label_map.index(cls))
        verdict[key] = verdict.get(key, False) or positive
  ids, classes, positive = ground_truth.read_verified_labels(
      image_labels, label_map, ground_truth.make_expander(hierarchy, label_map))
  got = dict(zip(zip(readers.key_to_image_id(ids), classes.tolist()), positive.tolist()))
  assert got == verdict
  assert any(verdict.values()) and not all(verdict.values())


def test_coordinates_reach_the_metric_as_the_official_pandas_reads_them(files):
  """No clipping or range skip: 1.0005 and -0.0002 stay, as pandas parses them (float64)."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "raw.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/oth,0.1,1.0005,-0.0002,0.6,0\n"
                  f"{IMG1},/m/oth,0.1,1.5,0.2,0.6,0\n")
  truth = ground_truth.load(path, label_map)
  np.testing.assert_array_equal(truth.boxes, [[-0.0002, 0.1, 0.6, 1.0005], [0.2, 0.1, 0.6, 1.5]])
  assert not truth.reports["boxes"].adjusted and not truth.reports["boxes"].skipped


def test_inverted_ground_truth_box_is_an_error_naming_the_file(files):
  """The official BoxList rejects XMin > XMax; the error names the file and the row's image."""
  label_map = labels.LabelMap.from_file(files / "classes.csv")
  path = files / "inverted.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                  f"{IMG1},/m/oth,0.1,0.5,0.2,0.6,0\n"
                  f"{IMG2},/m/oth,0.6,0.5,0.2,0.6,0\n")
  for strict in (False, True):
    with pytest.raises(ValueError, match=re.escape(f"{path}: 1 ground-truth boxes") + f".*{IMG2}"):
      ground_truth.load(path, label_map, strict=strict)
