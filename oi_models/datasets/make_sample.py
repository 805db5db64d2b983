"""Writes a small synthetic Open Images download: the default dataset of the demo and the tests.

The files follow the official V6 layout and formats exactly (names, headers, column order, number
formatting, CSV quoting, LF line ends), so that everything downstream (readers, TFDS builder, pipelines,
evaluation) runs on the sample exactly as on a real download, and a detector and a classifier can learn
it in minutes: each class is one shape in one colour (see `sample_shapes`).

    <out_dir>/class-descriptions-boxable.csv                 MID,DisplayName; no header
    <out_dir>/oidv6-class-descriptions.csv                   LabelName,DisplayName header; all classes
    <out_dir>/bbox_labels_600_hierarchy.json                 root /m/0bl9f; Triangle has two parents
    <out_dir>/oidv6-train-annotations-bbox.csv               21 columns, with XClick points
    <out_dir>/{validation,test}-annotations-bbox.csv         13 columns
    <out_dir>/oidv6-train-annotations-human-imagelabels.csv  and validation-, test- ones
    <out_dir>/train-images-boxable-with-rotation.csv         and validation-, test-images-with-rotation
    <out_dir>/{train,validation,test}/<ImageID>.jpg

Choices that mirror the real data, and their limits:
- Train box coordinates are written with 6 decimals (as the V6 train file); validation and test ones as
  the shortest text that reads back to the same float32 (as the V5/V6 validation file: 0.022673031).
- Box CSVs are sorted by ImageID; image-level rows are grouped by ImageID in a shuffled label order.
- Every class with a box on an image is a verified positive there (Source verification or
  crowdsource-verification); parents of present classes sometimes are too. Verified negatives are
  drawn only from classes absent after expansion (neither present nor an ancestor of a present
  class), so no label is positive and negative on one image, before or after hierarchy expansion.
- On about one train image in ten one drawn class keeps its positive label but loses its boxes (the
  real data is not exhaustively boxed either); validation and test are exhaustively boxed.
- Rotation is 0.0 for every image: the JPEGs are stored upright. The sample does not exercise
  rotation, because the direction convention is not pinned down by the project's design notes.
- OriginalSize and OriginalMD5 (base64 of the binary MD5) describe the JPEG bytes actually written.
  URLs point at example.org: the images are synthetic, not Flickr photos.

Output is a pure function of the arguments: the same seed gives byte-identical files.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import pathlib
import time
from typing import Sequence, Union

from absl import flags
import numpy as np
from PIL import Image

from oi_models import app
from oi_models import labels
from oi_models.io import readers
from oi_models.datasets import releases
from oi_models.datasets import sample_shapes as shapes

SPLITS = releases.SPLITS
# The official V6 names: the first candidate of each role in releases.RELEASES["v6"], so the sample
# and the builder's lookup cannot drift apart.
_V6 = releases.RELEASES["v6"]
CLASS_LIST = _V6.boxable_classes[0]
CLASS_DESCRIPTIONS = _V6.image_level_classes[0]
HIERARCHY = _V6.hierarchy[0]
BOX_FILES = {split: _V6.splits[split].boxes[0] for split in SPLITS}
LABEL_FILES = {split: _V6.splits[split].human_labels[0] for split in SPLITS}
METADATA_FILES = {split: _V6.splits[split].metadata[0] for split in SPLITS}

# Official column orders, shared with the readers (one definition for writing and reading).
BOX_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
               *readers.FLAG_COLUMNS)
CLICK_COLUMNS = readers.CLICK_COLUMNS
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
METADATA_COLUMNS = readers.METADATA_COLUMNS

# Author names and titles exercise CSV quoting (commas, quotes) and UTF-8.
_AUTHORS = ("Sample Author", "O'Brien, Kate", "Jürgen Müller", 'Ann "Shapes" Lee', "李 明")
_TITLES = ("{a} on {bg}", "{a}, {b} and friends", '"{a}" study', "Untitled", "Çà et là: {a}",
           'A {a}, a {b}, and a "{c}"')
_LICENSE = "https://creativecommons.org/licenses/by/2.0/"
_URL = "https://example.org/oi-sample"

# One image in ten shows each of these on purpose (more happen at random), so any sample of a few
# dozen images has every case. "unboxed" applies to train only.
_SCHEDULE = ("group_of", "occlusion", "truncation", None, "depiction", "empty",
             "group_of+occlusion", "truncation", "inside", "unboxed")


@dataclasses.dataclass(frozen=True)
class SplitCounts:
  """Counts of one split: images, images without boxes, boxes, and image-level label rows."""

  images: int = 0
  empty_images: int = 0
  boxes: int = 0
  group_of: int = 0
  positives: int = 0
  negatives: int = 0


@dataclasses.dataclass(frozen=True)
class SampleInfo:
  """Where `make_sample` wrote each file, and what the files hold."""

  root: pathlib.Path
  class_list: pathlib.Path
  class_descriptions: pathlib.Path
  hierarchy: pathlib.Path
  boxes: dict[str, pathlib.Path]
  image_labels: dict[str, pathlib.Path]
  metadata: dict[str, pathlib.Path]
  image_dirs: dict[str, pathlib.Path]
  counts: dict[str, SplitCounts]
  num_boxable_classes: int
  num_image_level_classes: int
  seconds: float

  @property
  def num_images(self) -> int:
    return sum(c.images for c in self.counts.values())


def split_counts(splits: Sequence[Union[int, float]], num_images: int) -> dict[str, int]:
  """Images per split from three fractions (summing to 1) or three counts (summing to num_images)."""
  if len(splits) != len(SPLITS):
    raise ValueError(f"splits needs {len(SPLITS)} values ({', '.join(SPLITS)}), got {list(splits)}")
  if any(v < 0 for v in splits):
    raise ValueError(f"splits must not be negative: {list(splits)}")
  if all(isinstance(v, (int, np.integer)) for v in splits):
    if sum(splits) != num_images:
      raise ValueError(f"split counts {list(splits)} sum to {sum(splits)}, not {num_images} images")
    return dict(zip(SPLITS, (int(v) for v in splits)))
  if abs(sum(splits) - 1.0) > 1e-6:
    raise ValueError(f"split fractions {list(splits)} sum to {sum(splits)}, not 1")
  exact = np.asarray(splits, np.float64) * num_images
  counts = np.floor(exact).astype(int)
  # Largest remainders get the images left over; ties go to the earlier split.
  for i in np.argsort(-(exact - counts), kind="stable")[:num_images - counts.sum()]:
    counts[i] += 1
  return dict(zip(SPLITS, counts.tolist()))


def _image_ids(seed: int, n: int) -> list[str]:
  rng = np.random.default_rng([seed, 0x1D5])
  ids: dict[str, None] = {}
  while len(ids) < n:
    for key in rng.integers(0, 2**64, size=n - len(ids), dtype=np.uint64, endpoint=False):
      ids.setdefault(f"{int(key):016x}", None)
  return list(ids)


def _recipe(index: int, rng: np.random.Generator) -> tuple[shapes.Recipe, bool]:
  """What image `index` shows, and whether one of its classes goes unboxed."""
  wish = _SCHEDULE[index % len(_SCHEDULE)] or ""
  background = str(rng.choice(list(shapes.BACKGROUNDS), p=(0.6, 0.2, 0.2)))
  if wish == "empty":
    return shapes.Recipe(num_objects=0, background=background), False
  occlusion = "occlusion" in wish or rng.random() < 0.1
  return shapes.Recipe(
      num_objects=int(rng.integers(2 if occlusion else 1, 6)),
      background=background,
      group_of="group_of" in wish or rng.random() < 0.05,
      occlusion=occlusion,
      truncation=wish == "truncation",
      depiction=wish == "depiction",
      inside=wish == "inside"), wish == "unboxed"


def _image_labels(scene: shapes.Scene, rng: np.random.Generator) -> list[tuple[str, str, int]]:
  """(Source, LabelName, Confidence) rows: drawn classes positive, absent classes verified negative."""
  def source(p_verification):
    return "verification" if rng.random() < p_verification else "crowdsource-verification"

  rows = []
  present = set()
  for leaf in sorted(scene.drawn_leaves):
    present.add(shapes.LEAF_CLASSES[leaf].mid)
    rows.append((source(0.75), shapes.LEAF_CLASSES[leaf].mid, 1))
    for parent in shapes.leaf_ancestors(leaf):
      if parent not in present:
        present.add(parent)
        if rng.random() < 0.5:
          rows.append((source(0.75), parent, 1))
  scene_mid = shapes.BACKGROUNDS[scene.background][0]
  if scene_mid:
    present.add(scene_mid)
    rows.append((source(0.75), scene_mid, 1))
  candidates = [mid for mid, _ in shapes.boxable_classes() + list(shapes.SCENE_CLASSES)
                if mid not in present]
  chosen = rng.choice(len(candidates), size=min(len(candidates), int(rng.integers(1, 4))),
                      replace=False)
  rows += [(source(0.9), candidates[i], 0) for i in sorted(chosen)]
  return [rows[i] for i in rng.permutation(len(rows))]


def _format_box(image_id: str, box: shapes.SceneBox, width: int, height: int,
                with_clicks: bool) -> list:
  """One box row. Train (with clicks): 6 decimals; otherwise the shortest float32 text."""
  fmt = (lambda v: f"{v:.6f}") if with_clicks else (lambda v: str(np.float32(v)))
  coords = (box.x0 / width, box.x1 / width, box.y0 / height, box.y1 / height)
  row = [image_id, "xclick", shapes.LEAF_CLASSES[box.leaf].mid, "1", *map(fmt, coords),
         box.is_occluded, box.is_truncated, box.is_group_of, box.is_depiction, box.is_inside]
  if with_clicks:
    row += [fmt(x / width) for x, _ in box.clicks] + [fmt(y / height) for _, y in box.clicks]
  return row


def _metadata_row(image_id: str, subset: str, jpeg: bytes, scene: shapes.Scene,
                  rng: np.random.Generator) -> list:
  names = [shapes.LEAF_CLASSES[b.leaf].name.lower() for b in scene.boxes] or ["nothing"]
  names += ["shape"] * 3
  title = _TITLES[int(rng.integers(len(_TITLES)))].format(a=names[0], b=names[1], c=names[2],
                                                          bg=scene.background)
  author_index = int(rng.integers(len(_AUTHORS)))
  thumbnail = f"{_URL}/photos/{image_id}_z.jpg" if rng.random() < 0.9 else ""
  return [image_id, subset, f"{_URL}/photos/{image_id}_o.jpg", f"{_URL}/photos/{image_id}",
          _LICENSE, f"{_URL}/people/author{author_index}/", _AUTHORS[author_index], title,
          len(jpeg), base64.b64encode(hashlib.md5(jpeg).digest()).decode("ascii"), thumbnail, "0.0"]


def _write_csv(path: pathlib.Path, header, rows) -> None:
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    if header:
      writer.writerow(header)
    writer.writerows(rows)


def _prepare(out_dir: pathlib.Path, overwrite: bool) -> None:
  """Creates out_dir; refuses a non-empty one unless overwrite, then removes only the sample's files."""
  out_dir.mkdir(parents=True, exist_ok=True)
  if any(out_dir.iterdir()):
    if not overwrite:
      raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True to replace a sample there")
    for split in SPLITS:
      for old in (out_dir / split).glob("*.jpg"):
        old.unlink()
  for split in SPLITS:
    (out_dir / split).mkdir(exist_ok=True)


