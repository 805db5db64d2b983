"""inference.main_from_flags: the `main` of oi-detect and oi-classify, from their real flags.

The commands' flags are defined in this process only for a test and deleted after it: oi-detect and
oi-classify (and other commands) define flags of the same names.
"""

import inspect

from absl import flags
from absl.testing import flagsaver
import pytest

from oi_models import app
from oi_models.serving import classify
from oi_models.serving import detect
from oi_models.serving import inference

COMMANDS = {"oi-detect": (detect, detect.detect), "oi-classify": (classify, classify.classify)}


def _defined(module) -> list:
  before = set(flags.FLAGS)
  module.define_flags()
  flags.FLAGS.mark_as_parsed()
  return sorted(set(flags.FLAGS) - before)


@pytest.fixture(params=sorted(COMMANDS))
def command(request):
  """(name, module, its infer function, the flags its define_flags defined), deleted afterwards."""
  module, infer = COMMANDS[request.param]
  names = _defined(module)
  yield request.param, module, infer, names
  for name in names:
    delattr(flags.FLAGS, name)


def test_every_option_of_the_command_is_one_of_its_flags(command):
  _, _, infer, names = command
  options = [p.name for p in inspect.signature(infer).parameters.values() if p.kind is p.KEYWORD_ONLY]
  assert options and set(options) <= set(names)
  assert {"saved_model", "image_list"} <= set(names)


def test_options_come_from_the_flags_of_their_names(command):
  name, _, infer, _ = command
  seen = {}

  @_like(infer)
  def record(inputs, saved_model, **options):
    seen.update(options, inputs=inputs, saved_model=saved_model)
    return 3

  with flagsaver.flagsaver(saved_model="exported/model", batch_size=5, output_jsonl="out.jsonl"):
    assert inference.main_from_flags([name, "a.jpg", "images/"], record) == 3
  assert seen.pop("inputs") == ["a.jpg", "images/"] and seen.pop("saved_model") == "exported/model"
  assert seen["batch_size"] == 5 and seen["output_jsonl"] == "out.jsonl"
  defaults = {p.name: p.default for p in inspect.signature(infer).parameters.values()
              if p.kind is p.KEYWORD_ONLY}
  # The rest are the flags' defaults, which are the library call's defaults.
  assert {k: v for k, v in seen.items() if k not in ("batch_size", "output_jsonl")} == \
      {k: v for k, v in defaults.items() if k not in ("batch_size", "output_jsonl")}
  assert set(seen) == set(defaults)


def test_usage_errors_name_what_is_missing(command):
  name, _, infer, _ = command
  with pytest.raises(app.UsageError, match="--saved_model is required"):
    inference.main_from_flags([name, "a.jpg"], infer)
  with flagsaver.flagsaver(saved_model="exported/model"):
    with pytest.raises(app.UsageError, match="--image_list"):
      inference.main_from_flags([name], infer)


def _like(infer):
  """Gives the decorated function `infer`'s signature (what main_from_flags reads)."""
  def wrap(function):
    function.__signature__ = inspect.signature(infer)
    return function
  return wrap
