"""Registers every task and experiment of the package (and its backbones) with Model Garden.

Import this module before `exp_factory.get_exp_config` or `task_factory.get_task`, as Model Garden's
own trainers import `official.vision.registry_imports`.
"""

# pylint: disable=unused-import
from official.vision import registry_imports as _vision

from oi_models.modeling import backbones
from oi_models.tasks import classification
from oi_models.tasks import detection
from oi_models.tasks import stock_detection
