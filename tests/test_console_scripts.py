"""Every installed `oi-…` console script is an absl app whose --help lists and explains its own flags."""

import functools
import importlib.metadata
import re
import pathlib
import subprocess
import sys

import pytest

ENTRY_POINTS = [ep for ep in importlib.metadata.entry_points(group="console_scripts")
                if ep.value.startswith("oi_models.")]
SCRIPTS = sorted(ep.name for ep in ENTRY_POINTS)
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "oi_models"


def test_every_command_line_module_is_a_console_script():
  """A module with a `run()` entry (the project's absl-app convention) must be installed as `oi-…`."""
  modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
             for path in PACKAGE.rglob("*.py") if re.search(r"^def run\(\)", path.read_text(), re.M)}
  declared = {ep.value.split(":")[0] for ep in ENTRY_POINTS}
  assert modules, "no command-line modules found"
  assert modules <= declared, f"not declared in setup.py: {sorted(modules - declared)}"


FLAG_LINE = re.compile(r"^\s+--(?:\[no\])?(\w+):", re.M)


@functools.lru_cache(maxsize=None)
def _helpfull(script: str) -> subprocess.CompletedProcess:
  """`script --helpfull`, run once for both tests below (each run is a process start)."""
  exe = pathlib.Path(sys.executable).parent / script
  return subprocess.run([exe, "--helpfull"], capture_output=True, text=True, timeout=300)


def _section(text: str, heading: str) -> str:
  """The flag lines absl prints under `heading:` (a module name or the program path)."""
  sections = re.split(r"\n(?=\S)", text)
  return "\n".join(s for s in sections if s.split("\n", 1)[0].strip() == heading + ":")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_the_commands_own_flags(script):
  """--help, not only --helpfull, shows every flag the entry module defines (oi_models.app.run)."""
  exe = pathlib.Path(sys.executable).parent / script
  module = next(ep.value.split(":")[0] for ep in ENTRY_POINTS if ep.name == script)
  full = _helpfull(script)
  short = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=300)
  assert short.returncode in (0, 1), short.stderr[-2000:]
  defined = set(FLAG_LINE.findall(_section(full.stdout, module)))
  assert defined, f"{script}: {module} defines no flags in --helpfull:\n{full.stdout[:2000]}"
  shown = set(FLAG_LINE.findall(short.stdout))
  assert defined <= shown, f"{script} --help leaves out {sorted(defined - shown)}:\n{short.stdout}"
  assert "absl.logging" not in short.stdout and "--helpfull" in short.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_helpfull_documents_every_flag(script):
  exe = pathlib.Path(sys.executable).parent / script
  assert exe.exists(), f"{script} is declared in setup.py but not installed beside {sys.executable}"
  done = _helpfull(script)
  assert done.returncode in (0, 1), done.stderr[-2000:]
  text = done.stdout + done.stderr
  # absl prints the flags of the script's own modules under a heading naming the module.
  own = re.split(r"\n(?=\S)", text)
  sections = [s for s in own if s.lstrip().startswith("oi_models.") or s.lstrip().startswith("__main__")]
  assert sections, f"{script}: no flags of its own in --helpfull:\n{text[:2000]}"
  for section in sections:
    for flag, help_text in re.findall(r"\n\s+--(?:\[no\])?(\w+):\s*(.*)", section):
      assert help_text.strip() and not help_text.startswith("("), f"{script}: --{flag} has no help"
