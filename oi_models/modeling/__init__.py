"""Models of this package on Model Garden: backbones, heads, model builders, losses, checkpoint converters.

Importing `oi_models.modeling.backbones` registers this package's backbones with Model Garden's backbone
factory, so a config's `backbone.type` selects them like any stock backbone. This package itself
imports nothing, so that `oi-convert-checkpoint --help` lists its source kinds (`converters.SOURCES`)
without loading TensorFlow; the packages of traced code (`backbones`, `faster_rcnn`,
`oi_models.dataloaders`) make autograph leave Model Garden's vision code and this package's code
unconverted when they are imported (`tracing`).
"""
