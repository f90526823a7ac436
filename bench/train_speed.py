"""Training speed: seconds per optimizer step of ``trellic train``, on this machine.

    python bench/train_speed.py [--arch N,M,CROP ...] [--threads 1 2] [--steps 3]
                                [--batch 8] [--compressai] [--json out.json]

Default architectures: N=128/M=192 with batch 8 of 256x256 (issue 4's reference:
CompressAI's step for the same architecture and batch took 5.9 s on this 2-core
CPU) and the small N=64/M=96 with batch 8 of 128x128. Each runs the exact step of
the training loop (:func:`trellic.train.loop.train_step`: forward with the USQ
noise proxy, RD + aux loss, backward, clipping, two Adam steps) in four variants:
fp32 or bf16 transforms (``--precision bf16``), contiguous or channels-last.
``--compressai`` adds CompressAI's MeanScaleHyperprior with the step of its
example training script (needs ``compressai`` importable).

Variants are timed round-robin, one step each per round after a warm-up step,
so that load from other processes hits them alike; the median is reported. The
JSON records the load average before and after: on a shared machine the numbers
are pessimistic, rerun on a quiet one for reference values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from trellic.models import CodecModel, ModelConfig
from trellic.quant import make_quantizer
from trellic.train.loop import TrainConfig, make_optimizers, train_step
from trellic.train.precision import precision_context

COMPRESSAI_REFERENCE_S = 5.9  # N=128/M=192, batch 8 of 256x256, measured on this CPU
VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def trellic_step(n: int, m: int, x: torch.Tensor, precision: str,
                 channels_last: bool) -> Callable[[int], None]:
    """A closure running one training step of a fresh model (step index -> None)."""
    torch.manual_seed(0)
    config = TrainConfig(N=n, M=m, crop=x.shape[-1], batch_size=x.shape[0], decay_at=(),
                         precision=precision, channels_last=channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = CodecModel(ModelConfig(N=n, M=m)).to(memory_format=layout).train()
    optimizers = make_optimizers(model, config)
    quantizer = make_quantizer("usq")
    x = x.contiguous(memory_format=layout)

    def step(index: int) -> None:
        with precision_context(model, precision, "cpu"):
            train_step(model, model, x, quantizer, optimizers, config, index)

    return step


def compressai_step(n: int, m: int, x: torch.Tensor) -> Callable[[int], None]:
    """CompressAI's MeanScaleHyperprior with the step of its examples/train.py (lambda 0.0067)."""
    from compressai.models import MeanScaleHyperprior as Reference

    torch.manual_seed(0)
    model = Reference(n, m).train()
    main = [p for name, p in model.named_parameters() if not name.endswith(".quantiles")]
    aux = [p for name, p in model.named_parameters() if name.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, 1e-4), torch.optim.Adam(aux, 1e-3)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]

    def step(index: int) -> None:
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out = model(x)
        bpp = sum(torch.log(v).sum() for v in out["likelihoods"].values()) / (-math.log(2) * pixels)
        loss = 0.0067 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bpp
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()

    return step


def measure(steps: dict[str, Callable[[int], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each step, round-robin over the variants, after one warm-up step each."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step(index)
            if index:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", default=None,
                        help="N,M,CROP (repeatable; default: 128,192,256 and 64,96,128)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--compressai", action="store_true", help="also time CompressAI's step")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()

    archs = [tuple(int(v) for v in a.split(",")) for a in args.arch or ["128,192,256", "64,96,128"]]
    load_before = os.getloadavg()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n, m, crop in archs:
            x = torch.rand(args.batch, 3, crop, crop, generator=torch.Generator().manual_seed(0))
            steps = {f"{p}{' channels-last' if cl else ''}": trellic_step(n, m, x, p, cl)
                     for p, cl in VARIANTS}
            if args.compressai:
                steps["compressai fp32"] = compressai_step(n, m, x)
            for name, seconds in measure(steps, args.steps).items():
                median = statistics.median(seconds)
                rows.append({"N": n, "M": m, "crop": crop, "batch": args.batch,
                             "threads": threads, "variant": name, "s_per_step": median,
                             "steps_per_s": 1 / median, "seconds": seconds})
    result = {
        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "reference": {"compressai_s_per_step": COMPRESSAI_REFERENCE_S,
                      "for": "N=128/M=192, batch 8 of 256x256, 2-core CPU"},
        "results": rows,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    print(f"\nload average before {load_before[0]:.1f}, after {result['load_avg_after'][0]:.1f} "
          f"on {os.cpu_count()} CPUs (other processes slow every variant alike)")
    print(f"{'N/M':<8}{'batch':>10}{'threads':>8}  {'variant':<20}{'s/step':>8}{'steps/s':>9}")
    for row in rows:
        size = f"{row['batch']}x{row['crop']}^2"
        print(f"{row['N']}/{row['M']:<5}{size:>10}{row['threads']:>8}  {row['variant']:<20}"
              f"{row['s_per_step']:>8.3f}{row['steps_per_s']:>9.3f}")


if __name__ == "__main__":
    main()