def make_sample(out_dir, num_images: int = 300, seed: int = 0, image_size: int = 160,
                splits: Sequence[Union[int, float]] = (0.8, 0.1, 0.1), jpeg_quality: int = 90,
                overwrite: bool = False) -> SampleInfo:
  """Writes a synthetic Open Images V6 download of `num_images` JPEGs to `out_dir`.

  Args:
    out_dir: directory to create (or an empty one); see the module docstring for the layout.
    num_images: images over all splits.
    seed: any non-negative int; the same seed gives byte-identical files.
    image_size: long side of every image, in pixels; the short side is 75-100% of it.
    splits: (train, validation, test) as fractions summing to 1, or as counts summing to num_images.
    jpeg_quality: PIL JPEG quality.
    overwrite: allow a non-empty out_dir; the sample's own files there are replaced.

  Returns:
    SampleInfo with the paths written and per-split counts.
  """
  start = time.perf_counter()
  if num_images < 0 or seed < 0 or image_size < 32:
    raise ValueError(f"need num_images >= 0, seed >= 0, image_size >= 32; got {num_images}, "
                     f"{seed}, {image_size}")
  per_split = split_counts(splits, num_images)
  root = pathlib.Path(out_dir)
  _prepare(root, overwrite)

  boxable = labels.LabelMap.from_pairs(shapes.boxable_classes())
  boxable.to_csv(root / CLASS_LIST)
  every = sorted(shapes.boxable_classes() + list(shapes.SCENE_CLASSES))
  _write_csv(root / CLASS_DESCRIPTIONS, ("LabelName", "DisplayName"), every)
  # Official formatting: 4-space indent, no newline at the end.
  (root / HIERARCHY).write_text(json.dumps(shapes.hierarchy_tree(), indent=4), encoding="utf-8")

  image_ids = _image_ids(seed, num_images)
  counts = {}
  index = 0
  for split in SPLITS:
    box_rows, label_rows, metadata_rows = [], [], []
    tally = dict.fromkeys(dataclasses.asdict(SplitCounts()), 0)
    for _ in range(per_split[split]):
      image_id, rng = image_ids[index], np.random.default_rng([seed, index])
      recipe, unboxed = _recipe(index, rng)
      index += 1
      long, short = image_size, int(rng.integers(round(0.75 * image_size), image_size + 1))
      width, height = (long, short) if rng.random() < 0.7 else (short, long)
      scene = shapes.compose(rng, width, height, recipe)
      boxes = scene.boxes
      if unboxed and split == "train" and boxes:
        dropped = boxes[int(rng.integers(len(boxes)))].leaf
        boxes = [b for b in boxes if b.leaf != dropped]
      buffer = io.BytesIO()
      # 4:4:4 keeps colours true up to the edges of even the smallest objects.
      Image.fromarray(scene.pixels).save(buffer, "JPEG", quality=jpeg_quality, subsampling=0)
      jpeg = buffer.getvalue()
      (root / split / f"{image_id}.jpg").write_bytes(jpeg)
      box_rows += [_format_box(image_id, b, width, height, split == "train") for b in boxes]
      image_label_rows = _image_labels(scene, rng)
      label_rows += [(image_id, *row) for row in image_label_rows]
      metadata_rows.append(_metadata_row(image_id, split, jpeg, scene, rng))
      tally["images"] += 1
      tally["empty_images"] += not boxes
      tally["boxes"] += len(boxes)
      tally["group_of"] += sum(b.is_group_of for b in boxes)
      tally["positives"] += sum(c == 1 for _, _, c in image_label_rows)
      tally["negatives"] += sum(c == 0 for _, _, c in image_label_rows)
    box_rows.sort(key=lambda r: (r[0], r[2], float(r[4]), float(r[6]), float(r[5]), float(r[7])))
    label_rows.sort(key=lambda r: r[0])  # Stable: each image keeps its shuffled label order.
    metadata_rows.sort(key=lambda r: r[0])
    header = BOX_COLUMNS + (CLICK_COLUMNS if split == "train" else ())
    _write_csv(root / BOX_FILES[split], header, box_rows)
    _write_csv(root / LABEL_FILES[split], LABEL_COLUMNS, label_rows)
    _write_csv(root / METADATA_FILES[split], METADATA_COLUMNS, metadata_rows)
    counts[split] = SplitCounts(**tally)

  return SampleInfo(
      root=root, class_list=root / CLASS_LIST, class_descriptions=root / CLASS_DESCRIPTIONS,
      hierarchy=root / HIERARCHY,
      boxes={s: root / BOX_FILES[s] for s in SPLITS},
      image_labels={s: root / LABEL_FILES[s] for s in SPLITS},
      metadata={s: root / METADATA_FILES[s] for s in SPLITS},
      image_dirs={s: root / s for s in SPLITS},
      counts=counts, num_boxable_classes=len(boxable), num_image_level_classes=len(every),
      seconds=time.perf_counter() - start)


