"""Retraining study: Kodak bpp / PSNR of a model before and after each retraining variant.

    python experiments/retrain_study.py --model NAME [--steps 1500] [--crop 128] [--lr 3e-5]
        [--hyper-lr 1e-5] [--cache-crops 4096]
        [--variants a,b,c,d,e] [--runs /work/runs/study] [--json docs/retraining.json]

Variants (the issue's list): (a) USQ decoder-only offline, (b) USQ hyper+decoder
online, (c) TCQ-4 decoder-only offline, (d) TCQ-4 hyper+decoder online, (e) TCQ-4
hyper+decoder offline in 3 rounds (re-quantizing between rounds). Training data:
$TRELLIC_DATA/train; Kodak only measures. Every number comes from real files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tcq_operating_point import measure  # same folder: one RD measurement for both studies

from trellic.io import read_image
from trellic.paths import data_root, kodak_dir
from trellic.retrain.loop import RetrainConfig, retrain
from trellic.train.data import CropDataset, list_images
from trellic.zoo import LoadedModel, load, save_model

VARIANTS = {
    "a": ("usq", "decoder", "offline", 1),
    "b": ("usq", "hyper+decoder", "online", 1),
    "c": ("tcq4", "decoder", "offline", 1),
    "d": ("tcq4", "hyper+decoder", "online", 1),
    "e": ("tcq4", "hyper+decoder", "offline", 3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=1500, help="per variant, split over rounds")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-5, help="decoder-only variants")
    parser.add_argument("--hyper-lr", type=float, default=1e-5, help="hyper+decoder variants")
    parser.add_argument("--cache-crops", type=int, default=4096)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--variants", default="a,b,c,d,e")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/trellic-retrain-study"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    loaded = load(args.model)
    lmbda = loaded.info["training"]["lmbda"]
    images = [read_image(f) for f in sorted(kodak_dir().glob("kodim*.png"))[: args.images]]
    dataset = CropDataset(list_images([data_root() / "train"]), args.crop)
    rows = []
    for kind in ("usq", "tcq4", "tcq8"):
        rows.append(
            {"variant": "before", "quantizer": kind, **measure(loaded, kind, images, lmbda)}
        )
        print(json.dumps(rows[-1]), flush=True)
    for name in args.variants.split(","):
        kind, part, mode, rounds = VARIANTS[name]
        lr = args.lr if part == "decoder" else args.hyper_lr
        config = RetrainConfig(
            quantizer=kind,
            part=part,
            mode=mode,
            rounds=rounds,
            steps=args.steps // rounds,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=lr,
            lmbda=lmbda,
            cache_crops=args.cache_crops,
        )
        start = time.time()
        model = retrain(loaded.model, config, dataset, args.runs / name, identity=loaded.sha256)
        seconds = time.time() - start
        recipe = {
            **loaded.info,
            "retrain": config.to_dict(),
            "retrain_data": ["shared/data/train"],
            "retrained_from": {"model": loaded.model_id, "sha256": loaded.sha256},
        }
        save_model(model, args.runs / name / "model.safetensors", recipe)  # ship_model.py input
        variant = LoadedModel(model, loaded.model_id, loaded.sha256, loaded.info)
        rows.append(
            {
                "variant": name,
                "quantizer": kind,
                "part": part,
                "mode": mode,
                "rounds": rounds,
                "steps_per_round": config.steps,
                "lr": lr,
                "wall_seconds": round(seconds),
                **measure(variant, kind, images, lmbda),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "model": loaded.model_id,
        "sha256": loaded.sha256,
        "lambda": lmbda,
        "kodak_images": len(images),
        "crop": args.crop,
        "batch_size": args.batch_size,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    before = {r["quantizer"]: r for r in rows if r["variant"] == "before"}
    print("\n| variant | quantizer | part | mode | rounds | bpp | PSNR | dPSNR | RD cost |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = before[r["quantizer"]]
        print(
            f"| {r['variant']} | {r['quantizer']} | {r.get('part', '-')} | {r.get('mode', '-')} | "
            f"{r.get('rounds', '-')} | {r['bpp']:.4f} | {r['psnr']:.3f} | "
            f"{r['psnr'] - ref['psnr']:+.3f} | {r['rd_cost']:.4f} |"
        )


if __name__ == "__main__":
    main()
