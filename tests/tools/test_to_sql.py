"""oi-to-sql on DuckDB and on a real PostgreSQL server: counts, idempotence, constraints, queries.

Expected values are computed here from the official-format files with the csv module and the
project's Hierarchy, independently of the loader and of SQL.
"""

import collections
import csv
import os
import subprocess
import sys

import pytest

from oi_models import labels
from oi_models.datasets import make_sample
from oi_models.tools import sql_queries
from oi_models.tools import sql_schema
from oi_models.tools import to_sql

STUB_IMAGE = "ffffffffffffffff"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  """A synthetic V6 download; validation boxes get two bad rows and a row for an unlisted image."""
  info = make_sample.make_sample(tmp_path_factory.mktemp("sample"), num_images=60, image_size=48,
                                 splits=(30, 20, 10))
  with open(info.boxes["validation"], "a", newline="") as f:
    row = "xclick,{mid},1,0.1,0.2,0.1,0.2,0,0,0,0,0\n"
    mid = next(csv.reader(open(info.class_list, newline="")))[0]
    f.write(f"{STUB_IMAGE}," + row.format(mid=mid))
    f.write(f"{STUB_IMAGE}," + row.format(mid="/m/notaclass"))
    f.write(f"{STUB_IMAGE},xclick,{mid},1,abc,0.2,0.1,0.2,0,0,0,0,0\n")
  return info


