import copy
import json

import pytest
import torch
from PIL import Image

from tests.conftest import make_tiny_model, synthetic_image
from trellic.cli import main
from trellic.io import image_to_tensor, list_images
from trellic.quant import make_quantizer
from trellic.retrain.cache import build_cache
from trellic.retrain.loop import RetrainConfig, retrain
from trellic.train.data import CropDataset
from trellic.zoo import load_model_file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(3):
        Image.fromarray(synthetic_image(96, 128, seed)).save(folder / f"{seed}.png")
    return CropDataset(list_images(folder), crop=64)


def _model():
    return make_tiny_model(gain=3.0)


@pytest.mark.parametrize("kind", ["usq", "tcq4"])
def test_decoder_only_retraining_lowers_mse_and_keeps_bitstreams(tmp_path, dataset, kind):
    source = _model()
    config = RetrainConfig(
        quantizer=kind,
        part="decoder",
        mode="offline",
        steps=20,
        batch_size=8,
        crop=64,
        lr=1e-3,
        cache_crops=16,
        log_every=5,
    )
    retrained = retrain(source, config, dataset, tmp_path, progress=False)
    quantizer = make_quantizer(kind)
    cache = build_cache(
        source, quantizer, None, dataset, tmp_path / "cache-round0", 16, progress=False
    )
    x, y_hat = cache.x.float() / 255, cache.y_hat
    with torch.no_grad():
        before = torch.mean((source.g_s(y_hat) - x) ** 2)
        after = torch.mean((retrained.g_s(y_hat) - x) ** 2)
    assert after < 0.9 * before

    image = image_to_tensor(synthetic_image(64, 128, seed=9))
    assert source.compress(image, quantizer).streams == retrained.compress(image, quantizer).streams
    for name in ("g_a", "latent_codec"):
        pairs = zip(
            getattr(source, name).parameters(), getattr(retrained, name).parameters(), strict=True
        )
        for a, b in pairs:
            assert torch.equal(a, b)


