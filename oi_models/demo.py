"""`make demo`: the main job of the package, end to end, on the embedded sample dataset.

Each step calls the same library code a user runs on a real download; the demo only wires them
together and writes what it did to `<out_dir>/report.md`.
"""

import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from oi_models.data import make_sample

_OUT_DIR = flags.DEFINE_string("out_dir", "demo_out", "Where the demo writes the sample, the dataset "
                               "and its report.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 300, "Images in the synthetic sample dataset.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample dataset.")


class _Report:
  """Collects the demo's steps as markdown sections and echoes them to the terminal."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.sections = ["# oi_models demo report\n"]

  def add(self, title: str, body: str, seconds: float) -> None:
    print(f"\n== {title} ({seconds:.1f} s)\n{body}", flush=True)
    self.sections.append(f"## {title}\n\n_{seconds:.1f} s_\n\n```\n{body}\n```\n")
    self.path.write_text("\n".join(self.sections), encoding="utf-8")


def _sample(out_dir: pathlib.Path, report: _Report) -> pathlib.Path:
  start = time.perf_counter()
  root = out_dir / "sample"
  if not (root / make_sample.HIERARCHY).exists():
    make_sample.make_sample(root, num_images=_NUM_IMAGES.value, seed=_SEED.value, overwrite=True)
  report.add("Sample dataset (official V6 layout)", make_sample.summarize(root),
             time.perf_counter() - start)
  return root


def main(argv):
  del argv
  out_dir = pathlib.Path(_OUT_DIR.value)
  out_dir.mkdir(parents=True, exist_ok=True)
  report = _Report(out_dir / "report.md")
  _sample(out_dir, report)
  logging.info("report written to %s", report.path)
  print(f"\nreport: {report.path}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
