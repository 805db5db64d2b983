"""Tests of LabelMap, Hierarchy and the hierarchy expansion, on the real Open Images files."""

import json

import numpy as np
import pytest

from google.protobuf import text_encoding

from oi_models import labels
from oi_models.io.errors import AnnotationError


def _boxable(shared):
  return labels.LabelMap.from_csv(shared("class_lists", "class-descriptions-boxable.csv"))


def _hierarchy600(shared):
  return labels.Hierarchy.from_json(shared("hierarchy", "bbox_labels_600_hierarchy.json"))


def _subcategory_ancestors(tree):
  """Ancestors by a plain recursive walk of the JSON's Subcategory keys (the official tool's way)."""
  found = {}

  def walk(node, chain):
    mid = node["LabelName"]
    found.setdefault(mid, set()).update(chain)
    for child in node.get("Subcategory", ()):
      walk(child, chain + ([mid] if mid != tree["LabelName"] else []))

  walk(tree, [])
  return found


def test_600_hierarchy_has_root_and_the_601_boxable_classes(shared):
  hierarchy, boxable = _hierarchy600(shared), _boxable(shared)
  assert hierarchy.root == labels.ROOT_MID
  assert len(hierarchy.mids) == 602
  assert set(hierarchy.mids) - {labels.ROOT_MID} == set(boxable.mids)


def test_challenge_hierarchy_has_500_classes(shared):
  hierarchy = labels.Hierarchy.from_json(shared("hierarchy", "challenge-2019-label500-hierarchy.json"))
  classes = labels.LabelMap.from_csv(shared("class_lists", "challenge-2019-classes-description-500.csv"))
  assert len(hierarchy.mids) == 501
  assert len(classes) == 500
  assert set(hierarchy.mids) - {hierarchy.root} == set(classes.mids)


def test_hierarchy_is_a_dag_with_several_parents(shared):
  hierarchy, boxable = _hierarchy600(shared), _boxable(shared)
  knife = boxable.mids[boxable.names.index("Knife")]
  parents = {boxable.name(p) for p in hierarchy.parents(knife)}
  assert parents == {"Weapon", "Kitchen utensil"}
  several = [m for m in hierarchy.mids if len(hierarchy.parents(m)) > 1]
  assert len(several) > 10


def test_ancestor_chains_checked_by_hand(shared):
  hierarchy, boxable = _hierarchy600(shared), _boxable(shared)
  name = lambda mids: {boxable.name(m) for m in mids}
  mid = lambda n: boxable.mids[boxable.names.index(n)]
  # Read off the JSON: Knife sits under Weapon (under Tool) and under Kitchen utensil (under Kitchenware).
  assert name(hierarchy.ancestors(mid("Knife"))) == {"Weapon", "Tool", "Kitchen utensil", "Kitchenware"}
  assert name(hierarchy.ancestors(mid("Rose"))) == {"Flower", "Plant"}
  assert name(hierarchy.ancestors(mid("Football"))) == {"Ball", "Sports equipment"}
  assert name(hierarchy.ancestors(mid("Tank"))) == {"Weapon", "Land vehicle", "Vehicle"}
  assert labels.ROOT_MID not in hierarchy.ancestors(mid("Man"))
  assert mid("Rose") in hierarchy.descendants(mid("Plant"))


def test_ancestors_equal_a_plain_walk_of_subcategories(shared):
  path = shared("hierarchy", "bbox_labels_600_hierarchy.json")
  hierarchy = labels.Hierarchy.from_json(path)
  expected = _subcategory_ancestors(json.loads(path.read_text()))
  assert {m: set(hierarchy.ancestors(m)) for m in hierarchy.mids} == expected


def test_parts_are_not_is_a(shared):
  hierarchy, boxable = _hierarchy600(shared), _boxable(shared)
  mid = lambda n: boxable.mids[boxable.names.index(n)]
  assert mid("Door handle") in hierarchy.parts(mid("Door"))
  assert mid("Door") not in hierarchy.ancestors(mid("Door handle"))
  assert mid("Human body") not in hierarchy.ancestors(mid("Human eye"))


