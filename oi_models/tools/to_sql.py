"""`oi-to-sql`: a release's official annotation files in DuckDB (one embedded file) or PostgreSQL.

    oi-to-sql --database oi.duckdb --manual_dir oi --release v6
    oi-to-sql --database postgresql://user@localhost/oi --manual_dir oi --splits validation,test
    oi-to-sql --database oi.duckdb --query class_frequencies --split validation --limit 10
    oi-to-sql --database oi.duckdb --query images_of_class --class Cat --with_descendants
    oi-to-sql --database oi.duckdb --query classes_of_image --image_id 0001eeaf4aed83f9
    oi-to-sql --database oi.duckdb --query descendants --class Animal
    oi-to-sql --database oi.duckdb --sql "SELECT split, count(*) FROM boxes GROUP BY split"

The tables are described in `sql_schema`; the ready queries in `sql_queries`. Files are found in
`--manual_dir` by their official names (`datasets.releases`, as oi-build-dataset finds them) and read
with the project's streaming readers, so bad rows are skipped and counted exactly as everywhere else
(the load report lists them with file, line and field). After the load, every table's row count is
checked against the rows the readers kept; a mismatch is an error, not a warning.

Images named by the annotations but absent from the split's metadata file (or every image, when the
split has none) get an `images` row with NULL metadata, counted, so no box or label is dropped.

Re-runs are idempotent: the database records which files it was loaded from (name, size, modification
time); when they are unchanged, nothing is done and the command says so. Otherwise it is loaded
again whole, atomically: DuckDB into a new file renamed over the old one, PostgreSQL in one
transaction. A reader never sees a half-loaded database.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Iterator

from absl import flags
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tqdm

from oi_models import app
from oi_models.tools import sql_queries
from oi_models.tools import sql_schema

SCHEMA_VERSION = 1
STATE_KEY = "load"

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs (importing the module defines none, so
  the tools' modules can be imported together and used as libraries)."""
  flags.DEFINE_string("database", None, "DuckDB file (created) or PostgreSQL URL "
                      "(postgresql://user@host:port/db). Required.")
  flags.DEFINE_string("manual_dir", None, "Folder holding the release's official files: load them.")
  flags.DEFINE_string("release", "v6", "Release whose file names to look for (v4, v5, v6, v7, "
                      "challenge2019).")
  flags.DEFINE_list("splits", [], "Splits to load (default: every split whose box file is present).")
  flags.DEFINE_bool("with_machine_labels", False, "Also load the machine-generated image labels.")
  flags.DEFINE_bool("force", False, "Load again even if the files are unchanged.")
  flags.DEFINE_enum("query", None, list(sql_queries.QUERIES), "Run a ready query and print it.")
  flags.DEFINE_string("class", None, "Class (MID or display name) for images_of_class, descendants.")
  flags.DEFINE_string("image_id", None, "ImageID for classes_of_image.")
  flags.DEFINE_string("split", None, "Restrict class_frequencies, images_of_class to one split.")
  flags.DEFINE_bool("with_descendants", False, "images_of_class: also the boxes of descendants.")
  flags.DEFINE_integer("limit", None, "At most this many rows from a query.")
  flags.DEFINE_string("sql", None, "Run this SQL and print the result.")
  flags.DEFINE_bool("progress", True, "Show a progress bar while loading.")


@dataclasses.dataclass(frozen=True)
class Inputs:
  """The files of one load: class lists, hierarchy, and per split boxes, labels and metadata."""

  release: str
  boxable_classes: pathlib.Path
  image_level_classes: pathlib.Path
  hierarchy: pathlib.Path
  splits: dict  # split -> {"boxes", "human_labels", "machine_labels", "metadata"} -> path | None

  def paths(self) -> list[pathlib.Path]:
    out = [self.boxable_classes, self.image_level_classes, self.hierarchy]
    for files in self.splits.values():
      out += [p for p in files.values() if p is not None]
    return list(dict.fromkeys(out))

  def fingerprint(self) -> dict:
    """What identifies the load: the release, schema, and each file's name, size and mtime."""
    files = {}
    for path in self.paths():
      stat = path.stat()
      files[path.name] = [stat.st_size, stat.st_mtime_ns]
    layout = {split: {k: (v.name if v else None) for k, v in files_.items()}
              for split, files_ in self.splits.items()}
    return {"schema": SCHEMA_VERSION, "release": self.release, "files": files, "layout": layout}


