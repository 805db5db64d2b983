"""This package's backbones; importing the package registers each with Model Garden's backbone factory."""

from oi_models.modeling import tracing as _tracing
from oi_models.modeling.backbones.inception_resnet_v2 import InceptionResNetV2
from oi_models.modeling.backbones.slim_resnet_v1 import SlimResNetV1

_tracing.skip_autograph_conversion()  # before anything here is traced
