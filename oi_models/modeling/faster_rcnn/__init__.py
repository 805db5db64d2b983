"""The Faster R-CNN Inception-ResNet-v2 atrous detector (the Open Images reference) on Model Garden.

One module per layer where the reference (the TF Object Detection API's `FasterRCNNMetaArch` with the
OID V4 settings) differs from Model Garden's stock layer: `anchors`, `preprocessing`, `rpn_head`,
`roi_generator`, `roi_aligner`, `detection_head`, `detection_generator`; `model` assembles them on
Model Garden's `MaskRCNNModel`.
"""

from oi_models.modeling import tracing as _tracing

_tracing.skip_autograph_conversion()  # before anything here is traced
