"""The model (transforms around a latent codec), its config and architectures."""

from trellic.models.config import ModelConfig
from trellic.models.model import CodecModel

__all__ = ["CodecModel", "ModelConfig"]
