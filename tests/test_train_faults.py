"""``train`` and ``retrain`` under careless options and faults: one line, never a crash.

Option values a machine cannot serve (threads, batch sizes) are refused before any work,
``--resume`` refuses what it cannot continue, options that have no effect are warned about,
and a run killed after its last checkpoint resumes without logging its steps twice.
"""

import json

import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic import argtypes
from trellic.cli import main
from trellic.train import loop, memory
from trellic.train.run_folder import CHECKPOINT, EXPORT, LOG, truncate_log
from trellic.zoo import load_model_file


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_image(64, 96, seed)).save(folder / f"{seed}.png")
    return folder


def _train(photos, out, *extra):
    return main(["train", "--data", str(photos), "--out", str(out), "--N", "8", "--M", "8",
                 "--steps", "2", "--batch-size", "1", "--crop", "64", "--log-every", "1",
                 "--checkpoint-every", "1", "--threads", "1", *extra])


def _retrain(weights, photos, out, *extra):
    return main(["retrain", "--model", str(weights), "--data", str(photos), "--out", str(out),
                 "--steps", "2", "--batch-size", "1", "--crop", "64", "--threads", "1", *extra])


def _steps(out):
    return [json.loads(line)["step"] for line in (out / LOG).read_text().splitlines()]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trellic: error: "), err
    return err[len("trellic: error: "):].rstrip("\n")


