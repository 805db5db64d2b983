"""The detection metric equals the TF OD API's Open Images evaluators, run as the official script runs.

The official code (the research sdist in .venv/oracles) runs in a process of its own through
tests.oracles; see tests/evaluation/official.py for the workloads and what is compared. The long run
is `python tests/evaluation/official_crosscheck.py --workloads 5000`.
"""

from tests.evaluation import official

WORKLOADS = 300


def test_equals_the_official_evaluators_on_random_workloads(tmp_path):
  manifest = official.write_workloads(tmp_path, WORKLOADS, seed=0)
  official.run_official(manifest)
  counts = official.compare(manifest)
  assert counts["workloads"] == WORKLOADS and counts["comparisons"] == 2 * WORKLOADS
  assert counts["script_runs"] > WORKLOADS // 8  # the official script itself, at IoU 0.5
  assert counts["metric_rows"] > 4 * WORKLOADS
  assert (counts["metric_mismatches"], counts["curve_mismatches"], counts["script_mismatches"]) == (
      0, 0, 0), counts["examples"]
