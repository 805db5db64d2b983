"""How every `oi-…` command line starts: absl's app.run, with a --help and logs made for users.

Two things go wrong when an absl app is installed as a console script:

* absl's --help prints the flags of the module named by `sys.argv[0]` and the docstring of `__main__`,
  both of which are the generated wrapper script, so --help shows nothing of the command and users have
  to dig through --helpfull (hundreds of absl and TFDS flags). `run` makes the calling module's key
  flags (its own, and any it adopts with `flags.adopt_module_key_flags`) and its docstring the ones
  --help shows.
* TensorFlow's C++ side logs CUDA probing on machines without a GPU, oneDNN and CPU-feature notes, and
  cloud-filesystem retries before the command prints anything useful. Importing this module sets
  `QUIET_ENVIRONMENT` as defaults (a value the user set wins), so import it before TensorFlow loads;
  `TF_CPP_MIN_LOG_LEVEL=0 oi-… ` shows everything again. Errors still reach the user: TensorFlow raises
  them as Python exceptions.
* `tf.keras` is Keras 3 unless `TF_USE_LEGACY_KERAS` is set, and `import tensorflow` then loads all of
  Keras 3 (2 s of its 8 here) although this package's and Model Garden's models are `tf_keras` ones.
  The commands set it (in `QUIET_ENVIRONMENT`, same rules): `tf.keras` is `tf_keras` in them, as
  Model Garden expects, and every command starts that much sooner.

A command defines its flags when it runs, not at import: absl has one global set of flags, several
commands share flag names (--out_dir, --checkpoint, --class_list, --experiment, ...), and a name defined
twice raises DuplicateFlagError, so flags defined at import would keep their modules from being
imported together (by a test process, a notebook, the demo). `define_once` makes the function that
defines them safe to call again. Use it in place of absl's app:

  from absl import flags
  from oi_models import app

  FLAGS = flags.FLAGS

  @app.define_once
  def define_flags():
    flags.DEFINE_string("out_dir", None, "Where to write.")

  def main(argv):
    ... FLAGS.out_dir ...

  def run():
    define_flags()
    app.run(main)
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app as absl_app
from absl import flags

UsageError = absl_app.UsageError

# Defaults, read by TensorFlow's C++ logging when it loads (so set here at import, not in `run`).
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # cudart stubs, cuInit without a GPU, oneDNN, CPU features, GCS auth
    "GRPC_VERBOSITY": "ERROR",  # gRPC's fork and DNS notes (distributed strategies, cloud filesystems)
    "TF_USE_LEGACY_KERAS": "1",  # tf.keras is tf_keras; TensorFlow's import skips Keras 3
}


def quiet_logs() -> None:
  """Sets each of `QUIET_ENVIRONMENT` the user has not set; only effective before TensorFlow loads."""
  for name, value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


quiet_logs()


def define_once(define: Callable[[], None]) -> Callable[[], None]:
  """`define` (a command's flag definitions), made a no-op while the flags its first call defined
  are still defined: `run`, a test calling `main` directly, or a second `run` in one process may each
  call it. A caller that deleted those flags (to define another command's of the same names) gets
  them defined again."""
  defined = {}  # name -> the Flag object the last definition made

  @functools.wraps(define)
  def define_flags() -> None:
    known = flags.FLAGS
    if defined and all(name in known and known[name] is flag for name, flag in defined.items()):
      return
    before = set(known)
    define()
    defined.clear()
    defined.update((name, known[name]) for name in set(known) - before)

  return define_flags


def _show_own_help(module_name: str) -> None:
  """Makes absl's --help (which looks up `sys.argv[0]` and `__main__`) describe `module_name`."""
  module = sys.modules[module_name]
  main = sys.modules["__main__"]
  if module is main:  # `python -m …` or the file itself: absl already sees it.
    return
  program = sys.argv[0]
  own = {id(flag) for flag in flags.FLAGS.get_key_flags_for_module(program)}
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    if id(flag) not in own:
      flags.FLAGS.register_key_flag_for_module(program, flag)
  if not (main.__doc__ or "").strip() and module.__doc__:
    main.__doc__ = module.__doc__


def run(main: Callable[[Sequence[str]], Optional[int]], argv: Optional[Sequence[str]] = None):
  """absl's app.run(main) for a command defined in `main`'s module (see the module docstring)."""
  quiet_logs()
  _show_own_help(main.__module__)
  absl_app.run(main, argv=argv)
