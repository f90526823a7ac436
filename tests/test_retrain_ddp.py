"""Data-parallel retraining: 2 CPU ranks of ``trellic retrain`` under torchrun (gloo on 127.0.0.1).

The test launches this file as the torchrun worker. Each rank runs the CLI twice (an
offline decoder run that keeps its 2-shard cache, then an online hyper+decoder run),
records the shards it wrote (``rank<r>.writes``) and the sha256 of the weights it ended
with (``rank<r>.<run>.sha256``).
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
from trellic.zoo import load_model_file


def _weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.named_parameters()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _worker(root: Path, weights: str, port: str) -> None:
    import trellic.retrain.cache as cache
    import trellic.retrain.loop as loop
    from trellic.cli import main

    rank = int(os.environ["RANK"])
    save, retrain = cache.save_safetensors_atomic, loop.retrain
    ended: list[str] = []

    def counted_save(path, *args, **kwargs):
        with open(root / f"rank{rank}.writes", "a") as writes:
            writes.write(f"{path.parent.name}/{path.name}\n")
        return save(path, *args, **kwargs)

    def hashed_retrain(*args, **kwargs):
        model = retrain(*args, **kwargs)
        ended.append(_weights_hash(model))
        return model

    cache.save_safetensors_atomic, loop.retrain = counted_save, hashed_retrain
    common = ["--model", weights, "--data", str(root / "photos"), "--crop", "64",
              "--batch-size", "2", "--lr", "1e-3", "--log-every", "1", "--threads", "1",
              "--device", "cpu"]
    runs = {
        "decoder": ["--part", "decoder", "--mode", "offline", "--steps", "3",
                    "--cache-crops", "72", "--keep-cache"],  # 2 shards of 64 and 8 crops
        "hyper": ["--part", "hyper+decoder", "--mode", "online", "--steps", "2"],
    }
    for name, options in runs.items():
        if name == "hyper":  # a second group in the same processes: its own store and port
            os.environ.update(MASTER_PORT=port, TORCHELASTIC_USE_AGENT_STORE="False")
        code = main(["retrain", *common, *options, "--out", str(root / name)])
        assert code == 0, f"rank {rank}: {name} exited {code}"
        (root / f"rank{rank}.{name}.sha256").write_text(ended[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_ranks_retrain_in_lockstep_with_one_writer(tmp_path, tiny_weights):
    (tmp_path / "photos").mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_image(80, 96, seed)).save(tmp_path / "photos" / f"{seed}.png")
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
               "--master-addr=127.0.0.1", f"--master-port={_free_port()}", __file__,
               str(tmp_path), str(tiny_weights[0]), str(_free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    source = _weights_hash(tiny_weights[1].model)
    for name, steps in (("decoder", [1, 2, 3]), ("hyper", [1, 2])):
        hashes = {(tmp_path / f"rank{r}.{name}.sha256").read_text() for r in range(2)}
        assert len(hashes) == 1 and source not in hashes  # trained, identical on both ranks
        out = tmp_path / name
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == steps  # one writer: rank 0
        model, info = load_model_file(out / "model.safetensors")
        assert _weights_hash(model) in hashes and info["world_size"] == 2
        assert sorted(p.name for p in out.iterdir()) == (
            ["cache-round0", "log.jsonl", "model.safetensors"] if name == "decoder"
            else ["log.jsonl", "model.safetensors"])
    assert done.stdout.count("retrained model written to") == 2  # one line per run, rank 0's

    # the cache: each shard written once, shard r by rank r, both read by both ranks
    writes = [(tmp_path / f"rank{r}.writes").read_text().split() for r in range(2)]
    assert writes == [["cache-round0/shard-00000.safetensors"],
                      ["cache-round0/shard-00001.safetensors"]]
    shards = sorted(p.name for p in (tmp_path / "decoder" / "cache-round0").iterdir())
    assert shards == ["shard-00000.safetensors", "shard-00001.safetensors"]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
