"""Transforms and the mean-scale hyperprior model (CompressAI's model contract)."""

from trellic.models.hyperprior import MeanScaleHyperprior, ModelConfig

__all__ = ["MeanScaleHyperprior", "ModelConfig"]
