"""Every `oi-…` command's module imports beside every other's and defines its flags only when it runs.

absl keeps one global set of flags and raises DuplicateFlagError for a name defined twice, and several
commands share flag names (--out_dir, --checkpoint, --class_list, --experiment, ...). So each command
defines its flags in `define_flags` (`oi_models.app.define_once`), which its `run` calls. One fresh
process (the test's own may hold flags other tests defined) imports every command module, checks that
none defined a flag, then, command by command: defines its flags twice (as a second `run` in one
process would), runs its --help through its `run`, and deletes its flags for the next command. The
export/ scripts' --help is their command's.
"""

import importlib.metadata
import json
import pathlib
import re
import subprocess
import sys

from absl import flags
import pytest

from oi_models import app

REPO = pathlib.Path(__file__).resolve().parents[1]
MODULES = sorted({ep.value.split(":")[0] for ep in importlib.metadata.entry_points(group="console_scripts")
                  if ep.value.startswith("oi_models.")})
FLAG_LINE = re.compile(r"^\s+--(?:\[no\])?(\w+):", re.M)

SCRIPT = r'''
import contextlib, importlib, io, json, sys
from absl import flags

FLAGS = flags.FLAGS
modules = {name: importlib.import_module(name) for name in json.loads(sys.argv[1])}
out = {"at_import": sorted(f"{name}: --{flag.name}" for name, defined in FLAGS.flags_by_module_dict().items()
                           if name.startswith("oi_models") for flag in defined),
       "commands": {}}
for name, module in modules.items():
  before = set(FLAGS)
  module.define_flags()
  module.define_flags()
  own = sorted(set(FLAGS) - before)
  attributed = sorted(flag.name for flag in FLAGS.flags_by_module_dict().get(name, []))
  sys.argv = [f"/bin/{name}-wrapper", "--help"]
  sys.modules["__main__"].__doc__ = None
  shown = io.StringIO()
  with contextlib.redirect_stdout(shown):
    try:
      module.run()
      status = "returned"
    except SystemExit as e:
      status = e.code
  doc = (module.__doc__ or "").strip().split("\n")[0]
  out["commands"][name] = {"own": own, "attributed": attributed, "help": shown.getvalue(),
                           "status": status, "doc_shown": bool(doc) and doc in shown.getvalue()}
  for flag in own:
    delattr(FLAGS, flag)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def commands():
  done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(MODULES)], capture_output=True,
                        text=True, cwd=REPO, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.splitlines()[-1])


def test_importing_every_command_module_defines_no_flag(commands):
  assert len(MODULES) >= 12 and "oi_models.tasks.train" in MODULES
  assert commands["at_import"] == []
  assert set(commands["commands"]) == set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_define_flags_then_help_in_the_shared_process(commands, module):
  """Its flags are defined by its own module (where --helpfull groups them) and --help lists each."""
  command = commands["commands"][module]
  assert command["own"], f"{module}.define_flags defined no flag"
  # Aliases (oi-evaluate's official names) are registered under the module too.
  assert command["attributed"] == command["own"]
  assert command["status"] == 1  # absl's exit status after --help
  assert command["doc_shown"], command["help"]  # the command's docstring, not the wrapper's
  shown = set(FLAG_LINE.findall(command["help"]))
  assert set(command["own"]) <= shown, (sorted(set(command["own"]) - shown), command["help"])


@pytest.mark.parametrize("script", sorted((REPO / "export").glob("*.py")), ids=lambda p: p.name)
def test_export_scripts_show_their_commands_flags(commands, script):
  """export/<name>.py runs oi_models.serving.<name> from a checkout: its --help is the command's."""
  own = commands["commands"][f"oi_models.serving.{script.stem}"]["own"]
  done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                        cwd=REPO, timeout=300)
  assert done.returncode == 1 and "--helpfull" in done.stdout, done.stderr[-2000:]
  assert set(own) <= set(FLAG_LINE.findall(done.stdout)), done.stdout


def test_define_once_defines_again_only_what_was_deleted():
  calls = []

  @app.define_once
  def define_flags():
    calls.append(1)
    flags.DEFINE_integer("oi_test_define_once", 3, "A flag of this test.")

  try:
    define_flags()
    first = flags.FLAGS["oi_test_define_once"]
    define_flags()  # a second run() in the process: nothing to do
    assert len(calls) == 1 and flags.FLAGS["oi_test_define_once"] is first
    delattr(flags.FLAGS, "oi_test_define_once")
    define_flags()  # deleted (as the shared process above does between commands): defined again
    assert len(calls) == 2 and flags.FLAGS["oi_test_define_once"] is not first

    @app.define_once
    def another_command():
      flags.DEFINE_integer("oi_test_define_once", 4, "Another command's flag of the same name.")

    with pytest.raises(flags.DuplicateFlagError):  # two commands' flags in one process still clash
      another_command()
  finally:
    if "oi_test_define_once" in flags.FLAGS:
      delattr(flags.FLAGS, "oi_test_define_once")
