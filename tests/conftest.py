"""Shared fixture: the real Open Images files in ../shared/openimages (or $OI_SHARED)."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_path(*parts: str) -> pathlib.Path:
  """Path to a real Open Images file; skips the calling test when it is absent."""
  # Absolute, so paths stay valid from another working directory or as symlink targets.
  root = pathlib.Path(os.environ.get("OI_SHARED", REPO_ROOT.parent / "shared" / "openimages"))
  path = root.resolve().joinpath(*parts)
  if not path.exists():
    pytest.skip(f"real Open Images file not available: {path}")
  return path


@pytest.fixture
def shared():
  """Returns shared_path, so tests can write `shared("hierarchy", "x.json")`."""
  return shared_path


# As in the commands (oi_models.app.QUIET_ENVIRONMENT): tf.keras is tf_keras, so importing TensorFlow
# skips Keras 3, in the test processes and every process they start (~1-2 s each).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# TensorFlow's own (Eigen) CPU kernels in every test process and every process it starts, also on
# CPUs where TensorFlow turns oneDNN on by itself (AVX512-VNNI, AVX512-BF16, AMX: an AMD EPYC of
# this workplace on 2026-12-02). The tests that compare the converted detector end to end with the
# TF Object Detection API's graph hold it to 1e-4, which needs the same kernels in both programs:
# oneDNN fuses the two programs' ops differently, so the proposals come out ulps apart, and the
# reference's `crop_and_resize` is discontinuous at the feature map's edge (a proposal clipped to the
# image border samples the last row at exactly H-1; one ulp more reads the extrapolation value 0).
# With oneDNN, one ROI's logits moved by ~0.1 and the end-to-end parity test, the converted
# detector's serving tests and the released-models notebook failed; and an untrained model's
# near-equal scores swapped places between eager and graph (test_model). README "Parity" says what
# a user with oneDNN sees. Costs ~15% of the tiny detector's training time on that machine.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# --- Scheduling under `pytest -n N --dist loadfile` (make test) -------------------------------------
# Each xdist worker's TensorFlow runs an op's work on cores // N threads (intra-op; subprocesses
# inherit it): with every worker busy, splitting small ops over all cores only hands the same cores
# back and forth. Two tiny-detector runs side by side (80 steps each) took 72 s with one intra-op
# thread against 82 s with TF's default; the inter-op pool (which also runs tf.data's work) keeps its
# default, as 1 there gained nothing (72 s too).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
  _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  _THREADS = str(max(1, _CORES // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _THREADS)

# The slowest files first (wall seconds each in a `make test` run on the 2-core machine, 2026-12-01),
# so that no worker is left running one long file at the end while the other idles (the Makefile
# passes --no-loadscope-reorder, which keeps this order; xdist's default orders files by their
# number of tests). test_parity comes first: it runs the reference detector's oracle that three
# later files of this list wait for (tests/modeling/faster_rcnn/reference.py).
SLOWEST_FIRST = (
    "tests/modeling/faster_rcnn/test_parity.py",  # 175 (the shared oracle run)
    "tests/tasks/test_detection_machinery.py",  # 215
    "tests/tasks/test_detection.py",  # 145
    "tests/notebooks/test_released_models.py",  # 135 (oracle)
    "tests/serving/test_converted_detector.py",  # 110-210 (oracle; before its export traced once)
    "tests/tasks/test_train.py",  # 100
    "tests/tasks/test_stock_detectors.py",  # 85
    "tests/test_demo.py",  # 80
    "tests/notebooks/test_notebooks.py",  # 70
    "tests/modeling/converters/test_slim_resnet_v1_101.py",  # 70
    "tests/serving/test_detection.py",  # 65
    "tests/tasks/test_classification.py",  # 50
    "tests/modeling/converters/test_slim_inception_resnet_v2.py",  # 50
    "tests/datasets/test_builder.py",  # 40
    "tests/tasks/test_converted_eval.py",  # 40 (oracle)
    "tests/modeling/converters/test_keras_applications.py",  # 40
    "tests/evaluation/test_official_evaluators.py",  # 40
    "tests/modeling/converters/test_slim_resnet_v1.py",  # 30
    "tests/serving/test_classification.py",  # 30
    "tests/test_console_scripts.py",  # 25
    "tests/tools/test_download.py",  # 20
)


def pytest_collection_modifyitems(session, config, items):
  """Files of SLOWEST_FIRST first, in its order; every other file after them, as collected."""
  del session, config
  rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}

  def key(item):
    path = pathlib.Path(str(item.fspath)).resolve().relative_to(REPO_ROOT).as_posix()
    return rank.get(path, len(rank))

  items.sort(key=key)  # stable: the tests of a file keep their order
