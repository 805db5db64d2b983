"""The README's Python snippets for reading a built `open_images` run as written, on the sample.

Each snippet runs in a fresh process whose working directory holds `manual_dir` (a 6-image sample)
and whose HOME is a fresh folder, so `~/tensorflow_datasets` is empty and the snippet builds there.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from oi_models.datasets import make_sample

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _snippets():
  """The python blocks of the README's "Using a real Open Images download" section."""
  section = README.read_text().split("## Using a real Open Images download", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_shows_data_source_and_load():
  snippets = _snippets()
  assert len(snippets) == 2
  assert "tfds.data_source(" in snippets[0] and '"file_format": "array_record"' in snippets[0]
  assert "tfds.load(" in snippets[1] and "array_record" not in snippets[1]


@pytest.mark.parametrize("index", [0, 1])
def test_snippet_runs_as_written(tmp_path, index):
  sample = make_sample.make_sample(tmp_path / "manual_dir", num_images=6, splits=(2, 2, 2))
  home = tmp_path / "home"
  home.mkdir()
  check = """
import json
if "source" in globals():
  ids = sorted(source[i]["image/id"] for i in range(len(source)))
  assert set(example) >= {"image", "objects", "image_labels"}
else:
  ids = sorted(ex["image/id"].numpy().decode() for ex in ds)
print("RESULT " + json.dumps([str(i if isinstance(i, str) else i.decode()) for i in ids]))
"""
  done = subprocess.run([sys.executable, "-c", _snippets()[index] + check], cwd=tmp_path,
                        env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  ids = json.loads(done.stdout.split("RESULT ", 1)[1])
  assert ids == sorted(p.stem for p in sample.image_dirs["validation"].glob("*.jpg"))
  built = list((home / "tensorflow_datasets" / "open_images" / "v6_max1024").glob("*/*validation*"))
  assert built and all(("array_record" in p.name) == (index == 0) for p in built)
  assert not (tmp_path / "~").exists()  # TFDS does not expand "~" in a data_dir it is given.