# --threads (#7): more than the CPUs is a usage error, not a segfault


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_threads_beyond_the_usable_cpus_are_a_usage_error(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--out", str(tmp_path / "run"), "--threads", "100000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threads:" in err and "100000" in err
    assert not (tmp_path / "run").exists()
    assert argtypes.threads(str(argtypes.usable_cpus())) == argtypes.usable_cpus()  # the bound


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_threads_has_help(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threads THREADS intra-op threads, at most the CPUs" in help_text


# --batch-size (#9): refused up front against the machine's memory, naming the bound


@pytest.fixture
def eight_gib(monkeypatch):
    monkeypatch.setattr(memory, "host_memory", lambda: 8 * memory.GIB)


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_any_work(tmp_path, photos, capsys,
                                                                      eight_gib):
    out = tmp_path / "run"
    assert _train(photos, out, "--batch-size", "100000", "--device", "cpu") == 1
    message = _one_error(capsys)
    assert message.startswith("one step of --batch-size 100000 x --crop 64 (N=8) needs about ")
    assert message.endswith("more than the 8.0 GiB of memory here: use --batch-size 8192 or less")
    assert not out.exists()
    assert _train(photos, out, "--crop", "64000", "--device", "cpu") == 1
    assert _one_error(capsys).endswith("use --crop 5760 or less")
    # the bound is a bound: the largest batch it names passes the check
    memory.check_step_fits(8192, 64, 8, torch.device("cpu"))


def test_retrain_bounds_its_batch_and_its_offline_cache(tmp_path, tiny_weights, photos, capsys,
                                                        eight_gib):
    assert _retrain(tiny_weights[0], photos, tmp_path / "a", "--batch-size", "100000") == 1
    assert "(N=16) needs about" in _one_error(capsys)
    assert _retrain(tiny_weights[0], photos, tmp_path / "b", "--cache-crops", "100000000") == 1
    assert _one_error(capsys).startswith("an offline cache of --cache-crops 100000000 x --crop 64")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --resume (#16, #17): nothing to resume, another model, fewer steps


def test_resume_without_a_run_is_refused(tmp_path, photos, capsys):
    out = tmp_path / "nonexist"
    assert _train(photos, out, "--resume") == 1
    assert _one_error(capsys) == (f"nothing to resume in {out}: start a run there without "
                                  "--resume")
    assert not out.exists()
    out.mkdir()
    (out / LOG).write_text('{"step": 1}\n')  # killed before its first checkpoint
    assert _train(photos, out, "--resume") == 1
    assert _one_error(capsys) == (f"nothing to resume in {out} (it holds log.jsonl but no "
                                  f"{CHECKPOINT}): start a run there without --resume and "
                                  "with --force")


def test_resume_with_another_model_size_names_the_run_s(tmp_path, photos, capsys):
    out = tmp_path / "run1"
    assert _train(photos, out) == 0
    capsys.readouterr()
    before = (out / CHECKPOINT).read_bytes()
    assert _train(photos, out, "--resume", "--steps", "3", "--N", "16") == 1
    assert _one_error(capsys) == (f"{out} was trained with N=8, M=8, not N=16, M=8: "
                                  "resume it with --N 8 --M 8")
    assert _train(photos, out, "--resume", "--steps", "1") == 1
    assert _one_error(capsys) == (f"{out} has trained 2 steps already: --steps 1 would end "
                                  "before its checkpoint (give --steps 2 or more)")
    assert _train(photos, out, "--resume", "--force") == 1
    assert "--resume" in _one_error(capsys)
    assert (out / CHECKPOINT).read_bytes() == before


def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out) == 0
    capsys.readouterr()
    (out / CHECKPOINT).write_bytes((out / CHECKPOINT).read_bytes()[:-500])
    assert _train(photos, out, "--resume", "--steps", "3") == 1
    assert str(out / CHECKPOINT) in _one_error(capsys)


# F4: a run killed after its last checkpoint logs no step twice when resumed


def test_resume_after_a_kill_logs_each_step_once(tmp_path, photos, monkeypatch):
    out = tmp_path / "run"
    save = loop.save_training_state

    def killed_at_step_4(path, model, optimizers, progress):
        if progress["step"] == 4:
            with open(out / LOG, "a") as log:
                log.write('{"step": 5, "lo')  # half a record, cut by the kill
            raise KeyboardInterrupt  # what kill -9 leaves: the log past the checkpoint
        save(path, model, optimizers, progress)

    monkeypatch.setattr(loop, "save_training_state", killed_at_step_4)
    assert _train(photos, out, "--steps", "6", "--checkpoint-every", "2") == 130
    assert _steps_lenient(out) == [1, 2, 3, 4]  # step 4 logged, its checkpoint never written
    monkeypatch.setattr(loop, "save_training_state", save)
    assert _train(photos, out, "--steps", "6", "--checkpoint-every", "2", "--resume") == 0
    assert _steps(out) == [1, 2, 3, 4, 5, 6]

    straight = tmp_path / "straight"
    assert _train(photos, straight, "--steps", "6", "--checkpoint-every", "2") == 0
    logged = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    reference = [json.loads(line) for line in (straight / LOG).read_text().splitlines()]
    assert [r["loss"] for r in logged] == pytest.approx([r["loss"] for r in reference], rel=1e-5)


def _steps_lenient(out):
    steps = []
    for line in (out / LOG).read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return steps


def test_truncate_log_keeps_the_records_up_to_the_checkpoint(tmp_path):
    (tmp_path / LOG).write_text('{"step": 1}\n{"step": 2, "val_bpp": 1}\n{"step": 3}\n[1]\n{"st')
    assert truncate_log(tmp_path, 2) == 3
    assert (tmp_path / LOG).read_text() == '{"step": 1}\n{"step": 2, "val_bpp": 1}\n'
    assert truncate_log(tmp_path, 2) == 0
    assert not list(tmp_path.glob(".*.tmp"))


# options that have no effect (#18) and the validation options without --val


def test_retrain_warns_that_lambda_is_ignored_for_the_decoder(tmp_path, tiny_weights, photos,
                                                              capsys):
    out = tmp_path / "run"
    assert _retrain(tiny_weights[0], photos, out, "--mode", "online", "--lambda", "1e308") == 0
    err = capsys.readouterr().err
    assert "trellic: warning: --lambda ignored with --part decoder" in err
    assert load_model_file(out / EXPORT)[1]["retrain"]["lmbda"] == 0.01  # the model's own


def test_train_warns_about_options_that_have_no_effect(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out, "--val-every", "5", "--steps", "1") == 0
    assert ("trellic: warning: --val-every ignored: no validation without --val"
            in capsys.readouterr().err)
    assert _train(photos, out, "--resume", "--steps", "2", "--warm-start", str(out / EXPORT)) == 0
    assert "trellic: warning: --warm-start ignored with --resume" in capsys.readouterr().err


def test_a_missing_warm_start_is_refused_before_any_work(tmp_path, photos, capsys):
    out = tmp_path / "run"
    assert _train(photos, out, "--warm-start", str(tmp_path / "nope.safetensors")) == 1
    assert _one_error(capsys) == f"warm-start file not found: {tmp_path / 'nope.safetensors'}"
    assert not out.exists()


# #28: a short retrain logs its result; offline shards are removed unless --keep-cache


def test_a_short_retrain_logs_its_last_step_and_removes_its_cache(tmp_path, tiny_weights,
                                                                  photos):
    out = tmp_path / "run"
    assert _retrain(tiny_weights[0], photos, out, "--steps", "6", "--cache-crops", "2") == 0
    assert _steps(out) == [6]
    assert not (out / "cache-round0").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([EXPORT, LOG])

    kept = tmp_path / "kept"
    assert _retrain(tiny_weights[0], photos, kept, "--steps", "3", "--cache-crops", "2",
                    "--log-every", "2", "--keep-cache") == 0
    assert _steps(kept) == [2, 3]
    assert [p.name for p in (kept / "cache-round0").iterdir()] == ["shard-00000.safetensors"]