def test_label_maps_and_class_lists_agree(shared):
  boxable = _boxable(shared)
  v4 = labels.LabelMap.from_pbtxt(shared("label_maps", "oid_v4_label_map.pbtxt"))
  assert set(v4.mids) == set(boxable.mids)
  assert all(v4.name(m) == boxable.name(m) for m in v4.mids)
  tfds_boxable = shared("class_lists", "tfds", "open_images_classes_boxable.txt").read_text().split()
  assert set(tfds_boxable) == set(boxable.mids)
  challenge_csv = labels.LabelMap.from_csv(shared("class_lists", "challenge-2019-classes-description-500.csv"))
  challenge_pbtxt = labels.LabelMap.from_pbtxt(
      shared("label_maps", "oid_object_detection_challenge_500_label_map.pbtxt"))
  assert challenge_csv.mids == challenge_pbtxt.mids
  trainable = labels.LabelMap.from_pbtxt(shared("label_maps", "oid_bbox_trainable_label_map.pbtxt"))
  assert len(trainable) == 545 and set(trainable.mids) <= set(boxable.mids)


def test_all_class_descriptions_with_quotes_and_mixed_line_ends(shared):
  path = shared("class_lists", "class-descriptions.csv")
  raw = path.read_bytes()
  assert b"\r\n" in raw and raw.count(b"\n") > raw.count(b"\r\n")  # really mixed
  all_classes = labels.LabelMap.from_csv(path)
  assert len(all_classes) == 19995
  assert 'Fiat 500 "topolino"' in all_classes.names
  assert not any(n.endswith("\r") for n in all_classes.names)
  tfds_all = shared("class_lists", "tfds", "open_images_classes_all.txt").read_text().split()
  assert list(all_classes.mids) == tfds_all


def test_csv_header_bom_quotes_and_crlf(tmp_path):
  path = tmp_path / "classes.csv"
  path.write_bytes("\ufeffLabelName,DisplayName\r\n/m/01,\"Lemon, lime and bitters\"\n"
                   "/m/02,Plain\r\n/m/03,\"Say \"\"hi\"\"\"\n".encode("utf-8"))
  label_map = labels.LabelMap.from_csv(path)
  assert label_map.mids == ("/m/01", "/m/02", "/m/03")
  assert label_map.names == ("Lemon, lime and bitters", "Plain", 'Say "hi"')
  out = tmp_path / "out.csv"
  label_map.to_csv(out)
  assert labels.LabelMap.from_csv(out) == label_map


@pytest.mark.parametrize("text, line, field", [
    ("/m/01,One\nnot-a-mid,Two\n", 2, "LabelName"),
    ("/m/01,One\n/m/02\n", 2, "DisplayName"),
])
def test_csv_errors_name_file_line_and_field(tmp_path, text, line, field):
  path = tmp_path / "bad.csv"
  path.write_text(text)
  with pytest.raises(AnnotationError) as error:
    labels.LabelMap.from_csv(path)
  assert (error.value.path, error.value.line, error.value.field) == (str(path), line, field)
  assert f"bad.csv:{line}" in str(error.value)


def test_duplicate_mid_is_an_error(tmp_path):
  path = tmp_path / "dup.csv"
  path.write_text("/m/01,One\n/m/01,Again\n")
  with pytest.raises(AnnotationError, match="twice"):
    labels.LabelMap.from_csv(path)


def test_indices_of_unknown_mids():
  label_map = labels.LabelMap.from_pairs([("/m/a", "A"), ("/m/b", "B")])
  np.testing.assert_array_equal(label_map.indices(["/m/b", "/m/a"]), [1, 0])
  np.testing.assert_array_equal(label_map.indices(["/m/b", "/m/zz"], missing=-1), [1, -1])
  with pytest.raises(KeyError):
    label_map.indices(["/m/zz"])


def _descendants_from_ancestors(ancestors, root):
  """Descendants by inverting an ancestor map: m is a descendant of p iff p is an ancestor of m.

  The walk leaves the root out of every ancestor set (as Hierarchy.ancestors does); the root is the
  ancestor of every other MID, so its descendants are all of them.
  """
  found = {p: set() for p in ancestors}
  for m, ancestors_of_m in ancestors.items():
    for p in ancestors_of_m:
      found[p].add(m)
  found[root] = set(ancestors) - {root}
  return found


