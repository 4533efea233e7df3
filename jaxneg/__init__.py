"""jaxneg: contrastive losses and negative sampling in JAX, dense or streamed over blocks."""

from jaxneg import losses, metrics, parallel, samplers
from jaxneg.registry import LOSSES, SAMPLERS, Registry

__version__ = "0.1.0"
__all__ = ["losses", "metrics", "parallel", "samplers", "LOSSES", "SAMPLERS", "Registry", "__version__"]