def rows_of(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def expected_counts(info):
  counts = {"images": 0}
  for split in make_sample.SPLITS:
    counts["images"] += len(rows_of(info.metadata[split]))
    counts[f"boxes/{split}"] = len(rows_of(info.boxes[split]))
    counts[f"image_labels/{split}/human"] = len(rows_of(info.image_labels[split]))
  counts["boxes/validation"] -= 2  # The two bad rows.
  counts["images"] += 1  # The unlisted image, added with NULL metadata.
  return counts


@pytest.fixture(params=["duckdb", "postgresql"])
def database(request, tmp_path):
  if request.param == "duckdb":
    return str(tmp_path / "oi.duckdb")
  return request.getfixturevalue("postgres_dsn")


def test_load_counts_and_idempotent_reruns(sample, database):
  inputs = to_sql.find_inputs(sample.root, "v6")
  first = to_sql.load(database, inputs, progress=False)
  assert first.status == "loaded"
  expected = expected_counts(sample)
  db = sql_schema.connect(database)
  try:
    found = to_sql.table_counts(db)
  finally:
    db.close()
  assert {k: found[k] for k in expected} == expected
  assert first.counts["images_without_metadata"] == 1
  report = first.reports[sample.boxes["validation"].name]
  assert report["rows_read"] - report["rows_kept"] == 2
  assert "images named by the annotations have no metadata row" in first.text()
  modified = None if database.startswith("postgresql") else os.stat(database).st_mtime_ns
  second = to_sql.load(database, inputs, progress=False)
  assert second.status == "unchanged" and "nothing was changed" in second.text()
  assert second.counts == first.counts
  if modified is not None:
    assert os.stat(database).st_mtime_ns == modified
  os.utime(sample.metadata["test"])  # A newer file: loaded again, with the same result.
  third = to_sql.load(database, to_sql.find_inputs(sample.root, "v6"), progress=False)
  assert third.status == "loaded" and third.counts == first.counts


def _loaded(sample, database):
  to_sql.load(database, to_sql.find_inputs(sample.root, "v6"), progress=False)
  return sql_schema.connect(database)


def test_keys_and_foreign_keys_are_enforced(sample, database):
  """PostgreSQL refuses each bad row; DuckDB refuses the duplicate key and the hierarchy row and, for
  the bulk tables whose foreign keys it does not declare (sql_schema's docstring says why), the check
  the load runs finds exactly the rows that name a missing image or class."""
  db = _loaded(sample, database)
  try:
    assert sql_schema.foreign_key_violations(db) == {}
    image_id, mid = db.query("SELECT image_id, label_name FROM boxes LIMIT 1")[1][0]
    missing_keys = [
        ("INSERT INTO boxes (image_id, n, split, label_name) VALUES ('0123012301230123', 0, "
         "'train', ?)", (mid,)),  # No such image.
        ("INSERT INTO boxes (image_id, n, split, label_name) VALUES (?, 999, 'train', '/m/x')",
         (image_id,)),  # No such class.
    ]
    refused = [
        ("INSERT INTO boxes (image_id, n, split, label_name) VALUES (?, 0, 'train', ?)",
         (image_id, mid)),  # Duplicate primary key.
        ("INSERT INTO hierarchy VALUES ('/m/x', ?, 'subcategory')", (mid,)),
    ]
    if db.dialect == "postgresql":
      refused += missing_keys
    for sql, params in refused:
      with pytest.raises(Exception, match="(?i)constraint|violat|key"):
        db.execute(sql, params)
      if db.dialect == "postgresql":
        db.connection.rollback()
    if db.dialect == "duckdb":
      for sql, params in missing_keys:
        db.execute(sql, params)
      assert sql_schema.foreign_key_violations(db) == {("boxes", ("image_id",)): 1,
                                                       ("boxes", ("label_name",)): 1}
      with pytest.raises(ValueError, match=r"boxes\.image_id: 1 rows, boxes\.label_name: 1 rows"):
        db.add_constraints()
  finally:
    db.close()


def test_ready_queries_agree_with_the_files(sample, database):
  db = _loaded(sample, database)
  hierarchy = labels.Hierarchy.from_json(sample.hierarchy)
  names = {m: n for m, n in csv.reader(open(sample.class_list, newline=""))}
  try:
    split = "validation"
    boxes = [r for r in rows_of(sample.boxes[split])
             if r["ImageID"] != STUB_IMAGE or r["LabelName"] in names]
    boxes = [r for r in boxes if r["XMin"] != "abc"]
    per_class = collections.Counter(r["LabelName"] for r in boxes)
    human = rows_of(sample.image_labels[split])
    positives = collections.Counter(r["LabelName"] for r in human if float(r["Confidence"]) == 1)
    frequencies = sql_queries.class_frequencies(db, split)
    assert frequencies.columns[:3] == ["mid", "display_name", "boxes"]
    got = {row[0]: (row[2], row[4]) for row in frequencies.rows}
    assert got == {m: (per_class[m], positives[m]) for m in set(per_class) | set(positives)}
    for mid in hierarchy.mids:
      found = {row[0] for row in sql_queries.descendants(db, mid).rows}
      assert found == set(hierarchy.descendants(mid)), mid
    # A parent class by display name, with descendants: the boxes of all its subclasses.
    parent = next(m for m in hierarchy.mids if m != hierarchy.root and hierarchy.children(m))
    family = {parent} | set(hierarchy.descendants(parent))
    result = sql_queries.images_of_class(db, names.get(parent, parent).lower(), split,
                                         with_descendants=True)
    assert sorted((r[0], r[2]) for r in result.rows) == sorted(
        (r["ImageID"], r["LabelName"]) for r in boxes if r["LabelName"] in family)
    image_id = boxes[0]["ImageID"]
    on_image = sql_queries.classes_of_image(db, image_id)
    expected = collections.Counter(r["LabelName"] for r in boxes if r["ImageID"] == image_id)
    assert {row[0]: row[2] for row in on_image.rows if row[2]} == dict(expected)
    with pytest.raises(KeyError):
      sql_queries.descendants(db, "no such class")
  finally:
    db.close()


def test_cli_loads_says_unchanged_and_answers_queries(sample, tmp_path):
  database = str(tmp_path / "cli.duckdb")

  def cli(*args):
    return subprocess.run([sys.executable, "-m", "oi_models.tools.to_sql", f"--database={database}",
                           "--noprogress", *args], capture_output=True, text=True, timeout=120)

  first = cli(f"--manual_dir={sample.root}", "--splits=validation,test")
  assert first.returncode == 0, first.stderr[-2000:]
  assert first.stdout.startswith("loaded:") and "skipped 2 of" in first.stdout
  again = cli(f"--manual_dir={sample.root}", "--splits=validation,test", "--query=descendants",
              f"--class={labels.Hierarchy.from_json(sample.hierarchy).mids[1]}")
  assert again.returncode == 0, again.stderr[-2000:]
  assert again.stdout.startswith("unchanged:") and "mid" in again.stdout
  query = cli("--sql=SELECT split, count(*) AS n FROM boxes GROUP BY split ORDER BY split")
  counts = expected_counts(sample)
  assert query.stdout.split("\n")[2:4] == [
      f"test        {counts['boxes/test']}", f"validation  {counts['boxes/validation']}"]
  missing = cli("--query=images_of_class", "--class=nothing like it")
  assert missing.returncode == 1 and "no class" in missing.stderr
  assert "Traceback" not in missing.stderr


def test_row_numbers_within_an_image_follow_the_file_across_chunks():
  """`n` of (image_id, n): each row's position among its image's rows, by brute force."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  keys = rng.integers(0, 50, 5000).astype(np.uint64)  # Unsorted, images spread over chunks.
  counter, got = to_sql._Counter(), []  # pylint: disable=protected-access
  for chunk in np.array_split(keys, 7):
    got.append(counter.ranks(chunk))
  seen = collections.Counter()
  expected = []
  for key in keys.tolist():
    expected.append(seen[key])
    seen[key] += 1
  assert np.concatenate(got).tolist() == expected
  assert counter.missing(np.array([3, 77], np.uint64)).tolist() == [77]
