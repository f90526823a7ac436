"""Where weights and data are found: in a checkout, installed, and through the two settings."""

import pytest

from trellic import paths
from trellic.errors import TrellicError


@pytest.fixture()
def installed(tmp_path, monkeypatch):
    """trellic as if installed: the folder above the package is no checkout."""
    monkeypatch.setattr(paths, "_CHECKOUT", tmp_path / "site-packages")
    monkeypatch.delenv(paths.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(paths.DATA_ENV, raising=False)


def test_a_checkout_uses_its_weights_and_the_shared_data(monkeypatch):
    monkeypatch.delenv(paths.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    root = paths.checkout()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert paths.weights_dir() == root / "weights"
    assert paths.data_root() == root.parent / "shared" / "data"


def test_installed_weights_are_the_packaged_folder_and_data_must_be_set(installed):
    assert paths.checkout() is None
    assert paths.weights_dir() == paths.PACKAGED_WEIGHTS
    with pytest.raises(TrellicError, match="set TRELLIC_DATA to the data folder"):
        paths.kodak_dir()


def test_the_settings_override_the_defaults(installed, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.WEIGHTS_ENV, str(tmp_path / "zoo"))
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    assert paths.weights_dir() == tmp_path / "zoo"
    assert paths.kodak_dir() == tmp_path / "data" / "kodak"


def test_a_weights_setting_without_a_manifest_names_the_setting(tmp_path, monkeypatch, capsys):
    from trellic.cli import main

    monkeypatch.setenv(paths.WEIGHTS_ENV, str(tmp_path))
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert f"model manifest not found: {tmp_path}/manifest.json (TRELLIC_WEIGHTS" in err