def read_counts(root) -> tuple[dict[str, SplitCounts], dict[str, tuple[int, int, int]]]:
  """Counts read back from a sample directory (or any download with the same layout).

  Returns (per-split counts, per-MID (boxes, positives, negatives) over all splits).
  """
  root = pathlib.Path(root)
  per_class: dict[str, list[int]] = {}

  def rows(path):
    with open(path, encoding="utf-8", newline="") as f:
      yield from csv.DictReader(f)

  counts = {}
  for split in SPLITS:
    images = {row["ImageID"] for row in rows(root / METADATA_FILES[split])}
    boxed, boxes, group_of, positives, negatives = set(), 0, 0, 0, 0
    for row in rows(root / BOX_FILES[split]):
      boxed.add(row["ImageID"])
      boxes += 1
      group_of += row["IsGroupOf"] == "1"
      per_class.setdefault(row["LabelName"], [0, 0, 0])[0] += 1
    for row in rows(root / LABEL_FILES[split]):
      positive = float(row["Confidence"]) == 1
      positives += positive
      negatives += not positive
      per_class.setdefault(row["LabelName"], [0, 0, 0])[1 if positive else 2] += 1
    counts[split] = SplitCounts(images=len(images), empty_images=len(images - boxed), boxes=boxes,
                                group_of=group_of, positives=positives, negatives=negatives)
  return counts, {mid: tuple(v) for mid, v in per_class.items()}


