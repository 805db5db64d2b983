"""The long run of the comparison with the TF OD API's Open Images evaluators (the suite runs 300).

    .venv/bin/python tests/evaluation/official_crosscheck.py --workloads 5000 --seed 1

Writes the workloads as official files in a temporary folder, runs the official evaluators and the
official script on them (tests/oracles/od_evaluators.py, through tests.oracles; needs `make install`'s
.venv/oracles), evaluates them with oi_models, and prints the counts of comparisons and mismatches and
the time each side took. Exits 1 on any mismatch.
"""

import logging
import pathlib
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.evaluation import official  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKLOADS = flags.DEFINE_integer("workloads", 2000, "Random workloads (each compared per protocol).")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the workloads (the suite uses 0).")


def main(argv) -> int:
  del argv
  # The workloads are the official script's inputs, without a hierarchy: no warning per workload.
  logging.getLogger("oi_models.evaluation").setLevel(logging.ERROR)
  with tempfile.TemporaryDirectory() as root:
    manifest = official.write_workloads(pathlib.Path(root), _WORKLOADS.value, _SEED.value)
    official_seconds = official.run_official(manifest, timeout=24 * 3600)
    start = time.perf_counter()
    counts = official.compare(manifest)
    ours_seconds = time.perf_counter() - start
  examples = counts.pop("examples")
  for name, value in counts.items():
    print(f"{name:>18}: {value:,}")
  print(f"{'official seconds':>18}: {official_seconds:.1f} (one process, imports included)")
  print(f"{'oi_models seconds':>18}: {ours_seconds:.1f} (files read and evaluated, both protocols)")
  print("\n".join(examples))
  mismatches = counts["metric_mismatches"] + counts["curve_mismatches"] + counts["script_mismatches"]
  return 1 if mismatches else 0


if __name__ == "__main__":
  app.run(main)
