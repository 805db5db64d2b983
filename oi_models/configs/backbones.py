"""Backbone configs of this package, added to Model Garden's backbone one-of.

`Backbone` extends Model Garden's `configs.backbones.Backbone`, so every stock backbone stays selectable
by `type` next to the two this package registers with Model Garden's backbone factory.
"""

import dataclasses
from typing import List

from official.modeling import hyperparams
from official.vision.configs import backbones


@dataclasses.dataclass
class SlimResNetV1(hyperparams.Config):
  """TF-slim's ResNet-v1 (`resnet_v1_50/101/152`): the released Open Images classifier's layout.

  See `oi_models.modeling.backbones.slim_resnet_v1`. Batch-norm momentum and epsilon live here (slim's
  values), not in `norm_activation`: they belong to the checkpoint the weights come from.
  """
  model_id: int = 101
  block_repeats: List[int] = dataclasses.field(default_factory=list)  # units per block; [] = model_id's
  depth_multiplier: float = 1.0
  batch_norm_scale: bool = True  # batch norm with gamma (tf-slim's resnet_arg_scope default)
  input_normalization: str = "vgg"  # input minus slim's VGG means; "model_garden": (x - mean) / std
  norm_momentum: float = 0.997
  norm_epsilon: float = 1e-5
  bn_trainable: bool = True


@dataclasses.dataclass
class InceptionResNetV2(hyperparams.Config):
  """Inception-ResNet-v2 as the TF Object Detection API's atrous Faster R-CNN uses it.

  output_stride: 8 (atrous block17, the reference detector) or 16 return the first stage only; 32 is the
  whole classification network. padding: 'SAME' (the OD API's aligned feature maps) or 'VALID' (Keras
  Applications, slim's classifier). The repeats are the published 10 / 20 / 9; tiny configs use fewer.
  bn_inference_mode=True normalizes with the moving statistics in training too, betas still learning (the
  OD API's Faster R-CNN default, `batch_norm_trainable: false`); bn_trainable=False freezes batch norm
  whole (moving statistics, nothing trained).
  """
  output_stride: int = 8
  padding: str = "SAME"
  block35_repeats: int = 10
  block17_repeats: int = 20
  block8_repeats: int = 9
  bn_trainable: bool = True
  bn_inference_mode: bool = False
  depth_multiplier: float = 1.0  # scales every convolution's channels (tiny configs); 1.0 published


@dataclasses.dataclass
class Backbone(backbones.Backbone):
  """Model Garden's backbones plus `slim_resnet_v1` and `inception_resnet_v2`."""
  slim_resnet_v1: SlimResNetV1 = dataclasses.field(default_factory=SlimResNetV1)
  inception_resnet_v2: InceptionResNetV2 = dataclasses.field(default_factory=InceptionResNetV2)
