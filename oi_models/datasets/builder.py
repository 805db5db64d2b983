"""TFDS builder `open_images`: a user's Open Images download (manual_dir) to TFRecord/ArrayRecord shards.

    import oi_models.datasets  # registers the builder
    tfds.load("open_images/v6_max1024", data_dir=...,
              download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                  manual_dir=...)})
    tfds build --imports oi_models.datasets open_images/v6_max1024 --manual_dir=...

Configs are `<release>_<policy>`: release v4, v5, v6, v7 or challenge2019 (file names per release in
`releases`), image policy original, max1024 (long side <= 1024) or 300k (<= 300,000 pixels, like the
official thumbnails). Options that change the data are part of the config name, so two builds never
share a directory: `make_config("v6", "max1024", classes=["Cat"], max_images_per_split=100,
with_machine_labels=True)` is `v6_max1024_machine_n100_cls<hash>`. Names without `_cls` can be given to
`tfds.load` directly; a `classes=` config is passed as the object (`tfds.builder("open_images",
config=make_config(...))`), or read back with `tfds.builder_from_directory`.

- classes: MIDs or display names (case-insensitive). Both ClassLabels keep only these (in the release's
  order; the boxable one only those that are boxable), their annotations only, and an image is kept only
  when one of them is on it as a box or a positive human label (as FiftyOne's `classes=`).
- max_images_per_split: the N smallest ImageIDs among the images that qualify (a deterministic, roughly
  uniform subset: ImageIDs are hashes), before any image is read.
- with_machine_labels: adds `machine_labels` (same class list as `image_labels`).

What each split holds: the images of its image-metadata file (`*-images-with-rotation.csv`), or, without
one, the image files found (in the official downloader's flat folder of all splits: those with a box or
a human-verified label in the split's files, see `releases`); rows for other images are counted as
`row_for_absent_image`. Human-verified labels are 1 (positive) or 0 (verified negative): any other
Confidence is dropped, counted as `image_labels/dropped/confidence_not_0_or_1`. Nothing is
dropped without a count: `info.metadata["build_report"]` (also `build_report.json` next to the shards)
counts per split images listed, written and dropped by reason (missing, corrupt, truncated, ...), images
changed (rotated, resized, converted), and for boxes and labels rows read, written and dropped by reason,
including rows the lenient readers skipped (unknown MID, bad field). A split left without any example
(every image filtered out or broken) is not built, and counted (`split_not_built_no_examples`): TFDS
cannot write an empty split. Under Beam that cannot be known in advance, and TFDS fails the build.

What cannot give a dataset stops the build with a `BuildError` that says why: an unknown `classes`
entry, an empty or malformed class list (a duplicate MID), or a hierarchy whose MIDs do not nest with
the boxable class list (`labels.validate_hierarchy`: another release's file, or a typo).

The plain build holds the splits' annotations as numpy columns (a few GB for V6: 14.6M train boxes and
tens of millions of image-level labels) and reads the images in one process, each tar file once (tar
files without a metadata file are listed by a first pass only when max_images_per_split needs the
list before any image is read). With a Beam runner
(`DownloadConfig(beam_runner=...)`) `_generate_examples` returns a PTransform instead: the CSV files are
streamed in chunks, annotation rows keyed by ImageID and joined with the images (and the metadata) by
CoGroupByKey, so no worker holds a whole split; the counts go through Beam counters. Both
paths build each example with the same functions, so they write the same examples.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import logging
import pathlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from oi_models import labels as labels_lib
from oi_models.datasets import builder_images
from oi_models.io import readers
from oi_models.datasets import releases

VERSION = tfds.core.Version("1.0.0")
REPORT_FILE = "build_report.json"
_COUNTER_NAMESPACE = "open_images"
_FLAGS = ("is_occluded", "is_truncated", "is_group_of", "is_depiction", "is_inside")
_KINDS = ("boxes", "image_labels", "machine_labels")
_HEADLINE = ("images/listed", "images/written", "boxes/written", "image_labels/written")
_CITATION = """@article{OpenImages,
  author = {Alina Kuznetsova and Hassan Rom and Neil Alldrin and Jasper Uijlings and Ivan Krasin and
            Jordi Pont-Tuset and Shahab Kamali and Stefan Popov and Matteo Malloci and
            Alexander Kolesnikov and Tom Duerig and Vittorio Ferrari},
  title = {The Open Images Dataset V4: Unified image classification, object detection, and visual
           relationship detection at scale},
  journal = {IJCV},
  year = {2020}
}"""


class BuildError(ValueError):
  """The download or the options cannot give a dataset (unknown class, empty or bad class list...)."""


# ----------------------------------------------------------------------------------------------------
# Configs.


@dataclasses.dataclass(eq=False)
class OpenImagesConfig(tfds.core.BuilderConfig):
  """A release, an image policy, and the options that change what is built (see module docstring)."""

  release: str = "v6"
  image_policy: str = "original"
  classes: tuple[str, ...] = ()
  max_images_per_split: int | None = None
  with_machine_labels: bool = False


_CONFIGS: dict[str, OpenImagesConfig] = {}


def config_name(release: str, image_policy: str, classes: Sequence[str] = (),
                max_images_per_split: int | None = None, with_machine_labels: bool = False) -> str:
  """`<release>_<policy>[_machine][_n<N>][_cls<8 hex of the sorted classes>]`."""
  name = f"{release}_{image_policy}"
  if with_machine_labels:
    name += "_machine"
  if max_images_per_split is not None:
    name += f"_n{max_images_per_split}"
  if classes:
    digest = hashlib.sha1("\n".join(sorted(classes)).encode("utf-8")).hexdigest()[:8]
    name += f"_cls{digest}"
  return name


def make_config(release: str, image_policy: str, classes: Sequence[str] = (),
                max_images_per_split: int | None = None,
                with_machine_labels: bool = False) -> OpenImagesConfig:
  """The config for these options; the same options give the same object (TFDS compares identity)."""
  if release not in releases.RELEASES:
    raise ValueError(f"unknown release {release!r}; expected one of {list(releases.RELEASES)}")
  if image_policy not in builder_images.POLICIES:
    raise ValueError(f"unknown image policy {image_policy!r}; expected one of "
                     f"{builder_images.POLICIES}")
  if max_images_per_split is not None and max_images_per_split < 1:
    raise ValueError(f"max_images_per_split must be >= 1, got {max_images_per_split}")
  classes = tuple(classes)
  name = config_name(release, image_policy, classes, max_images_per_split, with_machine_labels)
  if name not in _CONFIGS:
    policy_text = {"original": "images as downloaded", "max1024": "long side at most 1024 px",
                   "300k": "at most 300,000 pixels"}[image_policy]
    options = [f"{len(classes)} classes"] if classes else []
    options += [f"at most {max_images_per_split} images per split"] if max_images_per_split else []
    options += ["with machine labels"] if with_machine_labels else []
    _CONFIGS[name] = OpenImagesConfig(
        name=name, description=f"{releases.RELEASES[release].description}; {policy_text}"
        + "".join(f"; {o}" for o in options),
        release=release, image_policy=image_policy, classes=classes,
        max_images_per_split=max_images_per_split, with_machine_labels=with_machine_labels)
  return _CONFIGS[name]


def parse_config_name(name: str) -> OpenImagesConfig | None:
  """The config a name without `_cls` stands for (`v6_max1024_machine_n100`), or None."""
  parts = name.split("_")
  for release in releases.RELEASES:
    for policy in builder_images.POLICIES:
      head = f"{release}_{policy}"
      if name != head and not name.startswith(head + "_"):
        continue
      rest = parts[len(head.split("_")):]
      machine = bool(rest) and rest[0] == "machine"
      rest = rest[1:] if machine else rest
      limit = None
      if rest and rest[0].startswith("n") and rest[0][1:].isdigit():
        limit, rest = int(rest[0][1:]), rest[1:]
      if not rest:
        return make_config(release, policy, (), limit, machine)
  return None


# ----------------------------------------------------------------------------------------------------
# Counting: the same counter names in the plain and the Beam build.


class Counts:
  """Counter names -> counts of one split; `add` is the only way anything is dropped or changed."""

  def __init__(self):
    self.counts: collections.Counter = collections.Counter()
    self.examples: dict[str, list[str]] = {}

  def add(self, name: str, n: int = 1, example: str | None = None) -> None:
    if n:
      self.counts[name] += int(n)
    if example is not None and len(self.examples.setdefault(name, [])) < 5:
      self.examples[name].append(example)


class _BeamCounts:
  """`Counts` as Beam counters (namespace open_images, name `<split>/<counter>`)."""

  def __init__(self, split: str):
    self._split = split
    self._beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam

  def add(self, name: str, n: int = 1, example: str | None = None) -> None:
    del example  # Counters carry numbers only.
    if n:
      self._beam.metrics.Metrics.counter(_COUNTER_NAMESPACE, f"{self._split}/{name}").inc(int(n))


def _add_read_report(counts, kind: str, report: readers.ReadReport) -> None:
  """Rows a lenient reader read and skipped, under `<kind>/read` and `<kind>/skipped_by_reader/...`."""
  counts.add(f"{kind}/rows_in_file", report.rows_read)
  for reason, n in report.skipped.items():
    examples = report.examples.get(reason, [])
    counts.add(f"{kind}/skipped_by_reader/{reason}", n, examples[0] if examples else None)
  for change, n in report.adjusted.items():
    counts.add(f"{kind}/adjusted_by_reader/{change}", n)


# ----------------------------------------------------------------------------------------------------
# What a split is built from, and the per-image functions both paths share.


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  """Everything one split's build needs, as plain picklable values (Beam workers get a copy)."""

  split: str
  files: Mapping[str, str | None]  # boxes, image_labels, machine_labels, metadata -> path or None.
  image_folder: str | None
  image_tars: tuple[str, ...]
  shared_folder: bool  # image_folder holds every split's images (the official downloader's).
  image_policy: str
  box_mids: tuple[str, ...]  # The release's boxable class list (reader label map).
  image_mids: tuple[str, ...]  # The release's image-level class list.
  box_remap: np.ndarray  # int32: release boxable index -> dataset ClassLabel index, -1 dropped.
  label_remap: np.ndarray  # Same for the image-level list.
  filter_classes: bool
  max_images: int | None


