"""The built wheel on its own, and the make targets a newcomer runs first.

The wheel is built from a copy of the sources (pip builds in place) and
installed into a fresh virtual environment whose only other path is the
site-packages of the running interpreter (torch and the other dependencies),
without the editable trellic of the checkout: the installed package must code
with its own default model, from any folder, exactly as the checkout does.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def _run(argv, cwd=None, env=None):
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv holding the built wheel: (its bin/, its site-packages, an env without the
    checkout's settings)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "trellic", source / "trellic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (source / "weights").symlink_to(ROOT / "weights")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", work / "dist", source])
    wheel = next((work / "dist").glob("trellic-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
          "--no-index", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .strip())
    dependencies = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site / "dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TRELLIC_WEIGHTS", "TRELLIC_DATA")}
    return venv / "bin", site, env


def test_the_installed_wheel_codes_with_its_default_model_from_any_folder(installed, tmp_path):
    bin_dir, site, env = installed
    image = synthetic_image(48, 80, seed=5)
    Image.fromarray(image).save(tmp_path / "in.png")
    trellic = bin_dir / "trellic"
    _run([trellic, "compress", "in.png", "a.trl", "--quantizer", "tcq4"], tmp_path, env)
    _run([trellic, "decompress", "a.trl", "a.png"], tmp_path, env)

    checkout = Codec.load("default", "tcq4")
    data = (tmp_path / "a.trl").read_bytes()
    assert data == checkout.encode(image).data
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), checkout.decode(data))

    where = "import trellic.paths as p; print(p.checkout(), p.weights_dir())"
    assert _run([bin_dir / "python", "-c", where], tmp_path, env).split() == [
        "None", str(site / "trellic" / "weights")
    ]


def test_make_demo_codes_with_rounding_rdoq_and_the_trellis():
    dry_run = _run(["make", "-n", "demo", "IMAGE=photo.png"], ROOT)
    assert "for q in usq rdoq tcq4" in dry_run and "--quantizer $q" in dry_run
    assert "decompress out/demo-$q.trl" in dry_run and "--reference photo.png" in dry_run
