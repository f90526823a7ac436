import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.codec import Codec
from trellic.errors import TrellicError
from trellic.eval import metrics
from trellic.io import image_to_tensor, list_images, read_image
from trellic.models import CodecModel, ModelConfig
from trellic.quant import make_quantizer
from trellic.train import loop
from trellic.train.checkpoint import load_model_weights, model_from_checkpoint
from trellic.train.data import CropDataset
from trellic.train.divergence import Diverged
from trellic.train.loop import CHECKPOINT, EXPORT, LOG, TrainConfig, train
from trellic.train.loss import ms_ssim, rate_distortion
from trellic.train.precision import precision_context
from trellic.train.validate import MODEL_ID, center_crop
from trellic.zoo import LoadedModel, load_model_file


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dataset(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(synthetic_image(80, 96, seed)).save(folder / f"{seed}.png")
    return CropDataset(list_images(folder), crop=64)


def _config(steps):
    return TrainConfig(
        N=16,
        M=24,
        steps=steps,
        batch_size=4,
        crop=64,
        lr=1e-3,
        lmbda=0.01,
        log_every=1,
        checkpoint_every=5,
        decay_at=(),
        device="cpu",
    )


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
    assert info["training"]["steps"] == 40 and model.latent_codec.tables
    from_checkpoint, progress = model_from_checkpoint(tmp_path / "run" / CHECKPOINT, tcq_delta=0.5)
    assert progress["step"] == 40 and from_checkpoint.config.tcq_delta == 0.5
    for key, value in model.state_dict().items():
        assert torch.equal(value, from_checkpoint.state_dict()[key]), key


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    dataset = _dataset(tmp_path)
    straight = train(_config(10), dataset, tmp_path / "a", progress=False)
    train(_config(5), dataset, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / CHECKPOINT).is_file()
    resumed = train(_config(10), dataset, tmp_path / "b", resume=True, progress=False)
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_validation_logs_the_real_file_size_and_leaves_training_unchanged(tmp_path):
    dataset = _dataset(tmp_path)
    val = tmp_path / "val"
    val.mkdir()
    Image.fromarray(synthetic_image(72, 100, seed=7)).save(val / "a.png")
    config = _config(4)
    config.val, config.val_every, config.val_crop = str(val), 2, 64
    validated = train(config, dataset, tmp_path / "run", progress=False)
    plain = train(_config(4), dataset, tmp_path / "plain", progress=False)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, validated.state_dict()[key]), key

    log = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    checks = [r for r in log if "val_bpp" in r]
    assert [r["step"] for r in checks] == [2, 4]
    image = center_crop(read_image(val / "a.png"), 64)
    codec = Codec.load_from(LoadedModel(validated, MODEL_ID, "0" * 64, {}), "usq")
    data = codec.encode(image).data
    assert checks[-1]["val_bpp"] == 8 * len(data) / 64**2 > checks[-1]["val_est_bpp"]
    mse = np.mean((image.astype(float) - codec.decode(data)) ** 2)
    assert abs(checks[-1]["val_psnr"] - 10 * np.log10(255**2 / mse)) < 1e-9