def summarize(root) -> str:
  """A printable summary of a sample directory: images, boxes and labels per split and per class."""
  root = pathlib.Path(root)
  counts, per_class = read_counts(root)
  boxable = labels.LabelMap.from_csv(root / CLASS_LIST)
  every = labels.LabelMap.from_csv(root / CLASS_DESCRIPTIONS)
  hierarchy = labels.Hierarchy.from_json(root / HIERARCHY)
  lines = [f"Open Images sample in {root}",
           f"  {len(boxable)} boxable classes, {len(every)} image-level classes; hierarchy: "
           f"{len(hierarchy.mids) - 1} classes under {hierarchy.root}",
           "",
           f"  {'split':<11}{'images':>7}{'no box':>8}{'boxes':>7}{'group-of':>9}"
           f"{'positives':>10}{'negatives':>10}"]
  total = [0] * 6
  for split, c in counts.items():
    values = dataclasses.astuple(c)
    total = [a + b for a, b in zip(total, values)]
    lines.append(f"  {split:<11}" + "".join(f"{v:>{w}}" for v, w in zip(values, _WIDTHS)))
  lines.append(f"  {'total':<11}" + "".join(f"{v:>{w}}" for v, w in zip(total, _WIDTHS)))
  lines += ["", f"  {'class':<36}{'MID':<12}{'boxes':>7}{'positives':>10}{'negatives':>10}"]
  for mid, name in zip(every.mids, every.names):
    boxes, positives, negatives = per_class.get(mid, (0, 0, 0))
    kind = "" if mid in boxable else " (image-level)"
    lines.append(f"  {(name + kind)[:35]:<36}{mid:<12}{boxes:>7}{positives:>10}{negatives:>10}")
  return "\n".join(lines)


