"""Random crops from folders of photos, decoded once and kept in memory.

Batches are drawn from a generator seeded by (seed, step), so a resumed run
sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trellic.errors import TrellicError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp"}


def list_images(folders: list[Path]) -> list[Path]:
    """Every image file below the given folders, sorted (deterministic order)."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise TrellicError(f"training folder not found: {folder}")
        files += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise TrellicError(f"no images found in {', '.join(map(str, folders))}")
    return sorted(files)


class CropDataset:
    """In-memory RGB photos with random crops and flips.

    Args:
        files: image paths.
        crop: square crop size (images smaller than it are skipped).
        downscale_above: images whose long side exceeds this are halved first
            (large JPEGs: removes compression artefacts and adds detail per crop).
    """

    def __init__(self, files: list[Path], crop: int, downscale_above: int | None = 800):
        self.crop = crop
        self.images: list[np.ndarray] = []
        for path in files:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if downscale_above and max(image.size) > downscale_above:
                    image = image.resize((image.width // 2, image.height // 2), Image.BICUBIC)
                if min(image.size) >= crop:
                    self.images.append(np.asarray(image))
        if not self.images:
            raise TrellicError(f"no training image is at least {crop}x{crop}")

    def __len__(self) -> int:
        return len(self.images)

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
