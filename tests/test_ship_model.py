"""scripts/ship_model.py end to end: a tiny run shipped into a scratch zoo, then continued."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import kodak_images
from tests.test_train import _config, _dataset, one_thread  # noqa: F401 (autouse fixture)
from trellic.quant.registry import quantizer_names
from trellic.train.loop import EXPORT, train
from trellic.zoo import MANIFEST, load_named, sha256_of

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py"


def _ship(run, name, zoo, *options):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(run), name, "--weights-dir", str(zoo), "--images", "1",
         *options],
        capture_output=True, text=True, timeout=300,
    )


def _entry(zoo, name):
    return json.loads((zoo / MANIFEST).read_text())["models"][name]


def test_ship_then_continue_records_stages_and_measures_the_written_file(tmp_path):
    kodak_images(1)  # skips without the data
    dataset, zoo = _dataset(tmp_path), tmp_path / "zoo"
    zoo.mkdir()
    trained = train(_config(6), dataset, tmp_path / "first", progress=False)
    assert _ship(tmp_path / "first", "tiny", zoo).returncode == 0
    first = _entry(zoo, "tiny")
    assert first["steps"] == 6 and [s["from"] for s in first["stages"]] == ["scratch"]
    assert first["sha256"] == sha256_of(zoo / "tiny.safetensors")
    assert {kind: first["kodak"][kind]["images"] for kind in quantizer_names()} == {
        "usq": 1, "tcq4": 1, "tcq8": 1, "rdoq": 1}
    shipped = load_named("tiny", zoo).model.state_dict()
    for key, value in trained.named_parameters():
        assert torch.equal(value.detach().half().float(), shipped[key]), key

    train(_config(4), dataset, tmp_path / "more", warm_start=zoo / "tiny.safetensors",
          progress=False)
    assert _ship(tmp_path / "more", "tiny", zoo, "--warm-start", "tiny").returncode == 0
    continued = _entry(zoo, "tiny")
    assert continued["steps"] == 10 and len(continued["stages"]) == 2
    assert continued["stages"][1]["from"].startswith(f"tiny as shipped before (sha256 "
                                                     f"{first['sha256'][:12]}")
    assert continued["wall_seconds"] == sum(s["wall_seconds"] for s in continued["stages"])
    assert continued["sha256"] != first["sha256"]

    assert _ship(tmp_path / "more", "tiny-b", zoo, "--warm-start", "tiny").returncode == 0
    other = _entry(zoo, "tiny-b")
    assert other["steps"] == 4 and other["warm_start"].startswith("tiny (sha256 ")
    assert other["warm_start_model"] == "tiny"
    assert _ship(tmp_path / "more", "tiny-b", zoo, "--warm-start", "tiny-b").returncode == 0
    again = _entry(zoo, "tiny-b")
    assert again["warm_start_model"] == "tiny" and again["steps"] == 8


def test_unknown_warm_start_is_a_one_line_error(tmp_path):
    train(_config(1), _dataset(tmp_path), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / EXPORT).is_file()
    for warm_start in ("nope", "tiny"):  # another model, or the model itself, not shipped yet
        result = _ship(tmp_path / "run", "tiny", tmp_path, "--warm-start", warm_start)
        assert result.returncode != 0
        assert result.stderr.strip() == (
            f"ship_model: --warm-start: no model '{warm_start}' in {tmp_path / MANIFEST}")
