"""Portable bitstreams: files written under one set of CPU kernels decode under every other.

Each kernel setting runs in its own process (oneDNN reads its ISA cap once): the
files are written here (native kernels, one thread) and decoded by the shipped
default model under oneDNN ISA caps, with oneDNN off, and with 2 threads. The
indices must be the same (the file's symbols CRC checks them), the pixels within
2 levels (g_s is float).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import kodak_images
from trellic.codec import Codec
from trellic.io import read_image
from trellic.quant.registry import quantizer_names

_DECODE = """
import sys, numpy as np, torch
setting, folder = sys.argv[1], sys.argv[2]
torch.backends.mkldnn.enabled = setting != "no-onednn"
torch.set_num_threads(2 if setting == "two-threads" else 1)
from trellic.codec import codec_for_file
for name in sys.argv[3:]:
    data = open(f"{folder}/{name}.trl", "rb").read()
    np.save(f"{folder}/{name}.{setting}.npy", codec_for_file(data).decode(data))
"""

SETTINGS = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "no-onednn": {},
    "two-threads": {},
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two Kodak images (kodim01 and 02 failed to decode across kernels with the float h_s of
    format 1), every quantizer, default model; with their native decode."""
    folder = tmp_path_factory.mktemp("portable")
    names = []
    for seed, path in enumerate(kodak_images(2)):
        image = read_image(path)
        for kind in quantizer_names():
            codec = Codec.load("default", kind)
            data = codec.encode(image).data
            name = f"{kind}-{seed}"
            (folder / f"{name}.trl").write_bytes(data)
            np.save(folder / f"{name}.native.npy", codec.decode(data))
            names.append(name)
    return folder, names


@pytest.mark.parametrize("setting", SETTINGS)
def test_files_decode_under_other_kernels_within_two_levels(written, setting):
    folder, names = written
    env = {**os.environ, **SETTINGS[setting], "PYTHONPATH": os.getcwd()}
    subprocess.run([sys.executable, "-c", _DECODE, setting, str(folder), *names], env=env,
                   check=True, capture_output=True, text=True)
    for name in names:
        native = np.load(folder / f"{name}.native.npy").astype(np.int16)
        other = np.load(folder / f"{name}.{setting}.npy").astype(np.int16)
        assert np.abs(native - other).max() <= 2, name
