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
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trellic.errors import TrellicError
from trellic.io import write_atomic
from trellic.quant.registry import QUANTIZERS as QUANTIZERS_BY_NAME
from trellic.quant.registry import quantizer_names

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
import bench_tables  # noqa: E402
import quant_tables  # noqa: E402
from table_format import markdown_table, read_json  # noqa: E402

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


def default_model(paths: list[Path]) -> list[str]:
    """Kodak bpp / PSNR of the default model per quantizer (weights/manifest.json)."""
    manifest = read_json(paths[0])
    name = manifest["default"]
    entry = manifest["models"][name]
    measured = [q for q in QUANTIZERS if q in entry["kodak"]]
    images = {entry["kodak"][q]["images"] for q in measured}
    rows = []
    for kind in measured:
        point, step = entry["kodak"][kind], QUANTIZERS_BY_NAME[kind].step
        label = f"{kind} (delta {entry[step]:g})" if step in entry else kind
        lambda_t = f"{point['lambda_t']:g}" if point.get("lambda_t") else "-"
        rows.append([label, f"{point['bpp']:.4f}", f"{point['psnr_rgb']:.2f}", lambda_t])
    caption = f"`{name}` on Kodak ({', '.join(map(str, sorted(images)))} images):"
    return [caption, ""] + markdown_table(["quantizer", "bpp", "PSNR (dB)", "lambda_t"], rows)


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
    runs = [read_json(path) for path in paths]
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
    return markdown_table(header, rows) + [""] + [
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
        curve = read_json(ROOT / _curve_file(source))
        rates = [point["bpp"] for point in curve["points"]]
        wall = curve.get("wall_seconds")
        rows.append([name, f"{min(rates):.3f} - {max(rates):.3f}",
                     *(f"{matrix[a][name]}%" if a != name else "0" for a in KODAK_ANCHORS),
                     "-" if wall is None else f"{wall:.0f} s"])
    return markdown_table(["codec", "rate range (bpp)", "vs JPEG 4:2:0", "vs mbt2018-mean",
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
    return markdown_table(["curve"] + [header for header, _, _ in columns], rows)


def refine_kodak(paths: list[Path]) -> list[str]:
    """The zoo's plain and refined encoders on Kodak, per model, and their BD-rates."""
    plain, refined = read_json(paths[0]), read_json(paths[1])
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
    return markdown_table(header, rows) + [
        "",
        f"Refinement moves every point by {min(dpsnr):+.2f} to {max(dpsnr):+.2f} dB at "
        f"{min(dbits):+.1f}% to {max(dbits):+.1f}% bits: BD-rate (PSNR-RGB, pchip) "
        f"{bd[0]}% against the plain encoder; against WebP {bd[1]}% "
        f"(plain encoder: {matrix['WebP'][plain['name']]}%).",
    ]


def operating_point(paths: list[Path]) -> list[str]:
    """experiments/tcq_operating_point.py: each quantizer and delta, RD cost at lambda."""
    study = read_json(paths[0])
    rows = sorted(study["rows"], key=lambda r: (QUANTIZERS.index(r["quantizer"]), r["delta"]))
    best = min(r["rd_cost"] for r in rows)
    return markdown_table(
        ["quantizer", "delta", "lambda_t", "bpp", "PSNR (dB)", "RD cost"],
        [[r["quantizer"], f"{r['delta']:.2f}", f"{r['lambda_t']:.3f}", f"{r['bpp']:.4f}",
          f"{r['psnr']:.2f}", (f"**{r['rd_cost']:.4f}**" if r["rd_cost"] == best
                               else f"{r['rd_cost']:.4f}")] for r in rows],
    )


def refine_study(paths: list[Path]) -> list[str]:
    """experiments/refine_study.py: RD cost saved (% of plain bpp) and seconds per crop."""
    rows = read_json(paths[0])["rows"]
    settings = list(dict.fromkeys((r["steps"], r["lr"]) for r in rows))
    cells: dict[str, dict] = {}
    for r in rows:
        cells.setdefault(r["model"], {})[(r["steps"], r["lr"])] = (
            f"{r['gain_percent']:.1f}% ({r['seconds_per_image']:.1f} s)")
    return markdown_table(["model"] + [f"{steps} steps, lr {lr:g}" for steps, lr in settings],
                  [[f"`{model}`"] + [by.get(s, "-") for s in settings]
                   for model, by in cells.items()])


def tcq_training(paths: list[Path]) -> list[str]:
    """experiments/tcq_training_study.py: each training recipe coded with usq and tcq4."""
    return markdown_table(
        ["model", "coded with", "bpp", "PSNR (dB)", "RD cost"],
        [[r["label"], r["quantizer"], f"{r['bpp']:.4f}", f"{r['psnr']:.3f}",
          f"{r['rd_cost']:.4f}"] for r in read_json(paths[0])["rows"]],
    )


def _retrain_study(function: str, paths: list[Path]) -> list[str]:
    """One of experiments/retrain_study.py's renderers, imported from its folder."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return getattr(importlib.import_module("retrain_study"), function)(paths)
    finally:
        sys.path.remove(str(ROOT / "experiments"))


def retraining(paths: list[Path]) -> list[str]:
    """experiments/retrain_study.py's tables (one per rate point, then BD-rates)."""
    return _retrain_study("markdown", paths)


def retraining_compare(paths: list[Path]) -> list[str]:
    """experiments/retrain_study.py's per-rate-point retraining gains, one column per model
    family (the hyperprior's and the channel-conditional studies)."""
    return _retrain_study("comparison", paths)


def format_change(paths: list[Path]) -> list[str]:
    """Each zoo curve in format 2 against the same models' format-1 curve (docs/results/format1/):
    BD-rate over the curve, and the change of rate and PSNR per rate point."""
    matrix = _bd_matrix(paths[0])
    rows = []
    for old_path in sorted((ROOT / "docs/results/format1").glob("*.json")):
        old, new = read_json(old_path), read_json(ROOT / "docs/results" / old_path.name)
        by_model = {p["model"]: p for p in new["points"]}
        changes = []
        for point in sorted(old["points"], key=lambda p: p["lambda"]):
            now = by_model[point["model"]]
            changes.append(f"{100 * (now['bpp'] / point['bpp'] - 1):+.2f}% / "
                           f"{now['psnr_rgb'] - point['psnr_rgb']:+.3f}")
        rows.append([new["name"].removeprefix("trellic "),
                     f"{matrix[old['name']][new['name']]}%"] + changes)
    lambdas = sorted(p["lambda"] for p in read_json(paths[1])["points"])
    header = ["curve", "BD-rate vs format 1"] + [f"lambda {v:g}: bpp / dB" for v in lambdas]
    return markdown_table(header, rows)


def portability(paths: list[Path]) -> list[str]:
    """experiments/portability_study.py: files written under one kernel set, decoded under
    another (one table per data file: before and after portable bitstreams)."""
    lines = []
    for path in paths:
        study = read_json(path)
        rows = [[pair["encoder"], pair["decoder"], str(pair["files"]), str(pair["failed"]),
                 str(pair["wrong"]),
                 "-" if pair["max_difference"] is None else str(pair["max_difference"])]
                for pair in study["pairs"]]
        models = ", ".join(f"`{m}`" for m in study["models"])
        lines += [f"`{path.relative_to(ROOT)}` (format {study.get('format', '?')}): {models}, "
                  f"{len(study['images'])} Kodak images x {', '.join(study['quantizers'])}; "
                  f"*wrong*: a pixel more than {study['tolerance']} levels from the encoder "
                  "side's decode", ""]
        lines += markdown_table(["encoded under", "decoded under", "files", "failed", "wrong",
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
    "quant-study": quant_tables.quant_study,
    "quant-kodak": quant_tables.quant_kodak,
    "operating-points": quant_tables.operating_points,
    "search-training": quant_tables.search_training,
    "retraining": retraining,
    "retraining-compare": retraining_compare,
    "portability": portability,
    "format-change": format_change,
    "compressai-speed": bench_tables.compressai_speed,
    "scale-fidelity": bench_tables.scale_fidelity,
    "serial-trellis": bench_tables.serial_trellis,
    "decode-speed": bench_tables.decode_speed,
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