def _label_map(mids: Sequence[str]) -> labels_lib.LabelMap:
  return labels_lib.LabelMap(list(mids), list(mids))


def _source_text(sources: tuple, codes: np.ndarray) -> np.ndarray:
  """Source text of rows from their codes ("" where the file has none)."""
  names = np.asarray(list(sources) + [""], dtype=object)
  codes = np.asarray(codes, np.int64)
  return names[np.where(codes < 0, len(sources), codes)]


def _rows(kind: str, table, rows) -> dict[str, np.ndarray]:
  """One image's rows of a reader table as plain arrays (`rows`: slice or index array)."""
  if kind == "boxes":
    out = {"label": np.asarray(table.label[rows], np.int32),
           "bbox": np.stack([table.ymin[rows], table.xmin[rows], table.ymax[rows],
                             table.xmax[rows]], axis=1).astype(np.float32).reshape(-1, 4)}
    out.update({flag: np.asarray(getattr(table, flag)[rows], np.int8) for flag in _FLAGS})
  else:
    out = {"label": np.asarray(table.label[rows], np.int32),
           "confidence": np.asarray(table.confidence[rows], np.float32)}
  out["source"] = _source_text(table.sources, table.source[rows])
  return out


def _concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _num_rows(rows: dict[str, np.ndarray] | None) -> int:
  return 0 if rows is None else len(rows["label"])


