"""``trellic train`` from the command line: option domains, the run folder, bad data, divergence."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.train.run_folder import CHECKPOINT, EXPORT, LOG


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_image(64, 80, seed)).save(folder / f"{seed}.png")
    return folder


def _train(photos, out, *extra):
    return main(["train", "--data", str(photos), "--out", str(out), "--N", "8", "--M", "8",
                 "--steps", "2", "--batch-size", "1", "--crop", "64", "--log-every", "1",
                 "--checkpoint-every", "1", "--threads", "1", *extra])


def _log_steps(out):
    return [json.loads(line)["step"] for line in (out / LOG).read_text().splitlines()]


@pytest.mark.parametrize("option, value", [
    ("--lambda", "nan"), ("--lambda", "-1"), ("--lambda", "0"), ("--lambda", "inf"),
    ("--lr", "nan"), ("--lr", "0"), ("--lr", "-1e-4"), ("--lr", "inf"), ("--lr", "1e6"),
    ("--steps", "0"), ("--batch-size", "0"), ("--crop", "100"), ("--crop", "0"),
    ("--crop", "-64"), ("--N", "0"), ("--M", "2000"), ("--threads", "0"), ("--seed", "-1"),
    ("--log-every", "0"), ("--checkpoint-every", "0"), ("--val-every", "0"),
    ("--val-images", "0"), ("--val-crop", "0"), ("--downscale-above", "-1"), ("--steps", "1.5"),
])
def test_every_train_option_value_is_checked_at_parse_time(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_earlier_run_is_refused_before_any_work_without_force(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out) == 0
    before = {name: (out / name).read_bytes() for name in (LOG, CHECKPOINT, EXPORT)}
    capsys.readouterr()
    missing = tmp_path / "no-such-data"  # refused before the data is even looked at
    assert main(["train", "--data", str(missing), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds an earlier run" in err and "--force" in err
    assert {name: (out / name).read_bytes() for name in before} == before


def test_force_starts_a_new_run_and_resume_continues_the_old_one(tmp_path, photos):
    out = tmp_path / "run"
    assert _train(photos, out) == 0
    assert _train(photos, out, "--resume", "--steps", "3") == 0  # continues: steps 3 appended
    assert _log_steps(out) == [1, 2, 3]
    (out / "notes.txt").write_text("mine")
    assert _train(photos, out, "--force", "--seed", "5") == 0  # a new run: a new log
    assert _log_steps(out) == [1, 2]
    assert (out / "notes.txt").read_text() == "mine"


def test_force_removes_the_earlier_model_before_the_new_run_can_fail(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out) == 0
    assert _train(photos, out, "--force", "--lambda", "1e36") == 1  # an infinite loss
    assert capsys.readouterr().err.endswith("no model written; no checkpoint was written\n")
    assert not (out / EXPORT).exists() and not (out / CHECKPOINT).exists()  # none of the old run


def test_force_cannot_remove_the_file_the_run_starts_from(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out) == 0
    capsys.readouterr()
    assert _train(photos, out, "--force", "--warm-start", str(out / EXPORT)) == 1
    assert "would replace its input" in capsys.readouterr().err
    assert (out / EXPORT).is_file()


def test_a_diverging_run_stops_in_one_line_and_writes_no_model(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out, "--lambda", "1e36") == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert last == ("trellic: error: training stopped at step 1: the loss is not finite (inf); "
                    "no model written; no checkpoint was written")
    assert not (out / EXPORT).exists() and not (out / CHECKPOINT).exists()


def test_training_images_are_read_like_every_other_input(tmp_path, capsys):
    """16-bit and float images by the reader's rules; a broken file named in one line."""
    folder = tmp_path / "odd"
    folder.mkdir()
    ramp = np.tile(np.linspace(0, 1, 80), (64, 1))
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(folder / "a16.png")
    Image.fromarray(ramp.astype(np.float32)).save(folder / "b.tif")
    assert _train(folder, tmp_path / "run", "--steps", "1") == 0
    assert "training on 2 images" in capsys.readouterr().out

    Image.fromarray(synthetic_image(64, 80)).save(folder / "c.png")
    (folder / "c.png").write_bytes((folder / "c.png").read_bytes()[:-200])
    assert _train(folder, tmp_path / "again", "--steps", "1") == 1
    err = capsys.readouterr().err
    assert err == f"trellic: error: cannot read image {folder / 'c.png'}: image file is truncated\n"
