"""Data-parallel training: 2 CPU ranks under torchrun (gloo on 127.0.0.1) end in lockstep.

The test launches this file as the torchrun worker. Each rank joins the group the
way ``trellic train`` does, trains 3 steps, resumes from rank 0's checkpoint to
step 6, and writes the sha256 of its weights to ``rank<r>.sha256``.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic.io import list_images
from trellic.models import CodecModel, ModelConfig
from trellic.train import distributed
from trellic.train.checkpoint import load_model_weights
from trellic.train.data import CropDataset
from trellic.train.loop import CHECKPOINT, LOG, TrainConfig, train


def _config(steps: int) -> TrainConfig:
    return TrainConfig(N=16, M=24, steps=steps, batch_size=2, crop=64, lr=1e-3, lmbda=0.01,
                       log_every=1, checkpoint_every=3, decay_at=(), device="cpu")


def _weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _worker(root: Path) -> None:
    distributed.init_from_env("cpu")
    where = distributed.topology("cpu")
    dataset = CropDataset(list_images(root / "photos"), crop=64)
    run = root / "run"
    first = train(_config(3), dataset, run, progress=False)
    (root / f"rank{where.rank}.step3.sha256").write_text(_weights_hash(first))
    model = train(_config(6), dataset, run, resume=True, progress=False)
    (root / f"rank{where.rank}.sha256").write_text(_weights_hash(model))
    distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_ranks_hold_identical_weights_after_training_and_resume(tmp_path):
    (tmp_path / "photos").mkdir()
    for seed in range(3):
        Image.fromarray(synthetic_image(80, 96, seed)).save(tmp_path / "photos" / f"{seed}.png")
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
               "--master-addr=127.0.0.1", f"--master-port={_free_port()}", __file__, str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[:4000]

    hashes = [(tmp_path / f"rank{r}.sha256").read_text() for r in range(2)]
    assert hashes[0] == hashes[1]
    assert (tmp_path / "rank0.step3.sha256").read_text() != hashes[0]  # resumed and trained on
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # one writer: rank 0
    checkpoint = CodecModel(ModelConfig(N=16, M=24))
    load_model_weights(tmp_path / "run" / CHECKPOINT, checkpoint)
    assert _weights_hash(checkpoint) == hashes[0]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
