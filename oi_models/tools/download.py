"""`oi-download`: Open Images images and annotation files, verified, resumable, in the layout
`oi-build-dataset` reads (`<split>/<ImageID>.jpg` and the official file names in one folder).

    oi-download --out_dir oi --image_list ids.txt                     # lines `validation/<ImageID>`
    oi-download --out_dir oi --metadata validation-images-with-rotation.csv --sources original,s3
    oi-download --out_dir oi --annotations v6 --annotation_files validation-annotations-bbox.csv
    oi-download --out_dir oi --classes Cat,Dog --split validation --max_images 500
    oi-build-dataset --manual_dir oi --config v6_max1024

Images come from the public bucket's S3 API (`s3://open-images-dataset/<split>/<ImageID>.jpg`,
anonymous), from the metadata's OriginalURL (verified against OriginalSize and OriginalMD5) or its
Thumbnail300KURL; `--sources` lists them in order of preference. Annotation files come from their
official URLs and are verified against the published sizes and checksums (`official_files`).
With `--classes`, the images are those with a box or a positive human label of one of the classes
in the split's annotation files under `--out_dir` (download them first with `--annotations`), the
`--max_images` smallest ImageIDs of them (the same choice as oi-build-dataset's
--max_images_per_split).

The official downloader stops at the first error; this one finishes, prints a summary, writes every
failure with its reason to `--failures_csv`, and exits with status 1 when anything failed. Running
it again downloads only what is missing or does not verify (see `fetch`).
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Iterator

from absl import flags
import numpy as np

from oi_models import app
from oi_models.tools import fetch
from oi_models.tools import official_files

SPLITS = ("train", "validation", "test", "challenge2018")
SOURCES = ("s3", "original", "thumbnail")
DEFAULT_BUCKET = "open-images-dataset"
_IMAGE_ID = re.compile(r"^[0-9a-fA-F]{16}$")
_OFFICIAL_HOST = re.compile(r"^https?://[^/]+")

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs (importing the module defines none, so
  the tools' modules can be imported together and used as libraries)."""
  flags.DEFINE_string("out_dir", None, "Folder to download into (the manual_dir of "
                      "oi-build-dataset): images to <split>/<ImageID>.jpg, annotation files by their "
                      "official names. Required.")
  flags.DEFINE_string("image_list", None, "File of `<split>/<ImageID>` lines, as the official "
                      "downloader takes (downloaded from S3).")
  flags.DEFINE_list("metadata", [], "Image-metadata CSVs (`*-images-with-rotation.csv`): every image "
                    "they list, in the split of its Subset column.")
  flags.DEFINE_list("classes", [], "Images with a box or a positive human label of these classes "
                    "(display names or MIDs), from the --split annotation files in --out_dir.")
  flags.DEFINE_enum("split", None, list(SPLITS), "Only this split (required with --classes).")
  flags.DEFINE_integer("max_images", None, "At most this many images: with --classes the smallest "
                       "ImageIDs, otherwise the first ones listed.")
  flags.DEFINE_string("release", "v6", "Release whose file names --classes looks for in --out_dir.")
  flags.DEFINE_string("annotations", None, "Download this release's official files, verified: "
                      f"{', '.join(official_files.releases())} (`images`: the image tar files).")
  flags.DEFINE_list("annotation_files", [], "Only these of the release's files (official names).")
  flags.DEFINE_string("annotation_url_prefix", None, "Replace the scheme and host of the official "
                      "URLs with this (a mirror).")
  flags.DEFINE_list("sources", ["s3"], f"Where images come from, in order of preference: {SOURCES}. "
                    "original and thumbnail need the metadata's URLs.")
  flags.DEFINE_string("bucket", DEFAULT_BUCKET, "S3 bucket holding <split>/<ImageID>.jpg.")
  flags.DEFINE_string("endpoint_url", None, "S3 endpoint (default: AWS).")
  flags.DEFINE_enum("resize", "original", ["original", "max1024", "300k"], "Store images as "
                    "downloaded, with the long side at most 1024, or at most 300,000 pixels (as the "
                    "official thumbnails); images that fit are kept byte for byte.")
  flags.DEFINE_integer("workers", 32, "Concurrent downloads.")
  flags.DEFINE_integer("per_host", 16, "At most this many concurrent requests to one host.")
  flags.DEFINE_integer("retries", 4, "Retries per source after a timeout, dropped connection, "
                       "truncated body, server error or failed verification.")
  flags.DEFINE_float("backoff", 1.0, "Seconds before the first retry; doubled for each next one.")
  flags.DEFINE_float("timeout", 60.0, "Seconds to wait for a connection or for data.")
  flags.DEFINE_string("failures_csv", None, "Where to write the failures "
                      "(default: <out_dir>/download_failures.csv).")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def image_item(split: str, image_id: str, sources: tuple[fetch.Source, ...]) -> fetch.Item:
  return fetch.Item(f"{split}/{image_id}.jpg", sources, image=True)


