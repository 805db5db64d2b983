"""Models of this package on Model Garden: backbones, heads, model builders, losses, checkpoint converters.

Importing `oi_models.modeling.backbones` registers this package's backbones with Model Garden's backbone
factory, so a config's `backbone.type` selects them like any stock backbone.
"""