_WIDTHS = (7, 8, 7, 9, 10, 10)


FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """Flags of the CLI, defined only when it runs, so importing this module defines none."""
  flags.DEFINE_string("out_dir", None, "Directory to write the sample to (created; must be empty "
                      "unless --overwrite).", required=True)
  flags.DEFINE_integer("num_images", 300, "Images over all splits. Ignored when --splits gives "
                       "counts and this flag is not set.")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes byte-identical files.")
  flags.DEFINE_integer("image_size", 160, "Long side of every image in pixels (the short side is "
                       "75-100% of it).")
  flags.DEFINE_list("splits", ["0.8", "0.1", "0.1"], "Train,validation,test sizes: three fractions "
                    "summing to 1 (0.8,0.1,0.1) or three image counts (240,30,30).")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the written images.")
  flags.DEFINE_bool("overwrite", False, "Replace a sample already in --out_dir.")


def _parse_splits(values: Sequence[str]) -> list[Union[int, float]]:
  if all(v.strip().isdigit() for v in values):
    return [int(v) for v in values]
  try:
    return [float(v) for v in values]
  except ValueError:
    raise ValueError(f"--splits: expected three numbers, got {','.join(values)}") from None


def run():
  """Console script `oi-make-sample`."""
  define_flags()

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
      splits = _parse_splits(FLAGS.splits)
      num_images = FLAGS.num_images
      if all(isinstance(v, int) for v in splits) and not FLAGS["num_images"].present:
        num_images = sum(splits)
      info = make_sample(FLAGS.out_dir, num_images=num_images, seed=FLAGS.seed,
                         image_size=FLAGS.image_size, splits=splits,
                         jpeg_quality=FLAGS.jpeg_quality, overwrite=FLAGS.overwrite)
    except FileExistsError:
      raise app.UsageError(f"{FLAGS.out_dir} is not empty; pass --overwrite to replace a sample "
                           "there") from None
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    print(summarize(info.root))
    print(f"\nwrote {info.num_images} images in {info.seconds:.1f} s")

  app.run(main)


if __name__ == "__main__":
  run()