def s3_source(bucket: str, split: str, image_id: str) -> fetch.Source:
  return fetch.Source(f"s3://{bucket}/{split}/{image_id}.jpg")


def check_image_id(text: str) -> str:
  """The ImageID in lower case; ValueError unless it is 16 hex digits."""
  if not _IMAGE_ID.match(text):
    raise ValueError(f"ImageID {text!r} is not 16 hex digits")
  return text.lower()


def read_image_list(path, bucket: str, bad: list) -> Iterator[fetch.Item]:
  """Items of a `<split>/<ImageID>` file; bad lines become failures (file:line) in `bad`."""
  with open(path, encoding="utf-8-sig") as f:
    for number, line in enumerate(f, start=1):
      text = line.strip()
      if not text:
        continue
      split, _, image_id = text.partition("/")
      image_id = image_id.removesuffix(".jpg")
      try:
        if split not in SPLITS:
          raise ValueError(f"split {split!r} is not one of {SPLITS}")
        image_id = check_image_id(image_id)
      except ValueError as e:
        bad.append(fetch.Failure(f"{path}:{number}", "", "bad_image_list_line", 0, str(e)))
        continue
      yield image_item(split, image_id, (s3_source(bucket, split, image_id),))


def metadata_sources(meta, row: int, split: str, image_id: str, sources, bucket: str):
  """The sources of one metadata row, in the order asked for; missing URLs are left out."""
  out = []
  for kind in sources:
    if kind == "s3":
      out.append(s3_source(bucket, split, image_id))
    elif kind == "original" and meta.original_url[row]:
      size = int(meta.original_size[row])
      out.append(fetch.Source(meta.original_url[row], size if size >= 0 else None,
                              meta.original_md5[row] or None))
    elif kind == "thumbnail" and meta.thumbnail_300k_url[row]:
      out.append(fetch.Source(meta.thumbnail_300k_url[row]))
  return tuple(out)


def read_metadata_items(path, sources, bucket: str, split: str | None, keys=None,
                        bad: list | None = None) -> Iterator[fetch.Item]:
  """Items of an image-metadata file (only `keys`, uint64 ImageID keys, when given)."""
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  report = readers.ReadReport(path=str(path))
  meta = readers.read_image_metadata(path, report=report)
  if report.skipped and bad is not None:
    for reason, n in report.skipped.items():
      for example in report.examples.get(reason, [])[:1]:
        bad.append(fetch.Failure(str(path), "", "bad_metadata_rows", n, f"{reason}: {example}"))
  rows = np.arange(len(meta.image_id))
  if keys is not None:
    rows = rows[np.isin(meta.image_id, keys)]
  ids = readers.key_to_image_id(meta.image_id[rows])
  for row, image_id in zip(rows.tolist(), ids.tolist()):
    subset = split or meta.subset[row]
    if subset not in SPLITS:
      if bad is not None:
        bad.append(fetch.Failure(f"{path}:{image_id}", "", "bad_subset", 0,
                                 f"Subset {subset!r} is not one of {SPLITS}"))
      continue
    if split and meta.subset[row] and meta.subset[row] != split:
      continue
    yield image_item(subset, image_id, metadata_sources(meta, row, subset, image_id, sources,
                                                        bucket))


def select_images(root: pathlib.Path, release_name: str, split: str, classes,
                  max_images: int | None) -> tuple[np.ndarray, str]:
  """Sorted uint64 keys of the split's images with a box or positive human label of `classes`."""
  from oi_models import labels  # pylint: disable=g-import-not-at-top
  from oi_models.datasets import builder  # pylint: disable=g-import-not-at-top
  from oi_models.datasets import releases  # pylint: disable=g-import-not-at-top
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  release = releases.RELEASES[release_name]
  boxable = labels.LabelMap.from_csv(releases.require(root, release.boxable_classes,
                                                      "boxable class list"))
  image_level = labels.LabelMap.from_csv(releases.require(root, release.image_level_classes,
                                                          "image-level class list"))
  mids = builder.resolve_classes(classes, boxable, image_level)
  files = release.splits[split]
  found, notes = [], []
  box_file = releases.require(root, files.boxes, f"{split} boxes")
  report = readers.ReadReport(path=str(box_file))
  wanted = np.array([boxable.index(m) for m in mids if m in boxable], np.int32)
  for table in readers.iter_boxes(box_file, label_map=boxable, report=report):
    found.append(table.image_id[np.isin(table.label, wanted)])
  notes.append(report.summary())
  label_file = releases.find(root, files.human_labels)
  if label_file is not None:
    report = readers.ReadReport(path=str(label_file))
    wanted = np.array([image_level.index(m) for m in mids if m in image_level], np.int32)
    for table in readers.iter_image_labels(label_file, label_map=image_level, report=report):
      found.append(table.image_id[np.isin(table.label, wanted) & (table.confidence >= 0.5)])
    notes.append(report.summary())
  keys = np.unique(np.concatenate(found)) if found else np.zeros(0, np.uint64)
  return (keys[:max_images] if max_images else keys), "\n".join(notes)


