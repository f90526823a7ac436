"""The runner on a fake codec: bpp from real byte counts, metrics, workers, errors."""

from __future__ import annotations

import dataclasses
import functools
import io

import numpy as np
import pytest
from PIL import Image

from trellic.errors import TrellicError
from trellic.eval.metrics import ms_ssim, psnr
from trellic.eval.runner import Setting, rate_point, run
from trellic.io import list_images

HEADER = b"FAKE" + bytes(60)


@dataclasses.dataclass
class Encoded:
    data: bytes
    estimated_bits: float


class FakeCodec:
    """Lossy 'codec': coarser levels, stored as PNG behind a 64-byte header."""

    def __init__(self, step: int):
        self.step = step

    def encode(self, image: np.ndarray) -> Encoded:
        buffer = io.BytesIO()
        Image.fromarray((image // self.step * self.step).astype(np.uint8)).save(buffer, "PNG")
        data = HEADER + buffer.getvalue()
        return Encoded(data, estimated_bits=8.0 * len(data) - 100)

    def decode(self, data: bytes) -> np.ndarray:
        assert data.startswith(HEADER)
        with Image.open(io.BytesIO(data[len(HEADER):])) as image:
            return np.asarray(image)


class CroppingCodec(FakeCodec):
    def decode(self, data: bytes) -> np.ndarray:
        return super().decode(data)[:-1]


def _synthetic(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx + yy, 2 * yy, 128 + 60 * np.sin(xx / 7)], axis=-1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    for seed, name in enumerate(["b.png", "a.png"]):
        Image.fromarray(_synthetic(176, 200 + 8 * seed, seed)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def _settings(codec=FakeCodec):
    return [Setting(f"step{step}", functools.partial(codec, step), {"quality": step})
            for step in (16, 4)]


def test_runner_computes_bpp_from_real_byte_sizes(folder):
    files = list_images(folder)
    assert [path.name for path in files] == ["a.png", "b.png"]
    points = run(_settings(), files, progress=False)
    assert [p.label for p in points] == ["step16", "step4"]  # in the order of the settings
    for point in points:
        for path, entry in zip(files, point.images, strict=True):
            image = np.asarray(Image.open(path))
            encoded = FakeCodec(point.quality).encode(image)
            assert entry.name == path.name
            assert entry.bytes == len(encoded.data)
            assert entry.bpp == pytest.approx(8 * len(encoded.data) / (176 * image.shape[1]))
            assert entry.estimated_bpp == pytest.approx(encoded.estimated_bits / image[..., 0].size)
            reconstruction = FakeCodec(point.quality).decode(encoded.data)
            assert entry.psnr_rgb == pytest.approx(psnr(image, reconstruction))
            assert entry.ms_ssim_rgb == pytest.approx(ms_ssim(image, reconstruction))
            assert entry.encode_seconds > 0 and entry.decode_seconds > 0
        assert point.bpp == pytest.approx(np.mean([e.bpp for e in point.images]))
        assert point.psnr_rgb == pytest.approx(np.mean([e.psnr_rgb for e in point.images]))


def test_workers_shard_images_and_give_the_same_numbers(folder):
    files = list_images(folder)
    alone = run(_settings(), files, workers=1, progress=False)
    sharded = run(_settings(), files, workers=2, progress=False)
    for a, b in zip(alone, sharded, strict=True):
        assert [(e.name, e.bytes, e.psnr_rgb, e.ms_ssim_rgb) for e in a.images] == [
            (e.name, e.bytes, e.psnr_rgb, e.ms_ssim_rgb) for e in b.images]


def test_a_decoder_that_changes_the_size_is_an_error(folder):
    with pytest.raises(TrellicError, match="differs from the original"):
        run(_settings(CroppingCodec), list_images(folder), progress=False)


def test_missing_or_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(TrellicError, match="not found"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(TrellicError, match="no images"):
        list_images(tmp_path)


def test_rate_point_means_real_bytes_and_rgb_distortion():
    images = [_synthetic(64, 96, 0), _synthetic(80, 64, 1)]
    codec = FakeCodec(step=16)
    point = rate_point(codec, images)
    bits = [8 * len(codec.encode(image).data) for image in images]
    errors = [
        np.mean(((image.astype(np.float64) - codec.decode(codec.encode(image).data)) / 255) ** 2)
        for image in images
    ]
    assert point.images == 2
    assert point.bpp == pytest.approx((bits[0] / (64 * 96) + bits[1] / (80 * 64)) / 2)
    assert point.mse == pytest.approx(np.mean(errors))
    assert point.psnr_rgb == pytest.approx(
        np.mean([psnr(image, codec.decode(codec.encode(image).data)) for image in images]))
    assert point.rd_cost(0.01) == pytest.approx(0.01 * 255**2 * point.mse + point.bpp)
    assert point.seconds_per_image > 0
    with pytest.raises(TrellicError, match="at least one image"):
        rate_point(codec, [])


def test_finished_points_are_handed_over_as_they_finish(folder):
    seen = []
    points = run(_settings(), list_images(folder), progress=False,
                 on_point=lambda finished: seen.append([p.label for p in finished]))
    assert seen == [["step16"], ["step16", "step4"]]
    assert [p.label for p in points] == ["step16", "step4"]
