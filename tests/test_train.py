import json

import numpy as np
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic.train.data import CropDataset, list_images
from trellic.train.loop import CHECKPOINT, EXPORT, LOG, TrainConfig, train
from trellic.zoo import load_model_file


def _dataset(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(synthetic_image(80, 96, seed)).save(folder / f"{seed}.png")
    return CropDataset(list_images([folder]), crop=64)


def _config(steps):
    return TrainConfig(N=16, M=24, steps=steps, batch_size=4, crop=64, lr=1e-3, lmbda=0.01,
                       log_every=1, checkpoint_every=5, decay_at=())


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    dataset = _dataset(tmp_path)
    assert torch.equal(dataset.batch(4, 0, 7), dataset.batch(4, 0, 7))
    assert not torch.equal(dataset.batch(4, 0, 7), dataset.batch(4, 0, 8))


def test_tiny_model_loss_goes_down_and_exports_weights(tmp_path):
    train(_config(40), _dataset(tmp_path), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-5:]])
    assert last < 0.7 * first
    model, info = load_model_file(tmp_path / "run" / EXPORT)
    assert info["training"]["steps"] == 40 and model.tables


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    dataset = _dataset(tmp_path)
    straight = train(_config(10), dataset, tmp_path / "a", progress=False)
    train(_config(5), dataset, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / CHECKPOINT).is_file()
    resumed = train(_config(10), dataset, tmp_path / "b", resume=True, progress=False)
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