def annotation_items(release: str, names, url_prefix: str | None) -> list[fetch.Item]:
  items = []
  for f in official_files.for_release(release, names):
    url = _OFFICIAL_HOST.sub(url_prefix.rstrip("/"), f.url) if url_prefix else f.url
    items.append(fetch.Item(f.name, (fetch.Source(url, f.size, bytes.fromhex(f.md5) if f.md5
                                                  else None, f.sha256),)))
  return items


def _items(bad: list) -> list[fetch.Item]:
  """Every item the flags ask for, each name once (first wins)."""
  out_dir = pathlib.Path(FLAGS.out_dir)
  sources = tuple(FLAGS.sources)
  items: list[fetch.Item] = []
  if FLAGS.annotations:
    release = FLAGS.annotations
    items += annotation_items(release, FLAGS.annotation_files, FLAGS.annotation_url_prefix)
  if FLAGS.image_list:
    listed = read_image_list(FLAGS.image_list, FLAGS.bucket, bad)
    items += [i for i in listed if FLAGS.split is None or i.name.startswith(FLAGS.split + "/")]
  for path in FLAGS.metadata:
    items += read_metadata_items(path, sources, FLAGS.bucket, FLAGS.split, bad=bad)
  if FLAGS.classes:
    from oi_models.datasets import releases  # pylint: disable=g-import-not-at-top
    keys, notes = select_images(out_dir, FLAGS.release, FLAGS.split, FLAGS.classes,
                                FLAGS.max_images)
    print(notes)
    metadata = releases.find(out_dir, releases.RELEASES[FLAGS.release].splits[FLAGS.split].metadata)
    if metadata is not None and set(sources) != {"s3"}:
      chosen = list(read_metadata_items(metadata, sources, FLAGS.bucket, FLAGS.split, keys, bad))
    else:
      from oi_models.io import readers  # pylint: disable=g-import-not-at-top
      chosen = [image_item(FLAGS.split, i, (s3_source(FLAGS.bucket, FLAGS.split, i),))
                for i in readers.key_to_image_id(keys).tolist()]
    print(f"{len(keys)} {FLAGS.split} images with {', '.join(FLAGS.classes)}")
    items += chosen
  seen, unique = set(), []
  for item in items:
    if item.name not in seen:
      seen.add(item.name)
      unique.append(item)
  if FLAGS.max_images is not None and not FLAGS.classes:  # (--classes took the smallest IDs.)
    keep = {i.name for i in [i for i in unique if i.image][:FLAGS.max_images]}
    unique = [i for i in unique if not i.image or i.name in keep]
  return unique


def _check_flags() -> None:
  if not FLAGS.out_dir:
    raise app.UsageError("--out_dir is required")
  if not (FLAGS.image_list or FLAGS.metadata or FLAGS.classes or FLAGS.annotations):
    raise app.UsageError("nothing to download: give --image_list, --metadata, --classes or "
                         "--annotations")
  if FLAGS.classes and not FLAGS.split:
    raise app.UsageError("--classes needs --split")
  if FLAGS.image_list and "s3" not in FLAGS.sources:
    raise app.UsageError("--image_list images come from S3: add s3 to --sources")
  unknown = [s for s in FLAGS.sources if s not in SOURCES]
  if unknown or not FLAGS.sources:
    raise app.UsageError(f"--sources: {unknown or 'none'} not among {SOURCES}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _check_flags()
  out_dir = pathlib.Path(FLAGS.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  bad: list[fetch.Failure] = []
  try:
    items = _items(bad)
  except (OSError, ValueError) as e:  # A missing or malformed input file, an unknown class.
    sys.exit(f"oi-download: {e}")
  options = fetch.Options(out_dir=out_dir, workers=FLAGS.workers, per_host=FLAGS.per_host,
                          retries=FLAGS.retries, backoff=FLAGS.backoff,
                          connect_timeout=FLAGS.timeout, read_timeout=FLAGS.timeout,
                          s3_endpoint=FLAGS.endpoint_url, image_policy=FLAGS.resize,
                          progress=FLAGS.progress)
  summary = fetch.fetch_all(items, options, total=len(items))
  failures = bad + summary.failures
  failures_csv = pathlib.Path(FLAGS.failures_csv or out_dir / "download_failures.csv")
  fetch.write_failures(failures_csv, failures)
  print(summary.text())
  if bad:
    print(f"  {len(bad)} input rows could not be used")
  print(f"failures: {failures_csv}")
  if failures:
    sys.exit(1)


def run():
  """Console script `oi-download`."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