_QUALIFYING_KINDS = ("boxes", "image_labels")


def qualifying_rows(spec: SplitSpec, kind: str, label: np.ndarray,
                    confidence: np.ndarray | None = None) -> np.ndarray:
  """Rows that make their image qualify: a box of a selected class, or a positive human label."""
  if kind == "boxes":
    return spec.box_remap[np.asarray(label)] >= 0
  return (spec.label_remap[np.asarray(label)] >= 0) & (np.asarray(confidence) == 1)


def qualifies(spec: SplitSpec, ann: Mapping[str, dict | None]) -> bool:
  """With a class filter: a selected class is on the image as a box or a positive human label."""
  if not spec.filter_classes:
    return True
  return any(ann.get(kind) is not None and np.any(qualifying_rows(
      spec, kind, ann[kind]["label"], ann[kind].get("confidence"))) for kind in _QUALIFYING_KINDS)


def count_dropped_image(counts, reason: str, ann: Mapping[str, dict | None],
                        image_id: str) -> None:
  counts.add(f"images/dropped/{reason}", 1, image_id)
  for kind in _KINDS:
    counts.add(f"{kind}/dropped/image_dropped", _num_rows(ann.get(kind)))


def count_absent_rows(counts, ann: Mapping[str, dict | None], image_id: str) -> None:
  for kind in _KINDS:
    counts.add(f"{kind}/dropped/row_for_absent_image", _num_rows(ann.get(kind)), image_id)


def _select(kind: str, rows: dict[str, np.ndarray] | None, remap: np.ndarray,
            counts) -> dict[str, np.ndarray]:
  """Rows of selected classes, with dataset label indices."""
  if rows is None:
    rows = {"label": np.zeros(0, np.int32), "source": np.zeros(0, object)}
    if kind == "boxes":
      rows.update(bbox=np.zeros((0, 4), np.float32), **{f: np.zeros(0, np.int8) for f in _FLAGS})
    else:
      rows["confidence"] = np.zeros(0, np.float32)
  keep = np.ones(len(rows["label"]), bool)
  if kind == "image_labels":  # Human-verified: 1 or 0; anything else is not a human label.
    keep = (rows["confidence"] == 0) | (rows["confidence"] == 1)
    counts.add(f"{kind}/dropped/confidence_not_0_or_1", int(np.sum(~keep)),
               f"Confidence {rows['confidence'][~keep][0]}" if not keep.all() else None)
  label = remap[rows["label"]]
  counts.add(f"{kind}/dropped/class_not_selected", int(np.sum(keep & (label < 0))))
  keep &= label >= 0
  # Boxes need no checks here: the readers already skip inverted and non-finite ones and clip the
  # coordinates into [0, 1] (readers._check_coordinate, readers._build_boxes).
  out = {k: v[keep] for k, v in rows.items()}
  out["label"] = label[keep].astype(np.int64)
  counts.add(f"{kind}/written", int(np.sum(keep)))
  return out


def make_example(spec: SplitSpec, image_id: str, data: bytes, rotation: float,
                 ann: Mapping[str, dict | None], counts, with_machine_labels: bool,
                 source: str) -> dict[str, Any] | None:
  """The feature dict of one image, or None (counted) when the image is bad.

  `source` names where `data` came from (a path, `<tar>:<member>`), for the report.
  """
  try:
    image = builder_images.process_image(data, rotation, spec.image_policy, name=source)
  except builder_images.BadImageError as e:
    count_dropped_image(counts, e.reason, ann, str(e))
    return None
  for action in image.actions:
    counts.add(f"images/changed/{action}")
  boxes = _select("boxes", ann.get("boxes"), spec.box_remap, counts)
  bbox = builder_images.rotate_boxes(boxes["bbox"], image.rotation)
  example = {
      "image": image.jpeg,
      "image/id": image_id,
      "image/original_width": np.int32(image.original_width),
      "image/original_height": np.int32(image.original_height),
      "objects": {"bbox": bbox, "label": boxes["label"],
                  **{f: boxes[f] for f in _FLAGS}, "source": list(boxes["source"])},
  }
  kinds = ("image_labels", "machine_labels") if with_machine_labels else ("image_labels",)
  for kind in kinds:
    rows = _select(kind, ann.get(kind), spec.label_remap, counts)
    example[kind] = {"label": rows["label"], "confidence": rows["confidence"],
                     "source": list(rows["source"])}
  counts.add("images/written")
  return example