def find_inputs(manual_dir, release: str = "v6", splits=(), machine_labels: bool = False) -> Inputs:
  """The release's files in manual_dir (official names); a missing required file is an error."""
  from oi_models.datasets import releases  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(manual_dir)
  if release not in releases.RELEASES:
    raise ValueError(f"unknown release {release!r}; expected one of {list(releases.RELEASES)}")
  spec = releases.RELEASES[release]
  chosen = {}
  for split, files in spec.splits.items():
    if splits and split not in splits:
      continue
    boxes = releases.find(root, files.boxes)
    if boxes is None:
      if splits:
        raise FileNotFoundError(f"{split} boxes: none of {', '.join(files.boxes)} in {root}")
      continue
    chosen[split] = {"boxes": boxes, "human_labels": releases.find(root, files.human_labels),
                     "machine_labels": (releases.find(root, files.machine_labels)
                                        if machine_labels else None),
                     "metadata": releases.find(root, files.metadata)}
  unknown = set(splits) - set(spec.splits)
  if unknown:
    raise ValueError(f"release {release} has no split {sorted(unknown)}")
  if not chosen:
    raise FileNotFoundError(f"no box file of release {release} in {root}")
  return Inputs(release,
                releases.require(root, spec.boxable_classes, "boxable class list"),
                releases.require(root, spec.image_level_classes, "image-level class list"),
                releases.require(root, spec.hierarchy, "class hierarchy"), chosen)


# ----------------------------------------------------------------------------------------------------
# Columns to Arrow.


def _text(values) -> pa.Array:
  """Strings with '' as NULL."""
  array = pa.array(values, pa.string())
  return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def _codes(vocabulary, codes: np.ndarray) -> pa.Array:
  """Vocabulary strings of codes; -1 is NULL."""
  codes = np.asarray(codes)
  return pc.take(pa.array(list(vocabulary), pa.string()),
                 pa.array(codes.astype(np.int32), mask=codes < 0))


def _floats(values: np.ndarray) -> pa.Array:
  return pa.array(np.asarray(values, np.float32), pa.float32(), from_pandas=True)  # NaN -> NULL


def _ids(keys: np.ndarray) -> pa.Array:
  from oi_models.io import readers  # pylint: disable=g-import-not-at-top
  return pa.array(readers.key_to_image_id(keys), pa.string())


