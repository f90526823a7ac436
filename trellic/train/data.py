"""Random crops from folders of photos, decoded once and kept in memory.

Images are read with :func:`trellic.io.read_image`, the reader of every other
command (same modes, same 16-bit and float scaling, same one-line errors): a
file that cannot be read stops the run before the first step with an error
naming it. Batches are drawn from a generator seeded by (seed, step, rank), so
a resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trellic.errors import TrellicError
from trellic.io import read_image


class CropDataset:
    """In-memory RGB photos with random crops and flips.

    Args:
        files: image paths (from :func:`trellic.io.list_images`).
        crop: square crop size (images smaller than it are skipped).
        downscale_above: images whose long side exceeds this are halved first
            (large JPEGs: removes compression artefacts and adds detail per crop).

    Raises:
        TrellicError: a file cannot be read (named in the message), or no image
            is at least ``crop`` pixels on each side. Warnings of the reader (a
            dropped alpha channel) are summed up in one warning.
    """

    def __init__(self, files: list[Path], crop: int, downscale_above: int | None = 800):
        self.crop = crop
        self.images: list[np.ndarray] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for path in files:
                image = read_image(path)
                if downscale_above and max(image.shape[:2]) > downscale_above:
                    height, width = image.shape[:2]
                    image = np.asarray(Image.fromarray(image).resize(
                        (width // 2, height // 2), Image.BICUBIC))
                if min(image.shape[:2]) >= crop:
                    self.images.append(image)
        if caught:
            warnings.warn(f"{len(caught)} warning(s) reading the training images, the first: "
                          f"{caught[0].message}", stacklevel=2)
        if not self.images:
            raise TrellicError(f"no training image is at least {crop}x{crop}")

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """sha256 (hex) of the images kept, in order: what a cache of their crops depends on."""
        digest = hashlib.sha256(str(self.crop).encode())
        for image in self.images:
            digest.update(str(image.shape).encode())
            digest.update(image.tobytes())
        return digest.hexdigest()

    def batch(self, size: int, seed: int, step: int, rank: int = 0) -> Tensor:
        """A (size, 3, crop, crop) float batch in [0, 1], a pure function of (seed, step, rank)."""
        rng = np.random.default_rng([seed, step, rank])
        crops = []
        for index in rng.integers(len(self.images), size=size):
            image = self.images[index]
            top = rng.integers(image.shape[0] - self.crop + 1)
            left = rng.integers(image.shape[1] - self.crop + 1)
            crop = image[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            if rng.random() < 0.5:
                crop = crop[::-1]
            crops.append(np.ascontiguousarray(crop))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
        return batch.float().div_(255.0)