def folder_example(spec: SplitSpec, image_id: str, name: str, rotation: float,
                   ann: Mapping[str, dict | None], counts, with_machine_labels: bool):
  """`make_example` of a file in the image folder; an unreadable one is dropped, counted."""
  folder = pathlib.Path(spec.image_folder)
  try:
    data = builder_images.read_folder_image(folder, name)
  except builder_images.BadImageError as e:
    count_dropped_image(counts, e.reason, ann, str(e))
    return None
  return make_example(spec, image_id, data, rotation, ann, counts, with_machine_labels,
                      str(folder / name))


# ----------------------------------------------------------------------------------------------------
# Plain (single-process) build.


def _read_chunks(kind: str, path: str, spec: SplitSpec, report: readers.ReadReport):
  """Streamed tables of a box or image-level label file, leniently read onto the release's MIDs."""
  if kind == "boxes":
    return readers.iter_boxes(path, label_map=_label_map(spec.box_mids), report=report)
  return readers.iter_image_labels(path, label_map=_label_map(spec.image_mids), report=report)


def _read_table(kind: str, path: str, spec: SplitSpec, counts):
  report = readers.ReadReport(path=str(path))
  chunks = list(_read_chunks(kind, path, spec, report))
  _add_read_report(counts, kind, report)
  return readers.group_by_image(type(chunks[0]).concat(chunks))


def _read_listing(spec: SplitSpec, counts) -> tuple[np.ndarray, np.ndarray] | None:
  """Listed ImageIDs (sorted unique uint64) and their rotations, from the metadata file, or None.

  Only ImageID and Rotation are read: a damaged URL, size or MD5 field costs no image.
  """
  path = spec.files.get("metadata")
  if not path:
    return None
  report = readers.ReadReport(path=str(path))
  meta = readers.read_image_metadata(path, strict=False, report=report, columns=("Rotation",))
  _add_read_report(counts, "metadata", report)
  keys, first = np.unique(np.asarray(meta.image_id, np.uint64), return_index=True)
  counts.add("metadata/dropped/duplicate_image_row", len(meta.image_id) - len(keys))
  return keys, np.asarray(meta.rotation, np.float32)[first]


def _tar_ids(spec: SplitSpec) -> list[str]:
  """ImageIDs in the tar files (a pass over the headers, reading no image), for a split without a
  metadata file; damaged archives are counted when their images are read."""
  ids = []

  def note(image_id):
    ids.append(image_id)
    return False

  for tar in spec.image_tars:
    for _ in builder_images.iter_tar(pathlib.Path(tar), wanted=note, on_error=lambda *_: None):
      pass
  return ids


def _keys(image_ids: Iterable[str]) -> np.ndarray:
  """Sorted unique uint64 keys of ImageIDs."""
  ids = sorted(image_ids)
  return np.unique(readers.image_id_to_key(ids)) if ids else np.zeros(0, np.uint64)


def _ann_of(groups: Mapping[str, Any], key: int) -> dict[str, dict | None]:
  out = {}
  for kind, group in groups.items():
    ids = group.image_ids
    i = int(np.searchsorted(ids, np.uint64(key)))
    if i < len(ids) and ids[i] == key:
      out[kind] = _rows(kind, group.table, slice(int(group.offsets[i]), int(group.offsets[i + 1])))
    else:
      out[kind] = None
  return out


def _count_dropped_keys(counts: Counts, reason: str, keys: np.ndarray,
                        groups: Mapping[str, Any]) -> None:
  """`count_dropped_image` for many images at once (sorted uint64 keys)."""
  counts.add(f"images/dropped/{reason}", len(keys))
  for image_id in readers.key_to_image_id(keys[:5]).tolist():
    counts.add(f"images/dropped/{reason}", 0, str(image_id))
  for kind, group in groups.items():
    sizes = np.diff(group.offsets)
    counts.add(f"{kind}/dropped/image_dropped", int(sizes[np.isin(group.image_ids, keys)].sum()))


def _qualifying(spec: SplitSpec, groups: Mapping[str, Any], listed: np.ndarray) -> np.ndarray:
  """Mask over `listed`: `qualifies` of every image at once, on the grouped columns."""
  if not spec.filter_classes:
    return np.ones(len(listed), bool)
  keep = np.zeros(len(listed), bool)
  for kind in _QUALIFYING_KINDS:
    group = groups.get(kind)
    if group is None or not len(group):
      continue
    rows = qualifying_rows(spec, kind, group.table.label, group.table.confidence)
    per_image = np.logical_or.reduceat(rows, group.offsets[:-1].astype(np.intp))
    keep |= np.isin(listed, group.image_ids[per_image])
  return keep


def _count_listing(counts: Counts, groups: Mapping[str, Any], listed: np.ndarray) -> None:
  """Listed images, rows read, and rows for images outside the listing."""
  counts.add("images/listed", len(listed))
  for kind, group in groups.items():
    absent = ~np.isin(group.image_ids, listed)
    sizes = np.diff(group.offsets)
    counts.add(f"{kind}/dropped/row_for_absent_image", int(sizes[absent].sum()),
               str(readers.key_to_image_id(group.image_ids[absent][:1])[0]) if absent.any() else None)
    counts.add(f"{kind}/read", int(sizes.sum()))


