"""Autograph leaves Model Garden's vision code and this package's code as written when it traces.

Inside a `tf.function`, autograph rewrites every Python function it calls (unless allowlisted) so that
`if`/`for`/`while` over tensors become graph control flow. Model Garden's vision ops, layers, models
and tasks and this package's models, input pipelines and tasks hold no such statement (they call
`tf.cond`, `tf.while_loop`, `tf.map_fn` where they branch or loop on tensors), yet rewriting them
(~320 functions, parsed and transformed in Python) was a third of the time before a detector's
first training step and evaluation (88 s against 58 s for both traces of the tiny detector at load 5).
The packages whose code is traced (`oi_models.modeling.backbones`, `oi_models.modeling.faster_rcnn`,
`oi_models.dataloaders`; every model, input pipeline and task imports one) apply the rule on import.

Without conversion a statement that needed it fails at trace time ("using a tf.Tensor as a Python
bool is not allowed", "iterating over a symbolic tf.Tensor"), so nothing computes differently
without an error. Orbit's and `official.core`'s training loops (`for _ in tf.range(n)`) and users'
own functions are still converted. The rule is autograph's own allowlist mechanism
(`autograph.core.config.CONVERSION_RULES`), an internal of the pinned TensorFlow release.
"""

from tensorflow.python.autograph.core import config as _autograph_config

# Module-name prefixes whose functions autograph calls unconverted.
UNCONVERTED_MODULES = ("official.vision", "oi_models")


def skip_autograph_conversion() -> None:
  """Puts one `DoNotConvert` rule per `UNCONVERTED_MODULES` prefix first in autograph's rules (the
  first matching rule decides); calling it again changes nothing."""
  rules = tuple(_autograph_config.CONVERSION_RULES)
  if not any(isinstance(rule, _autograph_config.DoNotConvert) and rule.matches("oi_models.x")
             for rule in rules[:len(UNCONVERTED_MODULES)]):
    _autograph_config.CONVERSION_RULES = tuple(
        _autograph_config.DoNotConvert(prefix) for prefix in UNCONVERTED_MODULES) + rules
