"""The README's shell commands: each one names a real program and passes only flags that program has.

What is checked, and what is not (the README promises that every command in it runs; this test holds
the part of that promise that is cheap to hold for every command, and says where the rest is held):
- Every ```sh block is split into commands as a shell would (continued lines joined, quoted strings
  that span lines kept whole, comments dropped, `NAME=value` environment prefixes skipped).
- A command starting with `oi-` names a console script declared in setup.py, and every `--flag` it
  passes (`--flag value`, `--flag=value`, `--noflag` for booleans) is listed by that tool's own
  `--helpfull`, which this test runs once per tool. A literal `...` stands for flags shown elsewhere.
- `make <target>`: the Makefile has the target; the quick start's `make demo` and `make test` are there
  word for word.
- Any other program must be one of `OTHER_PROGRAMS` (external tools the README shows: wget, tar, tfds,
  tensorboard, python); those commands are not checked.
It does not run the commands: flag values (paths, experiment names) and what the commands do are
tested elsewhere on the sample: the tiny classifier's and detector's `oi-train` commands by tests/tasks,
oi-build-dataset by tests/datasets (its snippets by test_readme_snippets.py), oi-evaluate by
tests/evaluation, oi-export/oi-detect/oi-classify by tests/serving, oi-download/oi-image-sizes/oi-to-sql
by tests/tools, oi-convert-checkpoint by tests/modeling, the whole path by `make demo` and by the
notebooks (tests/notebooks). Commands for a real release, a TPU or several workers cannot run here.
"""

import concurrent.futures
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OTHER_PROGRAMS = {"wget", "tar", "tfds", "tensorboard", "python"}


def shell_commands(text: str) -> list[list[str]]:
  """The commands of every ```sh block of `text`, each as its words."""
  commands = []
  for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
    pending = ""
    for line in block.splitlines():
      if line.rstrip().endswith("\\"):  # a continued line: the shell drops backslash-newline
        pending += line.rstrip()[:-1] + " "
        continue
      pending += line + "\n"
      try:
        words = shlex.split(pending, comments=True)
      except ValueError:  # an open quote: the command goes on on the next line
        continue
      while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words = words[1:]
      if words:
        commands.append(words)
      pending = ""
    assert not pending.strip(), f"unterminated command in README: {pending!r}"
  return commands


def passed_flags(words: list[str]) -> list[str]:
  return [w[2:].split("=", 1)[0] for w in words[1:] if w.startswith("--") and len(w) > 2]


def helpfull_flags(tool: str) -> set[str]:
  """Every flag name `tool --helpfull` lists, with `no<name>` for booleans."""
  done = subprocess.run([str(pathlib.Path(sys.executable).with_name(tool)), "--helpfull"],
                        capture_output=True, text=True, timeout=600)
  assert done.returncode in (0, 1) and "--helpfull" in done.stdout, done.stderr[-2000:]  # absl: 1
  names = set()
  for match in re.finditer(r"^\s+--(\[no\])?([\w.-]+):", done.stdout, re.M):
    names.add(match.group(2))
    if match.group(1):
      names.add("no" + match.group(2))
  return names


def console_scripts() -> set[str]:
  text = (REPO / "setup.py").read_text()
  return set(re.findall(r'"(oi-[\w-]+)=', text))


README_COMMANDS = shell_commands(README.read_text())


def test_the_parser_reads_continuations_quotes_comments_and_environment():
  text = ("```sh\nTF_CONFIG='{\"a\": 1}' \\\n  oi-train --mode=train \\\n  --tpu=x   # a comment's quote\n"
          "oi-to-sql --sql \"SELECT a\n  FROM b\" --limit 3\n\n```\n")
  assert shell_commands(text) == [["oi-train", "--mode=train", "--tpu=x"],
                                  ["oi-to-sql", "--sql", "SELECT a\n  FROM b", "--limit", "3"]]
  assert passed_flags(["oi-x", "--a=1", "--b", "2", "--noc", "...", "-"]) == ["a", "b", "noc"]


def test_the_readme_has_commands_of_every_task():
  programs = {words[0] for words in README_COMMANDS}
  assert {"oi-download", "oi-build-dataset", "oi-train", "oi-evaluate", "oi-export", "oi-detect",
          "oi-classify", "oi-convert-checkpoint", "oi-to-sql", "make"} <= programs


def test_quick_start_commands_are_make_targets():
  quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
  assert [words[:2] for words in shell_commands(quick_start)] == [["make", "demo"], ["make", "test"]]
  targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
  for words in README_COMMANDS:
    if words[0] == "make":
      assert words[1] in targets, words


def test_every_program_is_known():
  scripts = console_scripts()
  for words in README_COMMANDS:
    if words[0].startswith("oi-"):
      assert words[0] in scripts, f"{words[0]} is not a console script of setup.py"
    else:
      assert words[0] in OTHER_PROGRAMS | {"make"}, f"unknown program in README: {shlex.join(words)}"


@pytest.fixture(scope="module")
def tool_flags():
  tools = sorted({w[0] for w in README_COMMANDS if w[0].startswith("oi-")} & console_scripts())
  with concurrent.futures.ThreadPoolExecutor(2) as pool:  # 2 cores; each tool imports TensorFlow
    return dict(zip(tools, pool.map(helpfull_flags, tools)))


def test_every_oi_command_passes_only_flags_its_tool_has(tool_flags):
  unknown = []
  for words in README_COMMANDS:
    if words[0] in tool_flags:
      unknown += [f"{words[0]} --{flag}" for flag in passed_flags(words)
                  if flag not in tool_flags[words[0]]]
  assert not unknown, unknown


def test_a_wrong_flag_would_be_caught(tool_flags):
  assert "experiment" in tool_flags["oi-train"] and "experimnet" not in tool_flags["oi-train"]
  assert "noexpand_hierarchy" in tool_flags["oi-export"]