def _tar_images(spec: SplitSpec, counts: Counts, listed: Callable[[str], bool],
                wanted: Callable[[str], bool], seen: set, done: set) -> Iterator[tuple[str, bytes, str]]:
  """(ImageID, bytes, source) of the file used for each wanted image of the tar files, streamed.

  Which of several files of one image is used: see `builder_images`; another spelling than
  `<ImageID>.jpg` waits for the end of its tar file, in case the official one follows. Counts
  unlisted and duplicate files; fills `seen` (listed images found) and `done` (images yielded).
  """
  for tar in spec.image_tars:
    waiting = {}
    for image_id, data, name in builder_images.iter_tar(
        pathlib.Path(tar), on_error=lambda reason, msg: counts.add(f"images/{reason}", 1, msg),
        with_names=True):
      if not listed(image_id):
        counts.add("images/unlisted_file", 1, image_id)
        continue
      if image_id in seen:
        counts.add("images/duplicate_file", 1, image_id)
      seen.add(image_id)
      if image_id in done or not wanted(image_id):
        continue
      if builder_images.name_rank(image_id, name):
        waiting.setdefault(image_id, (data, f"{tar}:{name}"))
        continue
      waiting.pop(image_id, None)
      done.add(image_id)
      yield image_id, data, f"{tar}:{name}"
    for image_id, (data, source) in waiting.items():
      done.add(image_id)
      yield image_id, data, source


def _generate_tars_in_one_pass(spec: SplitSpec, counts: Counts, groups: Mapping[str, Any],
                               with_machine_labels: bool) -> Iterator[tuple[str, dict[str, Any]]]:
  """Tar files without a metadata file or an image limit: the images list themselves as they stream,
  so the archives are read once (a listing pass first would decompress them twice)."""
  annotated = np.unique(np.concatenate([g.image_ids for g in groups.values()] or
                                       [np.zeros(0, np.uint64)]))
  selected = (set(readers.key_to_image_id(annotated[_qualifying(spec, groups, annotated)]).tolist())
              if spec.filter_classes else None)
  seen, done = set(), set()
  for image_id, data, source in _tar_images(
      spec, counts, listed=lambda _: True, wanted=lambda i: selected is None or i in selected,
      seen=seen, done=done):
    key = int(readers.image_id_to_key([image_id])[0])
    example = make_example(spec, image_id, data, 0.0, _ann_of(groups, key), counts,
                           with_machine_labels, source)
    if example is not None:
      yield image_id, example
  listed = _keys(seen)
  _count_listing(counts, groups, listed)
  _count_dropped_keys(counts, "no_selected_class", listed[~_qualifying(spec, groups, listed)], groups)


def generate_plain(spec: SplitSpec, counts: Counts,
                   with_machine_labels: bool) -> Iterator[tuple[str, dict[str, Any]]]:
  """(ImageID, example) of a split, reading annotations into columnar memory and images in order."""
  groups = {kind: _read_table(kind, spec.files[kind], spec, counts)
            for kind in _KINDS if spec.files.get(kind)}
  listing = _read_listing(spec, counts)
  folder = builder_images.list_folder(pathlib.Path(spec.image_folder)) if spec.image_folder \
      else None
  if listing is None and folder is None and spec.max_images is None:
    yield from _generate_tars_in_one_pass(spec, counts, groups, with_machine_labels)
    return
  if listing is None:
    keys = _keys(folder.files if folder is not None else _tar_ids(spec))
    if spec.shared_folder:  # Every split's images: this split's are those it annotates.
      annotated = [groups[k].image_ids for k in ("boxes", "image_labels") if k in groups]
      keys = np.intersect1d(keys, np.concatenate(annotated)) if annotated else keys[:0]
    listing = keys, np.zeros(len(keys), np.float32)
  listed, rotations = listing
  _count_listing(counts, groups, listed)
  # Which listed images are built: class filter, then the N smallest ImageIDs.
  qualifying = _qualifying(spec, groups, listed)
  _count_dropped_keys(counts, "no_selected_class", listed[~qualifying], groups)
  chosen = listed[qualifying]
  if spec.max_images is not None and len(chosen) > spec.max_images:
    _count_dropped_keys(counts, "over_max_images", chosen[spec.max_images:], groups)
    chosen = chosen[:spec.max_images]
  rotation_of = dict(zip(listed.tolist(), rotations.tolist()))
  chosen = chosen.tolist()
  ids_of = dict(zip(chosen, readers.key_to_image_id(np.array(chosen, np.uint64)).tolist()))
  listed_ids = set(readers.key_to_image_id(listed).tolist())

  if folder is not None:
    if not spec.shared_folder:  # A shared folder holds the other splits' images too.
      counts.add("images/unlisted_file", sum(n for i, n in folder.entries.items()
                                             if i not in listed_ids))
    counts.add("images/duplicate_file", folder.duplicates(listed_ids))
    for key in chosen:
      image_id, ann = ids_of[key], _ann_of(groups, key)
      name = folder.files.get(image_id)
      if name is None:
        count_dropped_image(counts, "missing_image", ann, image_id)
        continue
      example = folder_example(spec, image_id, name, rotation_of[key], ann, counts,
                               with_machine_labels)
      if example is not None:
        yield image_id, example
    return

  wanted = {ids_of[k]: k for k in chosen}
  done = set()
  for image_id, data, source in _tar_images(spec, counts, listed=listed_ids.__contains__,
                                            wanted=wanted.__contains__, seen=set(), done=done):
    key = wanted[image_id]
    example = make_example(spec, image_id, data, rotation_of[key], _ann_of(groups, key), counts,
                           with_machine_labels, source)
    if example is not None:
      yield image_id, example
  for image_id, key in wanted.items():
    if image_id not in done:
      count_dropped_image(counts, "missing_image", _ann_of(groups, key), image_id)


