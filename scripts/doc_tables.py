"""The tables of README.md and docs/*.md that have a data file, rewritten from it.

    python scripts/doc_tables.py            # rewrite every generated table in place
    python scripts/doc_tables.py --check    # list the stale ones and exit 1 (tests/test_docs.py)

A generated table sits between two marker comments; the first names its kind
(a renderer below) and its data files (paths or globs relative to the repository):

    <!-- table: speed docs/data/codec_speed_128x192.json docs/data/codec_speed_default.json -->
    ...
    <!-- end table -->

Everything between the markers belongs to the generator: edit the data (or the
renderer), never the numbers. Prose around the markers carries no copied numbers
where a table can hold them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trellic.errors import TrellicError
from trellic.io import write_atomic
from trellic.quant.registry import QUANTIZERS as QUANTIZERS_BY_NAME
from trellic.quant.registry import quantizer_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/*.md")
BLOCK = re.compile(r"<!-- table: (?P<kind>[a-z-]+)(?P<sources>(?: \S+)+) -->\n"
                   r"(?P<body>.*?)<!-- end table -->", re.S)
QUANTIZERS = quantizer_names()


class DocTableError(Exception):
    """A marker names an unknown kind or data that does not exist."""


@dataclass(frozen=True)
class Block:
    kind: str
    sources: tuple[str, ...]
    body: str

    @property
    def label(self) -> str:
        return f"{self.kind} ({' '.join(self.sources)})"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: header, separator, rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def default_model(paths: list[Path]) -> list[str]:
    """Kodak bpp / PSNR of the default model per quantizer (weights/manifest.json)."""
    manifest = _json(paths[0])
    name = manifest["default"]
    entry = manifest["models"][name]
    measured = [q for q in QUANTIZERS if q in entry["kodak"]]
    images = {entry["kodak"][q]["images"] for q in measured}
    rows = []
    for kind in measured:
        point, step = entry["kodak"][kind], QUANTIZERS_BY_NAME[kind].step
        label = kind if step is None else f"{kind} (delta {entry[step]:g})"
        lambda_t = f"{point['lambda_t']:g}" if point.get("lambda_t") else "-"
        rows.append([label, f"{point['bpp']:.4f}", f"{point['psnr_rgb']:.2f}", lambda_t])
    caption = f"`{name}` on Kodak ({', '.join(map(str, sorted(images)))} images):"
    return [caption, ""] + _table(["quantizer", "bpp", "PSNR (dB)", "lambda_t"], rows)


def _model_label(run: dict) -> str:
    size = f"N={run['N']}/M={run['M']}"
    return f"{size} (random weights)" if run["model"].startswith("random-") else (
        f"`{run['model']}` ({size})")


def _condition(path: Path, run: dict) -> str:
    """Where and under what load a speed file was measured, as far as it records it."""
    head = f"`{path.relative_to(ROOT)}`: {run['images']} Kodak images, " \
           f"peak RSS {run['peak_rss_mb']:.0f} MB"
    if "load_average_before" not in run:
        return f"{head}; measuring condition not recorded"
    before, after = run["load_average_before"], run["load_average_after"]
    commit = run.get("git_commit") or "unknown"
    commit = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return (f"{head}; {run['created'][:10]}, {run['device']}, load average (1/5/15 min) "
            f"{'/'.join(f'{v:g}' for v in before)} before, "
            f"{'/'.join(f'{v:g}' for v in after)} after; commit {commit}")


def speed(paths: list[Path]) -> list[str]:
    """bench/codec_speed.py results: seconds per image, Viterbi, coder overhead, header."""
    runs = [_json(path) for path in paths]
    rows = []
    for run in runs:
        for kind, row in run["results"].items():
            ratio = row.get("encode_vs_usq")
            rows.append([
                _model_label(run), str(run.get("threads", 1)), kind, f"{row['bpp']:.3f}",
                f"{row['encode_s']:.3f}",
                f"{row['decode_s']:.3f}", "-" if ratio is None else f"{ratio:.2f}x",
                f"{row['viterbi_ms']:.1f}" if row["viterbi_ms"] else "-",
                f"{row['exact_scales_ms']:.1f}" if "exact_scales_ms" in row else "-",
                f"{row['coder_overhead_pct']:.3f}%", f"{row['header_pct']:.2f}%",
            ])
    header = ["model", "threads", "quantizer", "bpp", "encode s", "decode s", "encode vs usq",
              "Viterbi ms", "integer scales ms", "coder overhead", "header"]
    return _table(header, rows) + [""] + [
        f"- {_condition(path, run)}" for path, run in zip(paths, runs, strict=True)]


def _bd_matrix(path: Path) -> dict[str, dict[str, str]]:
    """The first BD-rate matrix of a ``trellic bdrate --table`` file: anchor -> test -> cell."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## BD-rate"))
    table = []
    for line in lines[start + 1:]:
        if table and not line.startswith("|"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    tests = table[0][1:]
    return {row[0]: dict(zip(tests, row[1:], strict=True)) for row in table[2:]}


def _bd_curves(path: Path) -> dict[str, str]:
    """A ``trellic bdrate --table`` file's curve list: name -> results file (``reference:X``)."""
    entries = re.findall(r"^- (.+?): `(\S+)`", path.read_text(), re.M)
    return dict(entries)


def _curve_file(source: str) -> str:
    """The repository path of a curve named in a BD table (published curves: the package's)."""
    name = source.removeprefix("reference:")
    return f"trellic/eval/reference/{name}.json" if name != source else source


KODAK_ANCHORS = ("JPEG 4:2:0", "mbt2018-mean (CompressAI, MSE)")


def kodak_bdrate(paths: list[Path]) -> list[str]:
    """Rate range, BD-rate against JPEG and mbt2018-mean and sweep time of the curves named.

    ``paths[0]`` is a ``trellic bdrate --table`` file; the rows are its curves whose
    results file is among ``paths[1:]`` (a published curve: trellic/eval/reference/X.json).
    """
    matrix = _bd_matrix(paths[0])
    chosen = {str(path.relative_to(ROOT)) for path in paths[1:]}
    rows = []
    for name, source in _bd_curves(paths[0]).items():
        if _curve_file(source) not in chosen:
            continue
        curve = _json(ROOT / _curve_file(source))
        rates = [point["bpp"] for point in curve["points"]]
        wall = curve.get("wall_seconds")
        rows.append([name, f"{min(rates):.3f} - {max(rates):.3f}",
                     *(f"{matrix[a][name]}%" if a != name else "0" for a in KODAK_ANCHORS),
                     "-" if wall is None else f"{wall:.0f} s"])
    return _table(["codec", "rate range (bpp)", "vs JPEG 4:2:0", "vs mbt2018-mean",
                   "sweep wall time"], rows)


ZOO_ANCHORS = ("JPEG 4:2:0", "WebP", "AVIF 4:4:4", "mbt2018-mean (CompressAI, MSE)",
               "trellic zoo v3 (usq)")
ZOO_MSSSIM_ANCHORS = ("WebP",)


def _zoo_version(name: str) -> int:
    """Sort key: the current zoo first, then earlier versions, newest first."""
    match = re.search(r"zoo v(\d+)", name)
    return -int(match.group(1)) if match else -1_000


def zoo_bdrate(paths: list[Path]) -> list[str]:
    """BD-rates of every zoo curve against the anchors (PSNR matrix, then MS-SSIM matrix)."""
    psnr, msssim = _bd_matrix(paths[0]), _bd_matrix(paths[1])
    columns = [(f"vs {a.removeprefix('trellic ')}", a, psnr) for a in ZOO_ANCHORS]
    columns += [(f"MS-SSIM vs {a}", a, msssim) for a in ZOO_MSSSIM_ANCHORS]
    curves = sorted((t for t in psnr[ZOO_ANCHORS[0]] if t.startswith("trellic zoo")),
                    key=_zoo_version)
    table = []
    for _, anchor, matrix in columns:
        cells = {t: f"{matrix[anchor][t]}%" for t in curves if t != anchor}
        best = min(cells, key=lambda t: float(cells[t][:-1]))
        table.append({**cells, best: f"**{cells[best]}**"})
    rows = [[t.removeprefix("trellic ")] + [cells.get(t, "-") for cells in table]
            for t in curves]
    return _table(["curve"] + [header for header, _, _ in columns], rows)


def refine_kodak(paths: list[Path]) -> list[str]:
    """The zoo's plain and refined encoders on Kodak, per model, and their BD-rates."""
    plain, refined = _json(paths[0]), _json(paths[1])
    matrix = _bd_matrix(paths[2])
    by_model = {p["model"]: p for p in plain["points"]}
    steps = {p["options"]["refine"]["steps"] for p in refined["points"]}
    rows, dpsnr, dbits = [], [], []
    for point in sorted(refined["points"], key=lambda p: p["lambda"]):
        base = by_model[point["model"]]
        dpsnr.append(point["psnr_rgb"] - base["psnr_rgb"])
        dbits.append(100 * (point["bpp"] / base["bpp"] - 1))
        rows.append([f"`{point['model']}`", f"{base['bpp']:.4f} / {base['psnr_rgb']:.2f}",
                     f"{point['bpp']:.4f} / {point['psnr_rgb']:.2f}",
                     f"{base['encode_seconds']:.2f} / {point['encode_seconds']:.1f}"])
    header = ["model", "plain encoder (bpp / dB)",
              f"refined, {'/'.join(map(str, sorted(steps)))} steps (bpp / dB)",
              "encode s/image (plain / refined)"]
    bd = matrix[plain["name"]][refined["name"]], matrix["WebP"][refined["name"]]
    return _table(header, rows) + [
        "",
        f"Refinement moves every point by {min(dpsnr):+.2f} to {max(dpsnr):+.2f} dB at "
        f"{min(dbits):+.1f}% to {max(dbits):+.1f}% bits: BD-rate (PSNR-RGB, pchip) "
        f"{bd[0]}% against the plain encoder; against WebP {bd[1]}% "
        f"(plain encoder: {matrix['WebP'][plain['name']]}%).",
    ]


def operating_point(paths: list[Path]) -> list[str]:
    """experiments/tcq_operating_point.py: each quantizer and delta, RD cost at lambda."""
    study = _json(paths[0])
    rows = sorted(study["rows"], key=lambda r: (QUANTIZERS.index(r["quantizer"]), r["delta"]))
    best = min(r["rd_cost"] for r in rows)
    return _table(
        ["quantizer", "delta", "lambda_t", "bpp", "PSNR (dB)", "RD cost"],
        [[r["quantizer"], f"{r['delta']:.2f}", f"{r['lambda_t']:.3f}", f"{r['bpp']:.4f}",
          f"{r['psnr']:.2f}", (f"**{r['rd_cost']:.4f}**" if r["rd_cost"] == best
                               else f"{r['rd_cost']:.4f}")] for r in rows],
    )


def refine_study(paths: list[Path]) -> list[str]:
    """experiments/refine_study.py: RD cost saved (% of plain bpp) and seconds per crop."""
    rows = _json(paths[0])["rows"]
    settings = list(dict.fromkeys((r["steps"], r["lr"]) for r in rows))
    cells: dict[str, dict] = {}
    for r in rows:
        cells.setdefault(r["model"], {})[(r["steps"], r["lr"])] = (
            f"{r['gain_percent']:.1f}% ({r['seconds_per_image']:.1f} s)")
    return _table(["model"] + [f"{steps} steps, lr {lr:g}" for steps, lr in settings],
                  [[f"`{model}`"] + [by.get(s, "-") for s in settings]
                   for model, by in cells.items()])


def quant_study(paths: list[Path]) -> list[str]:
    """experiments/quant_study.py runs: per config the RD cost, its gain over the first config
    (% of its bpp) and the encode seconds; one table per run."""
    lines: list[str] = []
    for path in paths:
        run = _json(path)
        caption = (f"`{path.name}`: `{run['model']}` (lambda {run['lambda']:g}), BSDS500 val "
                   f"{', '.join(Path(name).stem for name in run['images'])}:")
        rows = [[f"`{config}`", f"{point['lambda_t']:g}", f"{point.get('shrink', 1):g}",
                 f"{point['bpp']:.4f}", f"{point['rd_cost']:.4f}",
                 f"{point['gain_percent']:+.2f}%", f"{point['encode_s']:.2f}"]
                for config, point in run["configs"].items()]
        header = ["config", "lambda_t", "shrink", "bpp", "RD cost", "gain", "encode s"]
        lines += ([""] if lines else []) + [caption, ""] + _table(header, rows)
    return lines


def quant_kodak(paths: list[Path]) -> list[str]:
    """experiments/kodak_study.py: per (decoders, quantizer, encoder) row, BD-rate and BD-PSNR
    over the four rate points against plain USQ with the base models, and against plain USQ
    with the row's own decoders; encode seconds per image (mean over the rate points)."""
    from trellic.eval.bdrate import bd_psnr, bd_rate

    study = _json(paths[0])
    rows = study["rows"]

    def curve(row: dict) -> tuple[list[float], list[float]]:
        points = [row[rate] for rate in sorted(row, key=lambda r: row[r]["bpp"])]
        return [p["bpp"] for p in points], [p["psnr"] for p in points]

    def against(anchor: dict | None, row: dict) -> tuple[str, str]:
        if anchor is None or len(anchor) < 4 or len(row) < 4:
            return "n/a", "n/a"
        return (f"{bd_rate(*curve(anchor), *curve(row)):+.1f}",
                f"{bd_psnr(*curve(anchor), *curve(row)):+.2f}")

    base = rows.get("base usq plain")
    order = ("base", "retrained", "proxy", "searched", "usq", "rdoq", "tcq4", "tcq8",
             "plain", "linear", "cheap", "full")
    table = []
    for label in sorted(rows, key=lambda label: [order.index(w) for w in label.split()]):
        row = rows[label]
        decoders, quantizer, encoder = label.split()
        own = rows.get(f"{decoders} usq plain")
        rate, quality = against(base, row)
        own_rate, _ = against(own, row)
        seconds = sum(p["encode_s"] for p in row.values()) / len(row)
        table.append([decoders, quantizer, encoder, rate, quality, own_rate, f"{seconds:.2f}",
                      f"{len(row)}"])
    header = ["decoders", "quantizer", "encoder", "BD-rate % vs base USQ", "BD-PSNR dB",
              "BD-rate % vs own USQ", "encode s/image", "rate points"]
    return [f"Kodak, {study['images']} images, real files; BD over the four rate points "
            "(pchip):", ""] + _table(header, table)


def search_training(paths: list[Path]) -> list[str]:
    """Training with the true search against the other recipes: each rate point's models that
    have a search-trained variant, coded with TCQ-4 at the quantizer's own lambda_t (the
    search the retrained and the search-trained models saw), and the base model's USQ."""
    models = _json(paths[0])["models"]
    recipes = [("", "base (USQ noise)"), ("-tcq4", "+ TCQ-4 noise proxy fine-tune"),
               ("-tcq4dec", "+ decoder retrained on true TCQ-4 latents"),
               ("-tcq4hyper", "+ hyperprior and decoder retrained"),
               ("-tcq4ste", "+ fine-tuned with the true TCQ-4 search (STE)")]
    bases = sorted((name.removesuffix("-tcq4ste") for name in models if name.endswith("-tcq4ste")),
                   key=lambda name: models[name]["lambda"])
    rows = []
    for base in bases:
        lmbda = models[base]["lambda"]
        for suffix, recipe in recipes:
            entry = models[base + suffix]
            steps = entry["retrain"]["steps"] if "retrain" in entry else entry["steps"]
            for kind in ("usq", "tcq4") if not suffix else ("tcq4",):
                point = entry["kodak"][kind]
                cost = lmbda * 255**2 * 10 ** (-point["psnr_rgb"] / 10) + point["bpp"]
                rows.append([f"`{base + suffix}`", recipe, f"{steps:,}", kind,
                             f"{point['bpp']:.4f}", f"{point['psnr_rgb']:.2f}", f"{cost:.4f}"])
    return _table(["model", "recipe", "steps", "coded with", "bpp", "PSNR (dB)",
                   "RD cost at the mean PSNR"], rows)


def operating_points(paths: list[Path]) -> list[str]:
    """experiments/operating_points.py: each model's chosen lambda_t for the plain encoder and
    (lambda_t, weight) for the linearised mode, per quantizer (TCQ-8 takes TCQ-4's)."""
    study = _json(paths[0])
    kinds = ("usq", "rdoq", "tcq4")
    rows = []
    for model, result in study["models"].items():
        points = result["operating_points"]
        rows.append([f"`{model}`"] + [
            f"{points[q]['lambda_t']:g}" for q in kinds[1:]] + [
            f"{points[q + '+linear']['lambda_t']:g} / {points[q + '+linear']['linear_weight']:g}"
            for q in kinds])
    caption = (f"Chosen on BSDS500 val {', '.join(Path(name).stem for name in study['images'])}"
               " (lambda_t of the plain encoder; lambda_t / weight of the linearised mode):")
    header = ["model", "rdoq", "tcq4, tcq8", "usq linear", "rdoq linear", "tcq4, tcq8 linear"]
    return [caption, ""] + _table(header, rows)


def tcq_training(paths: list[Path]) -> list[str]:
    """experiments/tcq_training_study.py: each training recipe coded with usq and tcq4."""
    return _table(
        ["model", "coded with", "bpp", "PSNR (dB)", "RD cost"],
        [[r["label"], r["quantizer"], f"{r['bpp']:.4f}", f"{r['psnr']:.3f}",
          f"{r['rd_cost']:.4f}"] for r in _json(paths[0])["rows"]],
    )


def retraining(paths: list[Path]) -> list[str]:
    """experiments/retrain_study.py's tables (one per rate point, then BD-rates)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return importlib.import_module("retrain_study").markdown(paths)
    finally:
        sys.path.remove(str(ROOT / "experiments"))


def format_change(paths: list[Path]) -> list[str]:
    """Each zoo curve in format 2 against the same models' format-1 curve (docs/results/format1/):
    BD-rate over the curve, and the change of rate and PSNR per rate point."""
    matrix = _bd_matrix(paths[0])
    rows = []
    for old_path in sorted((ROOT / "docs/results/format1").glob("*.json")):
        old, new = _json(old_path), _json(ROOT / "docs/results" / old_path.name)
        by_model = {p["model"]: p for p in new["points"]}
        changes = []
        for point in sorted(old["points"], key=lambda p: p["lambda"]):
            now = by_model[point["model"]]
            changes.append(f"{100 * (now['bpp'] / point['bpp'] - 1):+.2f}% / "
                           f"{now['psnr_rgb'] - point['psnr_rgb']:+.3f}")
        rows.append([new["name"].removeprefix("trellic "),
                     f"{matrix[old['name']][new['name']]}%"] + changes)
    lambdas = sorted(p["lambda"] for p in _json(paths[1])["points"])
    header = ["curve", "BD-rate vs format 1"] + [f"lambda {v:g}: bpp / dB" for v in lambdas]
    return _table(header, rows)


def compressai_speed(paths: list[Path]) -> list[str]:
    """bench/compressai_speed.py runs beside trellic's N=128/M=192 USQ rows at the same
    thread count (the first file: CompressAI's runs; the others: codec_speed files)."""
    ours = {}
    for path in paths[1:]:
        run = _json(path)
        if run["N"] == 128 and run["M"] == 192:
            ours[run.get("threads", 1)] = run["results"]["usq"]
    rows = []
    for run in _json(paths[0])["runs"]:
        mine = ours.get(run["threads"])
        ratio = "-" if mine is None else (f"{mine['encode_s'] / run['encode_s']:.2f}x / "
                                          f"{mine['decode_s'] / run['decode_s']:.2f}x")
        rows.append([str(run["threads"]), str(run["images"]), f"{run['encode_s']:.3f}",
                     f"{run['decode_s']:.3f}", ratio])
    return _table(["threads", "images", "CompressAI encode s", "CompressAI decode s",
                   "trellic usq / CompressAI (encode / decode)"], rows)


def portability(paths: list[Path]) -> list[str]:
    """experiments/portability_study.py: files written under one kernel set, decoded under
    another (one table per data file: before and after portable bitstreams)."""
    lines = []
    for path in paths:
        study = _json(path)
        rows = [[pair["encoder"], pair["decoder"], str(pair["files"]), str(pair["failed"]),
                 str(pair["wrong"]),
                 "-" if pair["max_difference"] is None else str(pair["max_difference"])]
                for pair in study["pairs"]]
        models = ", ".join(f"`{m}`" for m in study["models"])
        lines += [f"`{path.relative_to(ROOT)}` (format {study.get('format', '?')}): {models}, "
                  f"{len(study['images'])} Kodak images x {', '.join(study['quantizers'])}; "
                  f"*wrong*: a pixel more than {study['tolerance']} levels from the encoder "
                  "side's decode", ""]
        lines += _table(["encoded under", "decoded under", "files", "failed", "wrong",
                         "max pixel difference"], rows) + [""]
    return lines[:-1]


KINDS: dict[str, Callable[[list[Path]], list[str]]] = {
    "default-model": default_model,
    "speed": speed,
    "zoo-bdrate": zoo_bdrate,
    "kodak-bdrate": kodak_bdrate,
    "refine-kodak": refine_kodak,
    "operating-point": operating_point,
    "refine-study": refine_study,
    "tcq-training": tcq_training,
    "quant-study": quant_study,
    "quant-kodak": quant_kodak,
    "operating-points": operating_points,
    "search-training": search_training,
    "retraining": retraining,
    "portability": portability,
    "format-change": format_change,
    "compressai-speed": compressai_speed,
}


def blocks(text: str) -> list[Block]:
    """The generated tables of one document, in order."""
    return [Block(m["kind"], tuple(m["sources"].split()), m["body"])
            for m in BLOCK.finditer(text)]


def _sources(block: Block) -> list[Path]:
    paths = []
    for pattern in block.sources:
        found = sorted(ROOT.glob(pattern))
        if not found:
            raise DocTableError(f"table {block.label}: no data file matches {pattern}")
        paths += found
    return paths


def render(block: Block) -> str:
    """The body the generator writes for ``block``: a blank line, the table, a blank line."""
    if block.kind not in KINDS:
        raise DocTableError(f"unknown table kind {block.kind!r} (known: {', '.join(KINDS)})")
    try:
        lines = KINDS[block.kind](_sources(block))
    except (KeyError, IndexError, StopIteration, ValueError) as error:
        raise DocTableError(f"table {block.label}: its data lacks {error!r}") from None
    return "\n" + "\n".join(lines) + "\n\n"


def rewrite(text: str) -> str:
    """``text`` with every generated table rendered again from its data."""
    def replace(match: re.Match) -> str:
        block = Block(match["kind"], tuple(match["sources"].split()), match["body"])
        return match[0].split("\n", 1)[0] + "\n" + render(block) + "<!-- end table -->"
    return BLOCK.sub(replace, text)


def documents() -> list[Path]:
    return [path for pattern in DOCS for path in sorted(ROOT.glob(pattern))]


def stale() -> list[str]:
    """``doc: table`` for every generated table whose text differs from its data's."""
    return [f"{path.relative_to(ROOT)}: {block.label}" for path in documents()
            for block in blocks(path.read_text()) if block.body != render(block)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rewrite nothing; exit 1 if a table differs from its data")
    args = parser.parse_args(argv)
    try:
        if args.check:
            lines = stale()
            for line in lines:
                print(f"stale: {line} (python scripts/doc_tables.py rewrites it)")
            return 1 if lines else 0
        for path in documents():
            text = path.read_text()
            new = rewrite(text)
            if new != text:
                write_atomic(path, new.encode(), force=True)
                print(f"rewrote {path.relative_to(ROOT)}")
    except (DocTableError, TrellicError) as error:
        print(f"doc_tables: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
