"""Validation with the real codec: true quantization, real file size, decoded PSNR.

The training model is copied to a CPU replica, whose coding tables are frozen
(``update()``); each held-out center crop then goes through
:class:`~trellic.codec.Codec` exactly as ``trellic compress`` would code it:
``val_bpp`` counts every byte of the file (header included), ``val_psnr``
compares the decoded 8-bit image with the original, and ``val_est_bpp`` is
what the coding tables predicted for the two streams. The training model
itself is never touched (it stays in train mode, on its device).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from trellic.codec import Codec
from trellic.eval import metrics
from trellic.io import image_to_tensor, list_images, read_image
from trellic.models import CodecModel
from trellic.train.loss import MS_SSIM_MIN_SIDE, ms_ssim
from trellic.zoo import LoadedModel

MODEL_ID = "validation"


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central (at most) size x size pixels of an (H, W, 3) image."""
    height, width = image.shape[:2]
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return np.ascontiguousarray(image[top : top + h, left : left + w])


def cpu_replica(model: CodecModel) -> CodecModel:
    """A CPU copy of the model in eval mode with fresh coding tables."""
    replica = CodecModel(model.config)
    replica.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    replica.eval()
    replica.update()
    return replica


class ValidationSet:
    """Center crops (uint8 RGB) of the first ``count`` images of a held-out folder."""

    def __init__(self, images: list[np.ndarray]):
        self.images = images

    @classmethod
    def from_folder(cls, folder: Path, count: int, crop: int) -> ValidationSet:
        files = list_images(folder, recursive=True, limit=count)
        return cls([center_crop(read_image(path), crop) for path in files])

    def evaluate(self, model: CodecModel, quantizer: str) -> dict:
        """Code every image with the real quantizer; per-image means of bpp, PSNR (, MS-SSIM)."""
        began = time.perf_counter()
        loaded = LoadedModel(cpu_replica(model), MODEL_ID, "0" * 64, {})
        codec = Codec.load_from(loaded, quantizer)
        bpp, est_bpp, quality, similarity = [], [], [], []
        for image in self.images:
            encoded = codec.encode(image)
            decoded = codec.decode(encoded.data)
            pixels = image.shape[0] * image.shape[1]
            bpp.append(8 * len(encoded.data) / pixels)
            est_bpp.append(encoded.estimated_bits / pixels)
            quality.append(metrics.psnr(image, decoded))
            if min(image.shape[:2]) >= MS_SSIM_MIN_SIDE:
                with torch.no_grad():
                    similarity.append(ms_ssim(image_to_tensor(image).double(),
                                              image_to_tensor(decoded).double()).item())
        result = {"val_bpp": float(np.mean(bpp)), "val_est_bpp": float(np.mean(est_bpp)),
                  "val_psnr": float(np.mean(quality)), "val_images": len(self.images)}
        if len(similarity) == len(self.images):
            result["val_ms_ssim"] = float(np.mean(similarity))
        result["val_seconds"] = time.perf_counter() - began
        return result