# ----------------------------------------------------------------------------------------------------
# Beam build.


def _beam_read_rows(path: str, kind: str, spec: SplitSpec):
  """(ImageID, (first row, rows)) per image and chunk of a CSV, streamed; reader counts as counters."""
  counts = _BeamCounts(spec.split)
  report = readers.ReadReport(path=str(path))
  chunks = _read_chunks(kind, path, spec, report)
  row0 = 0
  for chunk in chunks:
    group = readers.group_by_image(chunk)
    ids = readers.key_to_image_id(group.image_ids)
    # Rows sorted stably by ImageID: an image's rows keep file order; `row0` orders its chunks.
    for i, image_id in enumerate(ids.tolist()):
      rows = slice(int(group.offsets[i]), int(group.offsets[i + 1]))
      yield str(image_id), (row0 + rows.start, _rows(kind, group.table, rows))
    row0 += len(chunk)
  _add_read_report(counts, kind, report)


def _beam_read_metadata(path: str, spec: SplitSpec):
  counts = _BeamCounts(spec.split)
  report = readers.ReadReport(path=str(path))
  meta = readers.read_image_metadata(path, strict=False, report=report, columns=("Rotation",))
  _add_read_report(counts, "metadata", report)
  ids = readers.key_to_image_id(np.asarray(meta.image_id, np.uint64)).tolist()
  for image_id, rotation in zip(ids, np.asarray(meta.rotation, np.float32).tolist()):
    yield str(image_id), float(rotation)


def _beam_read_tar(indexed_path: tuple[int, str], spec: SplitSpec):
  """(ImageID, (preference key, (bytes, source))) of a tar file's images; the key orders duplicates
  as the plain build does: earlier tar file, then `<ImageID>.jpg`, then archive order."""
  index, path = indexed_path
  counts = _BeamCounts(spec.split)
  for position, (image_id, data, name) in enumerate(builder_images.iter_tar(
      pathlib.Path(path), on_error=lambda reason, msg: counts.add(f"images/{reason}", 1, msg),
      with_names=True)):
    yield image_id, ((index, builder_images.name_rank(image_id, name), position),
                     (data, f"{path}:{name}"))


def _beam_join(item, spec: SplitSpec, has_metadata: bool):
  """(ImageID, grouped) -> (ImageID, ann, rotation, image) for listed images; counts the rest."""
  image_id, grouped = item
  counts = _BeamCounts(spec.split)
  ann = {}
  for kind in _KINDS:
    parts = sorted(grouped.get(kind, ()), key=lambda p: p[0])
    ann[kind] = _concat([p[1] for p in parts]) if parts else None
    counts.add(f"{kind}/read", _num_rows(ann[kind]))
  images = list(grouped.get("image", ()))  # (preference key, file name or (bytes, source)).
  rotations = list(grouped.get("metadata", ()))
  if has_metadata:
    listed = bool(rotations)
  elif spec.shared_folder:  # Every split's images: this split's are those it annotates.
    listed = bool(images) and (ann["boxes"] is not None or ann["image_labels"] is not None)
  else:
    listed = bool(images)
  if not listed:
    count_absent_rows(counts, ann, image_id)
    if not spec.shared_folder:
      counts.add("images/unlisted_file", len(images))
    return
  counts.add("images/listed")
  counts.add("metadata/dropped/duplicate_image_row", max(0, len(rotations) - 1))
  if len(images) > 1:
    counts.add("images/duplicate_file", len(images) - 1)
  image = min(images, key=lambda entry: entry[0])[1] if images else None
  yield image_id, ann, (rotations[0] if rotations else 0.0), image


def _beam_build(joined, spec: SplitSpec, with_machine_labels: bool, chosen=None):
  """Builds the example of a joined image, given the chosen ImageIDs (None: no limit)."""
  image_id, ann, rotation, image = joined
  counts = _BeamCounts(spec.split)
  if not qualifies(spec, ann):
    count_dropped_image(counts, "no_selected_class", ann, image_id)
    return
  if chosen is not None and image_id not in chosen:
    count_dropped_image(counts, "over_max_images", ann, image_id)
    return
  if image is None:
    count_dropped_image(counts, "missing_image", ann, image_id)
    return
  if isinstance(image, str):  # A file name in the image folder.
    example = folder_example(spec, image_id, image, rotation, ann, counts, with_machine_labels)
  else:
    data, source = image
    example = make_example(spec, image_id, data, rotation, ann, counts, with_machine_labels, source)
  if example is not None:
    yield image_id, example


