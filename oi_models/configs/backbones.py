"""Backbone configs of this package, added to Model Garden's backbone one-of.

`Backbone` extends Model Garden's `configs.backbones.Backbone`, so every stock backbone stays selectable
by `type` next to the two this package registers with Model Garden's backbone factory.
"""

import dataclasses

from official.modeling import hyperparams
from official.vision.configs import backbones


@dataclasses.dataclass
class SlimResNetV1(hyperparams.Config):
  """TF-slim's ResNet-v1 (`resnet_v1_50/101/152`): the released Open Images classifier's layout."""
  model_id: int = 101


@dataclasses.dataclass
class InceptionResNetV2(hyperparams.Config):
  """Inception-ResNet-v2 as the TF Object Detection API's atrous Faster R-CNN uses it."""
  output_stride: int = 8


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbones plus `slim_resnet_v1` and `inception_resnet_v2`."""
  slim_resnet_v1: SlimResNetV1 = dataclasses.field(default_factory=SlimResNetV1)
  inception_resnet_v2: InceptionResNetV2 = dataclasses.field(default_factory=InceptionResNetV2)
