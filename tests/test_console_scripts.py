"""Every installed `oi-…` console script is an absl app whose --helpfull explains each of its flags."""

import importlib.metadata
import re
import pathlib
import subprocess
import sys

import pytest

SCRIPTS = sorted(ep.name for ep in importlib.metadata.entry_points(group="console_scripts")
                 if ep.value.startswith("oi_models."))


def test_setup_declares_scripts():
  assert "oi-make-sample" in SCRIPTS and "oi-evaluate" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_helpfull_documents_every_flag(script):
  exe = pathlib.Path(sys.executable).parent / script
  assert exe.exists(), f"{script} is declared in setup.py but not installed beside {sys.executable}"
  done = subprocess.run([exe, "--helpfull"], capture_output=True, text=True, timeout=300)
  assert done.returncode in (0, 1), done.stderr[-2000:]
  text = done.stdout + done.stderr
  # absl prints the flags of the script's own modules under a heading naming the module.
  own = re.split(r"\n(?=\S)", text)
  sections = [s for s in own if s.lstrip().startswith("oi_models.") or s.lstrip().startswith("__main__")]
  assert sections, f"{script}: no flags of its own in --helpfull:\n{text[:2000]}"
  for section in sections:
    for flag, help_text in re.findall(r"\n\s+--(?:\[no\])?(\w+):\s*(.*)", section):
      assert help_text.strip() and not help_text.startswith("("), f"{script}: --{flag} has no help"