def test_differentiable_ms_ssim_matches_the_evaluation_metric():
    original = synthetic_image(170, 193, seed=1)
    noisy = np.clip(original + np.random.default_rng(2).normal(0, 20, original.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    x, y = image_to_tensor(original).double(), image_to_tensor(noisy).double()
    y.requires_grad_(True)
    value = ms_ssim(x, y)
    value.sum().backward()
    assert abs(value.item() - metrics.ms_ssim(original, noisy)) < 1e-6  # f32 inputs
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_ms_ssim_distortion_trains_and_logs_ms_ssim(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(synthetic_image(200, 210, seed=3)).save(folder / "a.png")
    config = _config(2)
    config.crop, config.batch_size, config.distortion, config.lmbda = 192, 1, "ms-ssim", 8.0
    train(config, CropDataset(list_images(folder), crop=192), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert all(0 < r["ms_ssim"] < 1 and np.isfinite(r["loss"]) for r in log)
    assert abs(log[0]["loss"] - (8.0 * (1 - log[0]["ms_ssim"]) + log[0]["bpp"])) < 1e-4


def test_train_command_checks_its_options(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--out", out, "--distortion", "ms-ssim", "--crop", "128"]) == 1
    assert main(["train", "--out", out, "--val", str(tmp_path / "missing")]) == 1
    assert "validation folder not found" in capsys.readouterr().err
    (tmp_path / "photos" / "val").mkdir(parents=True)
    assert (
        main(
            [
                "train",
                "--out",
                out,
                "--data",
                str(tmp_path / "photos"),
                "--val",
                str(tmp_path / "photos" / "val"),
            ]
        )
        == 1
    )
    assert "overlaps training folder" in capsys.readouterr().err


def test_bf16_precision_keeps_likelihoods_in_float32_and_removes_its_hooks():
    torch.manual_seed(0)
    model = CodecModel(ModelConfig(N=16, M=24)).train()
    x = torch.rand(2, 3, 64, 64)
    quantizer = make_quantizer("usq")
    torch.manual_seed(1)
    reference = rate_distortion(model(x, quantizer), x, 0.01).loss
    with precision_context(model, "bf16", "cpu"):
        torch.manual_seed(1)
        output = model(x, quantizer)
    assert {v.dtype for v in output.likelihoods.values()} == {torch.float32}
    assert output.x_hat.dtype == torch.float32
    assert abs(rate_distortion(output, x, 0.01).loss.item() / reference.item() - 1) < 0.02
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_warm_start_takes_another_runs_weights_and_rejects_other_architectures(tmp_path):
    dataset = _dataset(tmp_path)
    source = train(_config(2), dataset, tmp_path / "a", progress=False)
    frozen = _config(1)
    frozen.lr = 0.0  # only the quantiles (aux_lr) move
    warm = train(
        frozen, dataset, tmp_path / "b", warm_start=tmp_path / "a" / EXPORT, progress=False
    )
    for key, value in source.state_dict().items():
        assert key.endswith("quantiles") or torch.equal(value, warm.state_dict()[key]), key
    wider = CodecModel(ModelConfig(N=24, M=24))
    with pytest.raises(TrellicError, match="does not match the model"):
        load_model_weights(tmp_path / "a" / CHECKPOINT, wider)


class _PoisonedAt(CropDataset):
    """Batches of NaN pixels from step ``bad`` on: a loss that turns non-finite mid-run."""

    def __init__(self, dataset: CropDataset, bad: int):
        self.__dict__.update(dataset.__dict__)
        self.bad = bad

    def batch(self, size, seed, step, rank=0):
        x = super().batch(size, seed, step, rank)
        return x.fill_(float("nan")) if step >= self.bad else x


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    config = _config(6)
    config.checkpoint_every = 2
    with pytest.raises(Diverged, match="stopped at step 4: the loss is not finite") as info:
        train(config, _PoisonedAt(_dataset(tmp_path), bad=3), tmp_path / "run", progress=False)
    assert f"{CHECKPOINT} keeps step 2" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run" / EXPORT).exists()
    model, progress = model_from_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert progress["step"] == 2
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_weights_that_turn_non_finite_in_the_last_step_are_not_written(tmp_path, monkeypatch):
    original_step = loop.train_step

    def overflowing_step(net, model, *args):
        result = original_step(net, model, *args)
        with torch.no_grad():
            next(model.g_s.parameters()).view(-1)[0] = float("inf")  # as an overflowing update
        return result

    monkeypatch.setattr(loop, "train_step", overflowing_step)
    with pytest.raises(Diverged, match="stopped at step 1: the weights are not finite"):
        train(_config(1), _dataset(tmp_path), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / EXPORT).exists()
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_the_training_loader_reads_with_the_validated_reader(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    ramp = np.tile(np.arange(0, 65536, 512, dtype=np.uint16), (64, 1))  # 64 x 128, 16-bit
    Image.fromarray(ramp).save(folder / "g16.png")
    dataset = CropDataset(list_images(folder), crop=64)
    assert np.array_equal(dataset.images[0], read_image(folder / "g16.png"))
    assert abs(dataset.images[0].mean() - 127.5) < 1  # not clipped to white