def beam_transform(spec: SplitSpec, with_machine_labels: bool):
  """The split as a PTransform (PBegin -> PCollection of (ImageID, example))."""
  beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam

  def expand(root):
    sources = {}
    for kind in _KINDS:
      if spec.files.get(kind):
        sources[kind] = (root | f"{kind}_file" >> beam.Create([spec.files[kind]])
                         | f"{kind}_rows" >> beam.FlatMap(_beam_read_rows, kind=kind, spec=spec))
    has_metadata = bool(spec.files.get("metadata"))
    if has_metadata:
      sources["metadata"] = (root | "metadata_file" >> beam.Create([spec.files["metadata"]])
                             | "metadata_rows" >> beam.FlatMap(_beam_read_metadata, spec=spec))
    if spec.image_folder:  # Listed by a worker: millions of names do not belong in the graph.
      sources["image"] = (root | "image_folder" >> beam.Create([spec.image_folder])
                          | "image_files" >> beam.FlatMap(
                              lambda folder: builder_images.folder_entries(pathlib.Path(folder)))
                          | "image_reshuffle" >> beam.Reshuffle())
    else:
      sources["image"] = (root | "tar_files" >> beam.Create(list(enumerate(spec.image_tars)))
                          | "tar_reshuffle" >> beam.Reshuffle()
                          | "tar_images" >> beam.FlatMap(_beam_read_tar, spec=spec))
    joined = (sources | "join" >> beam.CoGroupByKey()
              | "listed" >> beam.FlatMap(_beam_join, spec=spec, has_metadata=has_metadata))
    build = dict(spec=spec, with_machine_labels=with_machine_labels)
    if spec.max_images is None:
      return joined | "build" >> beam.FlatMap(_beam_build, **build)
    chosen = (joined | "qualifying" >> beam.Filter(lambda j: qualifies(spec, j[1]))
              | "ids" >> beam.Map(lambda j: j[0])
              | "smallest" >> beam.combiners.Top.Smallest(spec.max_images)
              | "as_set" >> beam.Map(set))
    return joined | "build" >> beam.FlatMap(_beam_build, **build,
                                            chosen=beam.pvalue.AsSingleton(chosen))

  return beam.ptransform_fn(expand)()


def report_from_counters(pipeline_result, splits: Iterable[str]) -> dict[str, Counts]:
  """Per-split `Counts` from the Beam counters of a finished pipeline."""
  beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam
  query = pipeline_result.metrics().query(
      beam.metrics.metric.MetricsFilter().with_namespace(_COUNTER_NAMESPACE))
  out = {split: Counts() for split in splits}
  for counter in query["counters"]:
    split, name = counter.key.metric.name.split("/", 1)
    value = counter.committed if counter.committed is not None else counter.attempted
    out.setdefault(split, Counts()).add(name, value)
  return out


# ----------------------------------------------------------------------------------------------------
# The builder.


def resolve_classes(wanted: Sequence[str], boxable: labels_lib.LabelMap,
                    image_level: labels_lib.LabelMap) -> set[str]:
  """MIDs of `wanted` (MIDs or display names, case-insensitive); unknown ones are an error."""
  by_name = {}
  for lm in (image_level, boxable):
    for mid, name in zip(lm.mids, lm.names):
      by_name.setdefault(name.casefold(), mid)
  mids, unknown = set(), []
  for entry in wanted:
    if entry in boxable or entry in image_level:
      mids.add(entry)
    elif entry.casefold() in by_name:
      mids.add(by_name[entry.casefold()])
    else:
      unknown.append(entry)
  if unknown:
    raise BuildError(f"classes not in this release's class lists (MIDs or display names, any "
                     f"case): {', '.join(unknown)}")
  return mids


def _subset(lm: labels_lib.LabelMap, mids: set[str] | None) -> tuple[list[str], np.ndarray]:
  """Kept MIDs in list order and the remap array (full index -> kept index or -1)."""
  keep = [m for m in lm.mids if mids is None or m in mids]
  index = {m: i for i, m in enumerate(keep)}
  return keep, np.array([index.get(m, -1) for m in lm.mids], np.int32)


def feature_spec(box_mids: Sequence[str] | None = None, image_mids: Sequence[str] | None = None,
                 with_machine_labels: bool = False) -> tfds.features.FeaturesDict:
  """The features of `open_images`; class names are set by the build when not given here."""
  def labels():
    return tfds.features.Sequence({"label": tfds.features.ClassLabel(names=image_mids),
                                   "confidence": np.float32, "source": tfds.features.Text()})
  features = {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      "image/id": tfds.features.Text(),
      "image/original_width": np.int32,
      "image/original_height": np.int32,
      "objects": tfds.features.Sequence({
          "bbox": tfds.features.BBoxFeature(),
          "label": tfds.features.ClassLabel(names=box_mids),
          **{flag: np.int8 for flag in _FLAGS},
          "source": tfds.features.Text(),
      }),
      "image_labels": labels(),
  }
  if with_machine_labels:
    features["machine_labels"] = labels()
  return tfds.features.FeaturesDict(features)


def summarize_report(report: Mapping[str, Any]) -> str:
  """Printable lines of a build report: per split, what was written, then every other count."""
  lines = []
  for split, entry in report.items():
    counts = entry["counts"]
    lines.append(f"{split}: {counts.get('images/written', 0)} of {counts.get('images/listed', 0)} "
                 f"listed images written, {counts.get('boxes/written', 0)} boxes, "
                 f"{counts.get('image_labels/written', 0)} image-level labels")
    for name, n in counts.items():
      if n and name not in _HEADLINE:
        lines.append(f"  {name}: {n}")
  return "\n".join(lines)


def _class_list(root: pathlib.Path, candidates: Sequence[str], what: str) -> labels_lib.LabelMap:
  """A release's class list; an unreadable or empty one is a BuildError naming the file."""
  path = releases.require(root, candidates, what)
  try:
    label_map = labels_lib.LabelMap.from_csv(path)
  except ValueError as e:  # The label file error names file, line and field.
    raise BuildError(f"{what}: {e}") from None
  if not len(label_map):
    raise BuildError(f"{what} {path} holds no class: every box and label would be dropped")
  return label_map