def test_offline_cache_is_resumable(tmp_path, dataset):
    model, quantizer = _model(), make_quantizer("tcq8")
    first = build_cache(model, quantizer, None, dataset, tmp_path, 10, shard_size=4, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")}
    again = build_cache(model, quantizer, None, dataset, tmp_path, 10, shard_size=4, progress=False)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")}
    assert torch.equal(first.y_hat, again.y_hat) and len(again) == 10


def test_hyper_decoder_online_retraining_trains_rate_of_true_indices(tmp_path, dataset):
    source = _model()
    config = RetrainConfig(
        quantizer="tcq4",
        part="hyper+decoder",
        mode="online",
        steps=6,
        batch_size=2,
        crop=64,
        lr=1e-3,
        lmbda=0.01,
        log_every=1,
    )
    retrained = retrain(source, config, dataset, tmp_path, progress=False)
    assert torch.equal(source.g_a[0].weight, retrained.g_a[0].weight)
    h_s, h_s_retrained = source.latent_codec.h_s, retrained.latent_codec.h_s
    assert not torch.equal(h_s[-1].weight, h_s_retrained[-1].weight)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 6 and '"bpp"' in lines[0]


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_rate_of_true_indices_pulls_residuals_towards_zero(kind):
    quantizer = make_quantizer(kind)
    r = torch.tensor([[[[1.3, -2.2, 3.1, -1.6]]]], requires_grad=True)  # no index 0
    scales = torch.ones_like(r)
    k = quantizer.quantize(r.detach(), scales)
    p = quantizer.likelihood(k, scales, r)
    assert torch.equal(p, quantizer.likelihood(k, scales))
    (-torch.log2(p)).sum().backward()
    assert (r.grad * r.detach() > 0).all()  # a lower rate moves each residual towards 0


def test_decoder_only_variant_decodes_files_of_its_source(tmp_path, dataset):
    from trellic.codec import Codec
    from trellic.errors import TrellicError
    from trellic.zoo import LoadedModel

    source = _model()
    config = RetrainConfig(
        quantizer="tcq8", part="decoder", mode="online", steps=2, batch_size=2, crop=64, lr=1e-3
    )
    retrained = retrain(source, config, dataset, tmp_path, progress=False)
    original = LoadedModel(source, "src", "ab" * 32, {})
    info = {"retrained_from": {"model": "src", "sha256": "ab" * 32}, "retrain": config.to_dict()}
    variant = LoadedModel(retrained, "src-tcq8dec", "cd" * 32, info)
    data = Codec.load_from(original, "tcq8").encode(synthetic_image(64, 64)).data
    assert Codec.load_from(variant, "tcq8").decode(data).shape == (64, 64, 3)
    info["retrain"]["part"] = "hyper+decoder"  # its hyperprior changed: files differ
    with pytest.raises(TrellicError, match="coded with model 'src'"):
        Codec.load_from(variant, "tcq8").decode(data)


def _retrain_cli(weights, photos, out, *extra):
    return main(["retrain", "--model", str(weights), "--data", str(photos), "--out", str(out),
                 "--mode", "online", "--steps", "2", "--batch-size", "1", "--crop", "64",
                 "--threads", "1", *extra])


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(synthetic_image(64, 96)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("option, value", [
    ("--lambda", "nan"), ("--lambda", "-1"), ("--lr", "0"), ("--lr", "inf"), ("--lr", "1e6"),
    ("--lambda-t", "-0.1"), ("--steps", "0"), ("--rounds", "0"), ("--batch-size", "0"),
    ("--crop", "96"), ("--cache-crops", "0"), ("--seed", "-1"), ("--threads", "0"),
])
def test_every_retrain_option_value_is_checked_at_parse_time(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["retrain", "--out", str(tmp_path / "run"), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err


def test_retrain_refuses_an_earlier_run_without_force(tmp_path, tiny_weights, photos, capsys):
    out = tmp_path / "run"
    assert _retrain_cli(tiny_weights[0], photos, out) == 0
    written = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["retrain", "--model", "no-such-model", "--out", str(out)]) == 1  # before loading
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds an earlier run" in err and "--force" in err
    assert (out / "model.safetensors").read_bytes() == written

    (out / "log.jsonl").write_text('{"step": 99}\n')
    assert _retrain_cli(tiny_weights[0], photos, out, "--force", "--steps", "3") == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [3]  # a new log, not appended to (the final step is always logged)
    assert load_model_file(out / "model.safetensors")[1]["retrain"]["steps"] == 3


def test_retrain_never_replaces_the_model_it_starts_from(tmp_path, tiny_weights, photos, capsys):
    out = tmp_path / "run"
    out.mkdir()
    source = out / "model.safetensors"
    source.write_bytes(tiny_weights[0].read_bytes())
    assert _retrain_cli(source, photos, out, "--force") == 1
    assert "would replace its input" in capsys.readouterr().err
    assert source.read_bytes() == tiny_weights[0].read_bytes()


def test_a_diverging_retrain_stops_in_one_line_and_writes_no_model(
    tmp_path, tiny_weights, photos, capsys
):
    out = tmp_path / "run"
    assert _retrain_cli(tiny_weights[0], photos, out, "--part", "hyper+decoder",
                        "--lambda", "1e36") == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert last == ("trellic: error: retraining stopped at round 1, step 1: the loss is not "
                    "finite (inf); no model written")
    assert not (out / "model.safetensors").exists()


def test_retraining_images_are_read_by_the_reader(tmp_path, tiny_weights, photos, capsys):
    (photos / "cut.png").write_bytes((photos / "a.png").read_bytes()[:-100])
    assert _retrain_cli(tiny_weights[0], photos, tmp_path / "run") == 1
    assert capsys.readouterr().err == (f"trellic: error: cannot read image {photos / 'cut.png'}: "
                                       "image file is truncated\n")


def test_offline_cache_is_rebuilt_for_other_training_images(tmp_path, dataset):
    model, quantizer = _model(), make_quantizer("usq")
    build_cache(model, quantizer, None, dataset, tmp_path, 4, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")}
    other = copy.copy(dataset)
    other.images = [255 - image for image in dataset.images]
    rebuilt = build_cache(model, quantizer, None, other, tmp_path, 4, progress=False)
    assert stamps != {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("shard-*")}
    assert torch.equal(rebuilt.x, 255 - build_cache(
        model, quantizer, None, dataset, tmp_path / "again", 4, progress=False).x)
