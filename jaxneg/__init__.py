"""jaxneg: contrastive losses and negative sampling in JAX, dense or streamed over blocks."""

from jaxneg import losses, metrics
from jaxneg.registry import LOSSES, Registry

__version__ = "0.1.0"
__all__ = ["losses", "metrics", "LOSSES", "Registry", "__version__"]