class OpenImages(tfds.core.GeneratorBasedBuilder):
  """Open Images boxes and image-level labels, V4 to V7 and Challenge 2019, from a manual download."""

  VERSION = VERSION
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = releases.manual_download_instructions()
  BUILDER_CONFIGS = [make_config(r, p) for r in releases.RELEASES for p in builder_images.POLICIES]
  DEFAULT_CONFIG_NAME = "v6_max1024"
  # TFDS 4.9.10 derives this through `importlib_resources`, which it only installs on Python < 3.9;
  # giving it directly avoids that import (the builder has no checksums file: nothing is downloaded).
  code_path = epath.Path(__file__)

  @classmethod
  def get_builder_config(cls, name, version=None):
    """Predefined configs, and any option name `parse_config_name` understands."""
    config = super().get_builder_config(name, version)
    if config is None and name in _CONFIGS:
      config = _CONFIGS[name]
    return config or parse_config_name(name)

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._beam = False
    self._counts: dict[str, Counts] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Open Images bounding boxes and human-verified image-level labels, images "
                    "upright (Rotation applied). " + (self.builder_config.description or ""),
        features=feature_spec(with_machine_labels=self.builder_config.with_machine_labels),
        metadata=tfds.core.MetadataDict(),
        homepage="https://storage.googleapis.com/openimages/web/index.html",
        citation=_CITATION,
    )

  def _download_and_prepare(self, dl_manager, download_config):
    self._beam = download_config.beam_runner is not None or download_config.beam_options is not None
    self._counts = {}
    super()._download_and_prepare(dl_manager, download_config)
    report = {split: {"counts": dict(sorted(c.counts.items())), "examples": c.examples}
              for split, c in sorted(self._counts.items())}
    self.info.metadata["build_report"] = report
    (epath.Path(self.data_dir) / REPORT_FILE).write_text(json.dumps(report, indent=2))

  def _process_pipeline_result(self, pipeline_result) -> None:
    for split, counts in report_from_counters(pipeline_result, self._counts).items():
      self._counts.setdefault(split, Counts()).counts.update(counts.counts)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    release = releases.RELEASES[config.release]
    root = pathlib.Path(dl_manager.manual_dir)
    boxable = _class_list(root, release.boxable_classes, "boxable class list")
    image_level = _class_list(root, release.image_level_classes, "image-level class list")
    hierarchy_path = releases.require(root, release.hierarchy, "class hierarchy")
    try:  # Its MIDs must nest with the boxable list's, or it is another release's (or has a typo).
      labels_lib.validate_hierarchy(hierarchy_path, boxable)
    except ValueError as e:  # AnnotationError: names the file and the MIDs.
      raise BuildError(f"class hierarchy: {e}") from None
    hierarchy = hierarchy_path.read_text("utf-8")
    selected = resolve_classes(config.classes, boxable, image_level) if config.classes else None
    box_mids, box_remap = _subset(boxable, selected)
    image_mids, label_remap = _subset(image_level, selected)
    self.info.features["objects"]["label"].names = box_mids
    self.info.features["image_labels"]["label"].names = image_mids
    if config.with_machine_labels:
      self.info.features["machine_labels"]["label"].names = image_mids
    names = lambda lm, mids: [lm.name(m) for m in mids]
    self.info.metadata.update({
        "boxable_class_names": names(boxable, box_mids),
        "image_level_class_names": names(image_level, image_mids),
        "hierarchy": hierarchy,
        "release": config.release,
    })
    generators = {}
    for split, files in release.splits.items():
      paths = {"boxes": releases.find(root, files.boxes),
               "image_labels": releases.find(root, files.human_labels),
               "machine_labels": (releases.find(root, files.machine_labels)
                                  if config.with_machine_labels else None),
               "metadata": releases.find(root, files.metadata)}
      source = releases.image_source(root, split)
      if paths["boxes"] is None or not source:
        logging.warning("open_images: split %s not built: %s", split,
                        "no box file" if paths["boxes"] is None else "no images")
        continue
      counts = self._counts[split] = Counts()
      for kind, candidates in (("image_labels", files.human_labels),
                               ("machine_labels", files.machine_labels)):
        if paths[kind] is None and (kind == "image_labels" or config.with_machine_labels):
          counts.add(f"files/absent/{kind}", 1, f"none of {', '.join(candidates) or '(none)'}")
      spec = SplitSpec(
          split=split, files={k: (str(v) if v else None) for k, v in paths.items()},
          image_folder=str(source.folder) if source.folder else None,
          image_tars=tuple(str(t) for t in source.tars), shared_folder=source.shared,
          image_policy=config.image_policy,
          box_mids=tuple(boxable.mids), image_mids=tuple(image_level.mids), box_remap=box_remap,
          label_remap=label_remap, filter_classes=selected is not None,
          max_images=config.max_images_per_split)
      examples = self._generate_examples(spec)
      if not self._beam:
        # TFDS refuses to write a split without examples (all images filtered out or broken):
        # peek, and leave such a split out, counted, instead of failing the whole build.
        first = next(examples, None)
        if first is None:
          counts.add("split_not_built_no_examples", 1)
          continue
        examples = itertools.chain([first], examples)
      generators[split] = examples
    if not generators:
      raise FileNotFoundError(f"no split to build in {root}:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return generators

  def _generate_examples(self, spec: SplitSpec):
    if self._beam:
      return beam_transform(spec, self.builder_config.with_machine_labels)
    return generate_plain(spec, self._counts[spec.split], self.builder_config.with_machine_labels)
