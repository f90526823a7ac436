"""Every results file the project writes is read back and goes through bdrate and plot.

Real ``trellic eval`` output (the zoo's four rate points, plain and refined) and real
``trellic baseline`` output on one small image, plus the shipped docs/ results files.
(The report, which also re-runs the codecs for its crops, has its own tests.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.eval.results import read_results

DOCS = Path(__file__).resolve().parents[1] / "docs"
ZOO = [f"mbt-mean-n64-{rate}" for rate in ("l0018", "l0035", "l0067", "l013")]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """eval (plain and --refine 1) over the zoo and a JPEG baseline, on one 176x192 image."""
    pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")
    folder = tmp_path_factory.mktemp("crops")
    Image.fromarray(synthetic_image(176, 192)).save(folder / "crop.png")
    models = [argument for model in ZOO for argument in ("--model", model)]
    runs = {
        "eval": ["eval", str(folder), *models],
        "refined": ["eval", str(folder), *models, "--refine", "1", "--name", "trellic refined"],
        "jpeg": ["baseline", str(folder), "--codec", "jpeg", "--quality", "10", "30", "50", "70"],
    }
    files = {}
    for name, argv in runs.items():
        files[name] = folder / f"{name}.json"
        assert main([*argv, "-o", str(files[name])]) == 0, name
    return files


def test_eval_and_baseline_output_is_accepted_on_read(written):
    for name, path in written.items():
        curve = read_results(path)  # runs every check of trellic.eval.validate
        assert len(curve.points) == 4 and curve.dataset.files == ["crop.png"], name
    assert read_results(written["refined"]).points[0].options["load"]["refine"] == 1


def test_eval_and_baseline_output_goes_through_bdrate(written, capsys):
    assert main(["bdrate", str(written["jpeg"]), str(written["eval"])]) == 0
    assert re.search(r"BD-rate [-+]\d+\.\d\d %", capsys.readouterr().out)
    assert main(["bdrate", str(written["eval"]), str(written["refined"]), "--metric",
                 "ms-ssim"]) == 0
    assert re.search(r"BD-rate [-+]\d+\.\d\d %", capsys.readouterr().out)
    assert main(["bdrate", "--table", *map(str, written.values())]) == 0
    table = capsys.readouterr().out
    assert "| trellic refined |" in table and "| n/a" not in table


def test_eval_and_baseline_output_goes_through_plot(written, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "rd.png"
    assert main(["plot", *map(str, written.values()), "-o", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_shipped_results_files_go_through_bdrate_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    files = [str(path) for path in sorted(DOCS.glob("results/zoo-*.json"))]
    files.append(str(DOCS / "baselines" / "jpeg.json"))
    assert main(["bdrate", "--table", *files, "--reference", "mbt2018-mean"]) == 0
    assert "warning" not in capsys.readouterr().err  # all measured on the 24 Kodak images
    assert main(["plot", *files, "--reference", "all", "-o", str(tmp_path / "rd.png")]) == 0


def test_eval_uses_the_default_model_of_compress(tmp_path, capsys):
    pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")
    from trellic.zoo import load

    Image.fromarray(synthetic_image(176, 176)).save(tmp_path / "a.png")
    assert main(["eval", str(tmp_path), "-o", str(tmp_path / "r.json")]) == 0
    (point,) = read_results(tmp_path / "r.json").points
    assert point.checkpoint_sha256 == load("default").sha256
    assert point.options["load"]["model"] == "default"
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "(default: 'default', the model compress uses)" in " ".join(
        capsys.readouterr().out.split())