def test_expansion_equals_brute_force_on_the_real_hierarchy(shared):
  hierarchy, boxable = _hierarchy600(shared), _boxable(shared)
  path = shared("hierarchy", "bbox_labels_600_hierarchy.json")
  walked = _subcategory_ancestors(json.loads(path.read_text()))
  descendants = _descendants_from_ancestors(walked, hierarchy.root)
  assert set(descendants) == set(hierarchy.mids)
  assert {m: set(hierarchy.descendants(m)) for m in hierarchy.mids} == descendants
  expander = labels.Expander(hierarchy, boxable)
  rng = np.random.default_rng(0)
  box_labels = rng.integers(0, len(boxable), 3000)
  rows, out = expander.boxes(box_labels)
  expected = [(r, i) for r, label in enumerate(box_labels)
              for i in [label] + sorted(boxable.index(a) for a in hierarchy.ancestors(boxable.mids[label]))]
  assert list(zip(rows.tolist(), out.tolist())) == expected

  confidence = rng.choice(np.array([0.0, 1.0, 0.7], np.float32), size=box_labels.size)
  rows, out = expander.image_labels(box_labels, confidence)
  expected = []
  for r, (label, conf) in enumerate(zip(box_labels, confidence)):
    mid = boxable.mids[label]
    relatives = (hierarchy.ancestors(mid) if conf == 1 else descendants[mid] if conf == 0 else ())
    expected += [(r, label)] + [(r, boxable.index(m)) for m in sorted(relatives, key=boxable.index)]
  assert list(zip(rows.tolist(), out.tolist())) == expected