class _Counter:
  """Per-key running counts over a stream of chunks, in a sorted array (no Python object per key)."""

  def __init__(self):
    self.keys = np.zeros(0, np.uint64)
    self.counts = np.zeros(0, np.int64)

  def ranks(self, keys: np.ndarray) -> np.ndarray:
    """Each row's position among the rows of its key seen so far (file order)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    unique, starts, sizes = np.unique(sorted_keys, return_index=True, return_counts=True)
    within = np.arange(len(keys)) - np.repeat(starts, sizes)
    at = np.searchsorted(self.keys, unique)
    found = (at < len(self.keys)) & (self.keys[np.minimum(at, len(self.keys) - 1)] == unique) \
        if len(self.keys) else np.zeros(len(unique), bool)
    offsets = np.zeros(len(unique), np.int64)
    offsets[found] = self.counts[at[found]]
    self.counts[at[found]] += sizes[found]
    if (~found).any():
      keys_all = np.concatenate([self.keys, unique[~found]])
      counts_all = np.concatenate([self.counts, sizes[~found]])
      merge = np.argsort(keys_all, kind="stable")
      self.keys, self.counts = keys_all[merge], counts_all[merge]
    ranks = np.empty(len(keys), np.int64)
    ranks[order] = within + np.repeat(offsets, sizes)
    return ranks

  def missing(self, keys: np.ndarray) -> np.ndarray:
    """The unique keys not counted yet."""
    unique = np.unique(keys)
    return unique[~np.isin(unique, self.keys, assume_unique=True)]

  def add(self, keys: np.ndarray) -> None:
    self.ranks(keys)


# ----------------------------------------------------------------------------------------------------
# The load.


@dataclasses.dataclass
class LoadSummary:
  status: str  # "loaded" or "unchanged"
  counts: dict  # table (and split) -> rows
  reports: dict  # file -> ReadReport dict
  notes: list
  seconds: float = 0.0

  def text(self) -> str:
    lines = [f"{self.status}: " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items())]
    for name, report in self.reports.items():
      skipped = sum(report["skipped"].values())
      if skipped:
        lines.append(f"  {name}: skipped {skipped:,} of {report['rows_read']:,} rows: " +
                     ", ".join(f"{r} {n:,}" for r, n in report["skipped"].items()))
        lines += [f"    {e}" for examples in report["examples"].values() for e in examples[:2]]
    lines += [f"  {note}" for note in self.notes]
    if self.seconds:
      rows = sum(v for k, v in self.counts.items() if k.startswith(("boxes", "image_labels")))
      lines.append(f"  {self.seconds:.1f} s ({rows / self.seconds:,.0f} annotation rows/s)")
    return "\n".join(lines)


class _Loader:
  def __init__(self, db: sql_schema.Database, inputs: Inputs, progress: bool):
    self.db, self.inputs = db, inputs
    self.counts: dict[str, int] = {}
    self.reports: dict[str, dict] = {}
    self.notes: list[str] = []
    total = sum(p.stat().st_size for p in inputs.paths())
    self.bar = tqdm.tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                         dynamic_ncols=True, desc="oi-to-sql")

  def _expect(self, key: str, n: int) -> None:
    self.counts[key] = self.counts.get(key, 0) + int(n)

  def load(self) -> None:
    from oi_models import labels  # pylint: disable=g-import-not-at-top
    inputs = self.inputs
    boxable = labels.LabelMap.from_csv(inputs.boxable_classes)
    image_level = labels.LabelMap.from_csv(inputs.image_level_classes)
    hierarchy = labels.Hierarchy.from_json(inputs.hierarchy)
    names = dict(zip(image_level.mids, image_level.names))
    names.update(zip(boxable.mids, boxable.names))  # Boxable names are the release's newest.
    only_hierarchy = [m for m in hierarchy.mids if m not in names]
    if only_hierarchy:
      self.notes.append(f"{len(only_hierarchy)} classes of the hierarchy are in no class list "
                        f"(NULL display_name): {only_hierarchy[:5]}")
    mids = list(names) + only_hierarchy
    self.label_map = labels.LabelMap(tuple(mids), tuple(names.get(m, "") for m in mids))
    self.db.insert("classes", pa.table({
        "mid": pa.array(mids, pa.string()),
        "display_name": pa.array([names.get(m) for m in mids], pa.string()),
        "boxable": pa.array([m in boxable for m in mids], pa.bool_())}))
    self._expect("classes", len(mids))
    edges = [(p, c, "subcategory") for p in hierarchy.mids for c in hierarchy.children(p)]
    edges += [(p, c, "part") for p in hierarchy.mids for c in hierarchy.parts(p)]
    edges = list(dict.fromkeys(edges))
    self.db.insert("hierarchy", pa.table({k: pa.array([e[i] for e in edges], pa.string())
                                          for i, k in enumerate(("parent", "child", "relation"))}))
    self._expect("hierarchy", len(edges))
    for path in (inputs.boxable_classes, inputs.image_level_classes, inputs.hierarchy):
      self.bar.update(path.stat().st_size)
    for split, files in inputs.splits.items():
      self._load_split(split, files)
    self.bar.close()

  def _chunks(self, path: pathlib.Path, reader, **kwargs) -> Iterator:
    from oi_models.io import readers  # pylint: disable=g-import-not-at-top
    report = readers.ReadReport(path=str(path))
    size, done = path.stat().st_size, 0
    for table in reader(path, report=report, **kwargs):
      step = min(readers.DEFAULT_CHUNK_BYTES, size - done)
      done += step
      self.bar.update(step)
      yield table
    self.bar.update(size - done)
    self.reports[path.name] = report.to_dict()

  def _load_split(self, split: str, files: dict) -> None:
    from oi_models.io import readers  # pylint: disable=g-import-not-at-top
    images = _Counter()
    if files["metadata"] is not None:
      duplicates = 0
      for meta in self._chunks(files["metadata"], readers.iter_image_metadata):
        keys = meta.image_id
        _, first = np.unique(keys, return_index=True)
        rows = np.sort(first)
        rows = rows[~np.isin(keys[rows], images.keys)]
        duplicates += len(keys) - len(rows)
        if not len(rows):
          continue
        images.add(keys[rows])
        size = np.asarray(meta.original_size)[rows]
        md5 = [b64 for b64 in _base64(meta.original_md5[rows])]
        self.db.insert("images", pa.table({
            "image_id": _ids(keys[rows]),
            "split": pa.repeat(pa.scalar(split), len(rows)),
            **{name: _text(getattr(meta, name)[rows]) for name in (
                "original_url", "original_landing_url", "license", "author_profile_url",
                "author", "title")},
            "original_size": pa.array(size, pa.int64(), mask=size < 0),
            "original_md5": _text(md5),
            "thumbnail_300k_url": _text(meta.thumbnail_300k_url[rows]),
            "rotation": _floats(meta.rotation[rows])}))
        self._expect("images", len(rows))
      if duplicates:
        self.notes.append(f"{files['metadata'].name}: {duplicates} duplicate ImageID rows "
                          "(the first kept)")
    stubs_before = self.counts.get("images_without_metadata", 0)
    self._load_rows(split, "boxes", files["boxes"], images)
    for kind in ("human", "machine"):
      if files[f"{kind}_labels"] is not None:
        self._load_rows(split, "image_labels", files[f"{kind}_labels"], images, kind)
    stubs = self.counts.get("images_without_metadata", 0) - stubs_before
    if stubs:
      self.notes.append(f"{split}: {stubs:,} images named by the annotations have no metadata row"
                        + ("" if files["metadata"] else " (no metadata file)"))

  def _load_rows(self, split: str, table_name: str, path: pathlib.Path, images: _Counter,
                 kind: str | None = None) -> None:
    from oi_models.io import readers  # pylint: disable=g-import-not-at-top
    reader = readers.iter_boxes if table_name == "boxes" else readers.iter_image_labels
    ranks = _Counter()
    for table in self._chunks(path, reader, label_map=self.label_map):
      n = len(table)
      if not n:
        continue
      keys = table.image_id
      new = images.missing(keys)
      if len(new):  # Images with annotations but no metadata row: NULL metadata, counted.
        images.add(new)
        self.db.insert("images", pa.table({"image_id": _ids(new),
                                           "split": pa.repeat(pa.scalar(split), len(new))}))
        self._expect("images", len(new))
        self._expect("images_without_metadata", len(new))
      columns = {"image_id": _ids(keys)}
      if kind is not None:
        columns["kind"] = pa.repeat(pa.scalar(kind), n)
      columns.update({
          "n": pa.array(ranks.ranks(keys), pa.int32()),
          "split": pa.repeat(pa.scalar(split), n),
          "label_name": _codes(table.mids, table.label),
          "source": _codes(table.sources, table.source),
          "confidence": _floats(table.confidence)})
      if table_name == "boxes":
        for name in ("x_min", "x_max", "y_min", "y_max"):
          columns[name] = _floats(getattr(table, name.replace("_", "")))
        for name in ("occluded", "truncated", "group_of", "depiction", "inside"):
          columns[f"is_{name}"] = pa.array(np.asarray(getattr(table, f"is_{name}"), np.int16))
        if table.x_click is not None:
          for i, column in enumerate(sql_schema.CLICK_COLUMNS):
            columns[column] = _floats(table.x_click[:, i % 4, i // 4])
      self.db.insert(table_name, pa.table(columns))
      self._expect(f"{table_name}/{split}" + (f"/{kind}" if kind else ""), n)


def _base64(digests) -> list[str]:
  import base64  # pylint: disable=g-import-not-at-top
  return [base64.b64encode(d).decode("ascii") if d else "" for d in digests]


def table_counts(db: sql_schema.Database) -> dict[str, int]:
  """Rows per table, per split for boxes and per split and kind for image labels."""
  counts = {}
  for name in ("classes", "hierarchy", "images"):
    counts[name] = db.query(f"SELECT count(*) FROM {name}")[1][0][0]
  for split, n in db.query("SELECT split, count(*) FROM boxes GROUP BY split")[1]:
    counts[f"boxes/{split}"] = n
  for split, kind, n in db.query("SELECT split, kind, count(*) FROM image_labels "
                                 "GROUP BY split, kind")[1]:
    counts[f"image_labels/{split}/{kind}"] = n
  return counts


def _check_counts(db: sql_schema.Database, expected: dict[str, int]) -> None:
  found = table_counts(db)
  wrong = {k: (v, found.get(k, 0)) for k, v in expected.items()
           if k != "images_without_metadata" and found.get(k, 0) != v}
  extra = {k: (0, v) for k, v in found.items() if k not in expected and v}
  if wrong or extra:
    raise RuntimeError(f"row counts after the load differ from the rows read (read, in the "
                       f"database): {wrong | extra}")


def stored_state(url: str) -> dict | None:
  """What the database says it was loaded from, or None (no database, or not loaded by us)."""
  if not sql_schema.is_postgresql(url) and not pathlib.Path(url).expanduser().exists():
    return None
  db = sql_schema.connect(url, read_only=True)
  try:
    if not db.has_table("oi_loads"):
      return None
    _, rows = db.query("SELECT value FROM oi_loads WHERE key = ?", (STATE_KEY,))
    return json.loads(rows[0][0]) if rows else None
  finally:
    db.close()


def load(url: str, inputs: Inputs, force: bool = False, progress: bool = True) -> LoadSummary:
  """Loads `inputs` into the database at `url` unless it already holds exactly them."""
  fingerprint = inputs.fingerprint()
  state = stored_state(url)
  if state is not None and state["fingerprint"] == fingerprint and not force:
    db = sql_schema.connect(url, read_only=True)
    try:
      _check_counts(db, state["counts"])
    finally:
      db.close()
    return LoadSummary("unchanged", state["counts"], state["reports"],
                       ["the database already holds these files; nothing was changed"])
  start = time.perf_counter()
  if sql_schema.is_postgresql(url):
    db, target = sql_schema.connect(url), None
    db.drop_tables()
  else:
    target = pathlib.Path(url).expanduser()
    loading = target.with_name(target.name + ".loading")
    for stale in (loading, loading.with_name(loading.name + ".wal")):
      stale.unlink(missing_ok=True)
    db = sql_schema.DuckDB(loading)
  try:
    db.create_tables()
    loader = _Loader(db, inputs, progress)
    loader.load()
    db.add_constraints()
    _check_counts(db, loader.counts)
    summary = LoadSummary("loaded", loader.counts, loader.reports, loader.notes,
                          time.perf_counter() - start)
    db.insert("oi_loads", pa.table({"key": [STATE_KEY], "value": [json.dumps({
        "fingerprint": fingerprint, "counts": summary.counts, "reports": summary.reports})]}))
    db.commit()
  except BaseException:
    db.close()
    if target is not None:
      loading.unlink(missing_ok=True)
    raise
  db.close()
  if target is not None:
    os.replace(loading, target)
  return summary


def _print_query(db: sql_schema.Database) -> None:
  if FLAGS.sql:
    print(sql_queries.Result(*db.query(FLAGS.sql)).text(FLAGS.limit or 50))
  if FLAGS.query:
    name = FLAGS.query
    if name in ("images_of_class", "descendants") and not FLAGS["class"].value:
      raise app.UsageError(f"--query {name} needs --class")
    if name == "classes_of_image" and not FLAGS.image_id:
      raise app.UsageError("--query classes_of_image needs --image_id")
    cls = FLAGS["class"].value
    result = {
        "class_frequencies": lambda: sql_queries.class_frequencies(db, FLAGS.split, FLAGS.limit),
        "images_of_class": lambda: sql_queries.images_of_class(
            db, cls, FLAGS.split, FLAGS.with_descendants, FLAGS.limit),
        "classes_of_image": lambda: sql_queries.classes_of_image(db, FLAGS.image_id),
        "descendants": lambda: sql_queries.descendants(db, cls),
    }[name]()
    print(result.text(FLAGS.limit or 50))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.database:
    raise app.UsageError("--database is required")
  if not (FLAGS.manual_dir or FLAGS.query or FLAGS.sql):
    raise app.UsageError("nothing to do: give --manual_dir (load), --query or --sql")
  from oi_models.io import errors  # pylint: disable=g-import-not-at-top
  try:
    if FLAGS.manual_dir:
      inputs = find_inputs(FLAGS.manual_dir, FLAGS.release, FLAGS.splits,
                           FLAGS.with_machine_labels)
      print(load(FLAGS.database, inputs, FLAGS.force, FLAGS.progress).text())
    if FLAGS.query or FLAGS.sql:
      db = sql_schema.connect(FLAGS.database, read_only=True)
      try:
        _print_query(db)
      finally:
        db.close()
  except (OSError, ValueError, KeyError, RuntimeError, errors.AnnotationError) as e:
    sys.exit(f"oi-to-sql: {e.args[0] if isinstance(e, KeyError) else e}")
  except Exception as e:  # pylint: disable=broad-except
    if type(e).__module__.split(".")[0] not in ("psycopg", "duckdb", "_duckdb"):
      raise
    sys.exit(f"oi-to-sql: {type(e).__name__}: {e}")  # Server down, bad SQL, ...


def run():
  """Console script `oi-to-sql`."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
