"""Models of this package on Model Garden: backbones, heads, model builders, losses, checkpoint converters.

Importing `oi_models.modeling.backbones` registers this package's backbones with Model Garden's backbone
factory, so a config's `backbone.type` selects them like any stock backbone. Importing this package
makes autograph leave Model Garden's vision code and this package's code unconverted when it traces
(`tracing`: a third of a detector's start-up).
"""

from oi_models.modeling import tracing as _tracing

_tracing.skip_autograph_conversion()
