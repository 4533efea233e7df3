"""Flax encoders (MLP, 1-D CNN, small ResNet, bag of tokens, id embedding) and a projection head."""

from jaxneg.models.encoders import (BACKBONES, CNN1D, MLP, BagOfTokens, Encoder, IdEmbedding, ProjectionHead,
                                    ResNet, logit_params, logit_scale, mean_embedding)


def build(name: str, head: ProjectionHead | None = None, **kwargs) -> Encoder:
    """``Encoder(BACKBONES[name](**kwargs), head)``; an unknown name lists the valid ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(BACKBONES))}")
    try:
        backbone = BACKBONES[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad arguments {sorted(kwargs)}: {e}") from None
    return Encoder(backbone, head)


__all__ = ["BACKBONES", "CNN1D", "MLP", "BagOfTokens", "Encoder", "IdEmbedding", "ProjectionHead", "ResNet",
           "build", "logit_params", "logit_scale", "mean_embedding"]