def test_expansion_of_a_small_dag_by_hand():
  tree = {"LabelName": labels.ROOT_MID, "Subcategory": [
      {"LabelName": "/m/animal", "Subcategory": [{"LabelName": "/m/cat"}, {"LabelName": "/m/pet"}]},
      {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/cat"}]},
  ]}
  hierarchy = labels.Hierarchy(tree)
  label_map = labels.LabelMap.from_pairs([("/m/cat", "Cat"), ("/m/animal", "Animal"), ("/m/pet", "Pet")])
  expander = labels.Expander(hierarchy, label_map)
  rows, out = expander.boxes(np.array([0, 2]))
  assert rows.tolist() == [0, 0, 0, 1, 1] and out.tolist() == [0, 1, 2, 2, 1]
  # A verified negative "animal" makes cat and pet negative too; a positive cat makes both positive.
  rows, out = expander.image_labels(np.array([1, 0]), np.array([0.0, 1.0]))
  assert rows.tolist() == [0, 0, 0, 1, 1, 1] and out.tolist() == [1, 0, 2, 0, 1, 2]
  assert expander.up.dense()[0].tolist() == [True, True, True]


def test_cycle_in_hierarchy_is_an_error():
  tree = {"LabelName": labels.ROOT_MID, "Subcategory": [
      {"LabelName": "/m/a", "Subcategory": [{"LabelName": "/m/a"}]}]}
  with pytest.raises(AnnotationError, match="cycle"):
    labels.Hierarchy(tree)


def test_cycle_through_several_branches_is_an_error_not_a_recursion_error():
  # A under B in one branch, B under A in another: no single path of the JSON repeats a MID.
  tree = {"LabelName": labels.ROOT_MID, "Subcategory": [
      {"LabelName": "/m/a", "Subcategory": [{"LabelName": "/m/b"}]},
      {"LabelName": "/m/c", "Subcategory": [{"LabelName": "/m/b", "Subcategory": [
          {"LabelName": "/m/d", "Subcategory": [{"LabelName": "/m/a"}]}]}]}]}
  with pytest.raises(AnnotationError, match=r"cycle: (/m/\w > ){3}/m/\w"):
    labels.Hierarchy(tree)


@pytest.mark.parametrize("tree, field", [
    ([{"LabelName": labels.ROOT_MID}], "LabelName"),
    ({"LabelName": labels.ROOT_MID, "Subcategory": {"LabelName": "/m/a"}}, "Subcategory"),
    ({"LabelName": labels.ROOT_MID, "Subcategory": ["/m/a"]}, "Subcategory"),
    ({"LabelName": labels.ROOT_MID, "Part": {"LabelName": "/m/a"}}, "Part"),
    ({"LabelName": labels.ROOT_MID, "Subcategory": [{"Subcategory": []}]}, "LabelName"),
])
def test_malformed_hierarchy_structure_is_a_clear_error(tmp_path, tree, field):
  path = tmp_path / "h.json"
  path.write_text(json.dumps(tree))
  with pytest.raises(AnnotationError) as error:
    labels.Hierarchy.from_json(path)
  assert (error.value.path, error.value.field) == (str(path), field)


def test_official_hierarchies_fit_their_class_lists(shared):
  h600, h500 = _hierarchy600(shared), labels.Hierarchy.from_json(
      shared("hierarchy", "challenge-2019-label500-hierarchy.json"))
  for class_list in ("class-descriptions-boxable.csv", "challenge-2019-classes-description-500.csv",
                     "class-descriptions.csv"):  # equal, a subset, a superset of the MIDs
    label_map = labels.LabelMap.from_csv(shared("class_lists", class_list))
    assert labels.validate_hierarchy(h600, label_map) is h600
  # V4's 545 trainable classes and the Challenge tree: each has MIDs the other lacks.
  trainable = labels.LabelMap.from_pbtxt(shared("label_maps", "oid_bbox_trainable_label_map.pbtxt"))
  unknown = sorted(set(h500.mids) - {h500.root} - set(trainable.mids))
  with pytest.raises(AnnotationError, match=f"{len(unknown)} of its 500 MIDs .*{unknown[0]}"):
    labels.validate_hierarchy(h500, trainable)
  with pytest.raises(AnnotationError, match="not in the class list"):
    labels.Expander(h500, trainable)  # expansion refuses it too


def test_hierarchy_with_a_typo_is_an_error_naming_the_mid(tmp_path, shared):
  text = shared("hierarchy", "challenge-2019-label500-hierarchy.json").read_text()
  classes = labels.LabelMap.from_csv(shared("class_lists", "challenge-2019-classes-description-500.csv"))
  mid = classes.mids[7]
  path = tmp_path / "typo.json"
  path.write_text(text.replace(f'"{mid}"', f'"{mid}x"'))
  with pytest.raises(AnnotationError, match=f"typo.json: field 'LabelName': 1 of its 500 MIDs .*{mid}x"):
    labels.validate_hierarchy(path, classes)
  assert labels.validate_hierarchy(json.loads(text), classes).root == labels.ROOT_MID


def test_non_ascii_names_from_label_maps_in_both_text_format_spellings(tmp_path, shared):
  """The 363 non-ASCII names of the 19,995 classes survive a label map, UTF-8 or escaped."""
  classes = labels.LabelMap.from_csv(shared("class_lists", "class-descriptions.csv"))
  assert sum(not name.isascii() for name in classes.names) == 363
  assert "Crêpe" in classes.names
  for as_utf8 in (True, False):
    path = tmp_path / f"utf8_{as_utf8}.pbtxt"
    with open(path, "w", encoding="utf-8") as f:
      for i, (mid, name) in enumerate(zip(classes.mids, classes.names), start=1):
        escaped = text_encoding.CEscape(name.encode("utf-8"), as_utf8=as_utf8)
        f.write(f'item {{\n  name: "{mid}"\n  id: {i}\n  display_name: "{escaped}"\n}}\n')
    assert labels.LabelMap.from_pbtxt(path) == classes
  assert "\\303\\252" in (tmp_path / "utf8_False.pbtxt").read_text()  # Crêpe's ê, octal


def test_pbtxt_items_in_any_order_are_read_by_id(tmp_path, shared):
  path = shared("label_maps", "oid_v4_label_map.pbtxt")
  ordered = labels.LabelMap.from_pbtxt(path)
  items = ["item {" + block for block in path.read_text().split("item {")[1:]]
  np.random.default_rng(0).shuffle(items)
  shuffled = tmp_path / "shuffled.pbtxt"
  shuffled.write_text("".join(items))
  assert labels.LabelMap.from_pbtxt(shuffled) == ordered
  duplicate = tmp_path / "duplicate.pbtxt"
  duplicate.write_text(items[0] + items[1].replace(items[1].split("id: ")[1].split()[0],
                                                   items[0].split("id: ")[1].split()[0], 1))
  with pytest.raises(AnnotationError, match="duplicate.pbtxt:.* field 'id': .* appears twice"):
    labels.LabelMap.from_pbtxt(duplicate)


@pytest.mark.parametrize("header", ["LabelName,DisplayName", "MID,DisplayName"])
def test_only_the_official_header_words_make_a_header(tmp_path, header):
  path = tmp_path / "classes.csv"
  path.write_text(f"{header}\n/m/01,One\n")
  assert labels.LabelMap.from_csv(path).mids == ("/m/01",)
  path.write_text("/m/0 1,One\n/m/02,Two\n")  # a malformed first MID is not a header
  with pytest.raises(AnnotationError, match="classes.csv:1: field 'LabelName'"):
    labels.LabelMap.from_csv(path)
