"""``trellic tune``: operating points measured on a user's photos, stored in a new weights
file with the same identity, and used by compress; the sweep picks the lowest RD cost."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_tiny_model, synthetic_image
from trellic import tune
from trellic.cli import main
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.zoo import load, save_model, sha256_of

SMALL = tune.Grids(
    lambda_t={"usq": (0.0,), "tcq4": (0.03, 0.108)},
    linear_weight={"usq": (0.125, 0.375), "tcq4": (0.5, 1.0)},
    linear_lambda_t={"usq": None, "tcq4": (0.03, 0.108)},
    shared={"tcq8": "tcq4"},
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny model's weights file and a folder of 2 photos (64x96)."""
    folder = tmp_path_factory.mktemp("tune")
    save_model(make_tiny_model(), folder / "model.safetensors", {"training": {"lmbda": 0.01}})
    (folder / "photos").mkdir()
    for seed in (1, 2):
        Image.fromarray(synthetic_image(64, 96, seed)).save(folder / "photos" / f"p{seed}.png")
    return folder / "model.safetensors", folder / "photos"


def test_the_sweep_chooses_the_grid_point_with_the_lowest_measured_rd_cost(weights):
    images = [synthetic_image(64, 96, seed) for seed in (1, 2)]
    seen = []
    result = tune.sweep(load(str(weights[0])), images, 0.01, SMALL,
                        log=lambda text, point: seen.append(text))
    assert seen == list(result.configs) and len(seen) == SMALL.configs() == 9
    cost = {text: point["rd_cost"] for text, point in result.configs.items()}
    points = result.operating_points
    for name in ("usq", "tcq4"):
        plain = min(SMALL.lambda_t[name], key=lambda t: cost[tune.config_text(name, t)])
        assert points[name] == {"lambda_t": plain}
        joint = [(t, w) for t in SMALL.linear_lambda_t[name] or [plain]
                 for w in SMALL.linear_weight[name]]
        t, w = min(joint, key=lambda tw: cost[tune.config_text(name, *tw)])
        assert points[f"{name}+linear"] == {"lambda_t": t, "linear_weight": w}
        assert result.chosen[f"{name}+linear"] == tune.config_text(name, t, w)
    assert points["tcq8"] == points["tcq4"] and points["tcq8+linear"] == points["tcq4+linear"]
    assert all(point["bpp"] > 0 and point["mse"] > 0 for point in result.configs.values())


def test_tune_writes_a_copy_with_the_points_that_compress_then_uses(weights, tmp_path, capsys):
    source, photos = weights
    before = sha256_of(source)
    tuned = source.with_name("model-tuned.safetensors")  # the default output
    assert main(["tune", str(source), "--data", str(photos), "--images", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    points = report["operating_points"]
    assert set(points) == {"usq", "usq+linear", "rdoq", "rdoq+linear", "tcq4", "tcq4+linear",
                           "tcq8", "tcq8+linear"}
    assert report["out"] == str(tuned) and len(report["configs"]) == tune.GRIDS.configs()
    assert sha256_of(source) == before  # MODEL is never touched
    original, loaded = load(str(source)), load(str(tuned))
    assert loaded.operating_points == points and original.operating_points == {}
    assert loaded.sha256 == original.sha256 and before in loaded.aliases

    image = synthetic_image(48, 80, seed=7)
    png, trl = tmp_path / "in.png", tmp_path / "in.trl"
    Image.fromarray(image).save(png)
    for quantizer in ("rdoq", "tcq4"):
        assert main(["compress", str(png), str(trl), "--model", str(tuned), "--force",
                     "--quantizer", quantizer]) == 0
        header = bitstream.unpack(trl.read_bytes()).header
        assert header.lambda_t == pytest.approx(points[quantizer]["lambda_t"], rel=1e-6)
        # a file coded with the source decodes with the tuned file, and the other way round
        data = Codec.load_from(original, quantizer).encode(image).data
        decoded = Codec.load_from(loaded, quantizer).decode(data)
        assert np.array_equal(decoded, Codec.load_from(original, quantizer).decode(data))
        assert Codec.load_from(original, quantizer).decode(trl.read_bytes()).shape == image.shape

    # the table, to -o; an existing output needs --force
    out = tmp_path / "again.safetensors"
    assert main(["tune", str(source), "--data", str(photos), "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "tcq4+linear" in table and str(out) in table
    assert load(str(out)).operating_points == points  # the same photos, the same points
    assert main(["tune", str(source), "--data", str(photos), "-o", str(out)]) == 1
    assert "--force" in capsys.readouterr().err


def _refusal(args, capsys) -> str:
    assert main(["tune", *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_kodak_missing_data_and_bad_outputs_are_refused_in_one_line(
        weights, tmp_path, monkeypatch, capsys):
    source, photos = weights
    kodak = tmp_path / "Kodak"
    kodak.mkdir()
    Image.fromarray(synthetic_image(64, 96)).save(kodak / "kodim01.png")
    assert "reporting set" in _refusal([str(source), "--data", str(kodak)], capsys)
    assert "reporting set" in _refusal([str(source), "--data", str(tmp_path)], capsys)  # inside
    data = tmp_path / "data"
    (data / "kodak").mkdir(parents=True)
    monkeypatch.setenv("TRELLIC_DATA", str(data))
    (data / "kodak" / "x").mkdir()  # under TRELLIC_DATA's kodak/, whatever its name
    assert "reporting set" in _refusal([str(source), "--data", str(data / "kodak" / "x")], capsys)
    assert "image folder not found" in _refusal(
        [str(source), "--data", str(tmp_path / "nowhere")], capsys)
    (tmp_path / "empty").mkdir()
    assert "no images" in _refusal([str(source), "--data", str(tmp_path / "empty")], capsys)
    assert "-o" in _refusal(["default", "--data", str(photos)], capsys)  # a zoo name
    before = sha256_of(source)
    assert "--force" in _refusal([str(source), "--data", str(photos), "-o", str(source)], capsys)
    assert sha256_of(source) == before
    bare = tmp_path / "bare.safetensors"
    save_model(make_tiny_model(), bare, {})
    assert "--lambda" in _refusal([str(bare), "--data", str(photos)], capsys)
    assert not bare.with_name("bare-tuned.safetensors").exists()
