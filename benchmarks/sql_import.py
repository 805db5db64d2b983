"""`oi-to-sql` load speed and ready-query times, DuckDB against PostgreSQL, on a synthetic V6 train split.

Writes (once, cached in --work_dir) a V6-layout manual_dir in the official formats: a train box file of
--rows rows in the 21 V6 columns (sorted by ImageID, 6-decimal coordinates, xclick / activemil sources,
XClick points), the image metadata of its images (--rows x 1,743,042 / 14,610,229 of them, as V6 train),
600 boxable classes and a two-level hierarchy. Then, for each database, times a full load
(`to_sql.load(force=True)`: reading with the project's readers, inserting or COPYing, keys, foreign
keys and indexes, the count check), and the ready queries of `sql_queries` on the loaded data (medians
over --repeats). PostgreSQL is $OI_TEST_POSTGRES_DSN, or a throwaway server started with
tests/tools/postgres_server.sh for the run.

    python benchmarks/sql_import.py                     # 1M box rows: a few minutes
    python benchmarks/sql_import.py --rows 14610229     # full V6 train size
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# pylint: disable=g-import-not-at-top,wrong-import-position
from oi_models.io import readers
from oi_models.tools import sql_queries
from oi_models.tools import sql_schema
from oi_models.tools import to_sql
# pylint: enable=g-import-not-at-top,wrong-import-position

_ROWS = flags.DEFINE_integer("rows", 1_000_000, "Box rows (V6 train: 14,610,229).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where the generated files and the DuckDB file go "
                                "(default: a fixed folder under the system temp dir).")
_BACKENDS = flags.DEFINE_list("backends", ["duckdb", "postgresql"], "Databases to load.")
_REPEATS = flags.DEFINE_integer("bench_repeats", 5, "Runs of each query; the median is reported.")

IMAGES_PER_ROW = 1_743_042 / 14_610_229
NUM_CLASSES, NUM_PARENTS = 600, 20
_CHUNK = 1_000_000


def _mids() -> list[str]:
  return [f"/m/0b{i:04d}" for i in range(NUM_CLASSES)]


def _write(path: pathlib.Path, table: pa.Table, quoting: str = "none", header: bool = True) -> None:
  with open(path, "ab") as f:
    pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=header, quoting_style=quoting))


# Part of the cache folder's name: files written by an older generator are not reused (version 1 wrote
# 1 in 256 OriginalMD5s short: numpy's S16 view drops trailing NUL bytes).
_GENERATOR_VERSION = "g2"


def generate(root: pathlib.Path, rows: int, seed: int = 0) -> None:
  """The manual_dir (see the module docstring); written to a temporary folder, then renamed."""
  rng = np.random.default_rng(seed)
  tmp = root.with_name(root.name + ".partial")
  if tmp.exists():
    for p in tmp.iterdir():
      p.unlink()
  tmp.mkdir(parents=True, exist_ok=True)
  mids = _mids()
  (tmp / "class-descriptions-boxable.csv").write_text(
      "".join(f"{m},Class {i}\n" for i, m in enumerate(mids)))
  (tmp / "oidv6-class-descriptions.csv").write_text(
      "LabelName,DisplayName\n" + "".join(f"{m},Class {i}\n" for i, m in enumerate(mids)))
  children = {p: mids[NUM_PARENTS + k::NUM_PARENTS] for k, p in enumerate(mids[:NUM_PARENTS])}
  tree = {"LabelName": "/m/0bl9f", "Subcategory": [
      {"LabelName": p, "Subcategory": [{"LabelName": c} for c in kids]}
      for p, kids in children.items()]}
  (tmp / "bbox_labels_600_hierarchy.json").write_text(json.dumps(tree, indent=4))

  keys = np.unique(rng.integers(0, 2**64, max(1, round(rows * IMAGES_PER_ROW)), np.uint64))
  per_image = np.ones(len(keys), np.int64)
  per_image += np.bincount(rng.integers(0, len(keys), max(0, rows - len(keys))),
                           minlength=len(keys))
  row_keys = np.repeat(keys, per_image)[:rows]
  ids = readers.key_to_image_id(keys)
  n = len(keys)
  md5 = rng.integers(0, 256, (n, 16), np.uint8)
  _write(tmp / "train-images-boxable-with-rotation.csv", pa.table({
      "ImageID": ids, "Subset": np.full(n, "train"),
      "OriginalURL": np.char.add(np.char.add("https://farm.example.org/", ids), "_o.jpg"),
      "OriginalLandingURL": np.char.add("https://www.example.org/photos/", ids),
      "License": np.full(n, "https://creativecommons.org/licenses/by/2.0/"),
      "AuthorProfileURL": np.full(n, "https://www.example.org/people/someone/"),
      "Author": np.full(n, "Some One"), "Title": np.char.add("Photo, number ", ids),
      "OriginalSize": rng.integers(10_000, 5_000_000, n),
      "OriginalMD5": [base64.b64encode(digest.tobytes()).decode() for digest in md5],
      "Thumbnail300KURL": np.char.add(np.char.add("https://c.example.org/", ids), "_z.jpg"),
      "Rotation": np.where(rng.random(n) < 0.97, 0.0, 90.0)}), quoting="needed")

  box_file = tmp / "oidv6-train-annotations-bbox.csv"
  for start in range(0, rows, _CHUNK):
    k = row_keys[start:start + _CHUNK]
    m = len(k)
    xmin, ymin = np.round(rng.random(m) * 0.8, 6), np.round(rng.random(m) * 0.8, 6)
    xmax = np.round(xmin + 0.01 + rng.random(m) * (0.99 - xmin), 6)
    ymax = np.round(ymin + 0.01 + rng.random(m) * (0.99 - ymin), 6)
    activemil = rng.random(m) < 0.15
    columns = {"ImageID": readers.key_to_image_id(k),
               "Source": np.where(activemil, "activemil", "xclick"),
               "LabelName": np.asarray(mids)[rng.integers(0, NUM_CLASSES, m)],
               "Confidence": np.ones(m, np.int8),
               "XMin": xmin, "XMax": xmax, "YMin": ymin, "YMax": ymax}
    for flag in readers.FLAG_COLUMNS:
      columns[flag] = (rng.random(m) < 0.2).astype(np.int8)
    for i, name in enumerate(readers.CLICK_COLUMNS):
      lo, hi = (xmin, xmax) if i < 4 else (ymin, ymax)
      columns[name] = np.where(activemil, -1.0, np.round(lo + rng.random(m) * (hi - lo), 6))
    _write(box_file, pa.table(columns), header=start == 0)
  tmp.rename(root)


def _postgres() -> tuple[str, str | None]:
  dsn = os.environ.get("OI_TEST_POSTGRES_DSN")
  if dsn:
    return dsn, None
  started = subprocess.run(["bash", str(ROOT / "tests" / "tools" / "postgres_server.sh"), "start"],
                           capture_output=True, text=True, check=True)
  env = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
  return env["OI_TEST_POSTGRES_DSN"], env["OI_TEST_POSTGRES_DIR"]


def _query_times(url: str) -> dict[str, float]:
  db = sql_schema.connect(url)
  try:
    mids = _mids()
    image_id = db.query("SELECT image_id FROM boxes ORDER BY image_id LIMIT 1 OFFSET 1000")[1][0][0]
    cases = {
        "class_frequencies": lambda: sql_queries.class_frequencies(db, "train"),
        "images_of_class": lambda: sql_queries.images_of_class(db, mids[NUM_PARENTS + 1], "train"),
        "images_of_class+desc": lambda: sql_queries.images_of_class(db, mids[0], "train",
                                                                    with_descendants=True),
        "classes_of_image": lambda: sql_queries.classes_of_image(db, image_id),
        "descendants": lambda: sql_queries.descendants(db, "/m/0bl9f"),
    }
    out = {}
    for name, fn in cases.items():
      times = []
      for _ in range(_REPEATS.value):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
      out[name] = statistics.median(times)
    return out
  finally:
    db.close()


def main(argv):
  del argv
  work = pathlib.Path(_WORK_DIR.value or pathlib.Path(tempfile.gettempdir()) / "oi_models_sql_import")
  manual_dir = work / f"v6_train_{_ROWS.value}_{_GENERATOR_VERSION}"
  if not manual_dir.exists():
    start = time.perf_counter()
    generate(manual_dir, _ROWS.value)
    print(f"wrote {manual_dir} in {time.perf_counter() - start:.1f} s", flush=True)
  inputs = to_sql.find_inputs(manual_dir, "v6")
  size_mb = sum(p.stat().st_size for p in inputs.paths()) / 2**20
  loads, queries, server_dir = {}, {}, None
  try:
    for backend in _BACKENDS.value:
      if backend == "duckdb":
        url = str(manual_dir.with_suffix(".duckdb"))
      else:
        url, server_dir = _postgres()
      summary = to_sql.load(url, inputs, force=True, progress=False)
      loads[backend] = summary
      queries[backend] = _query_times(url)
      print(f"{backend}: loaded in {summary.seconds:.1f} s", flush=True)
  finally:
    if server_dir:
      subprocess.run(["bash", str(ROOT / "tests" / "tools" / "postgres_server.sh"), "stop",
                      server_dir], check=False)
  boxes = next(iter(loads.values())).counts["boxes/train"]
  images = next(iter(loads.values())).counts["images"]
  print(f"{boxes:,} box rows, {images:,} images ({size_mb:,.0f} MB of CSV); query medians of "
        f"{_REPEATS.value}")
  base = loads.get("postgresql")
  print(f"{'database':<12}{'load s':>9}{'box rows/s':>12}{'x postgres':>11}")
  for backend, summary in loads.items():
    ratio = f"{base.seconds / summary.seconds:>11.2f}" if base else ""
    print(f"{backend:<12}{summary.seconds:>9.1f}{boxes / summary.seconds:>12,.0f}{ratio}")
  names = list(next(iter(queries.values())))
  print(f"\n{'query (ms)':<22}" + "".join(f"{b:>12}" for b in queries))
  for name in names:
    print(f"{name:<22}" + "".join(f"{queries[b][name] * 1000:>12.1f}" for b in queries))


if __name__ == "__main__":
  app.run(main)
