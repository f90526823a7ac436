"""Subcommands of the evaluation suite: eval, baseline, bdrate, plot, report, convert-results.

    trellic eval DATA_DIR [--model NAME] --quantizer usq|tcq4|tcq8 -o results.json
    trellic baseline DATA_DIR --codec jpeg|jpeg444|webp|avif|avif420|jxl|x265 -o results.json
    trellic bdrate A.json B.json            # B against A
    trellic bdrate --table *.json --reference all -o bdrate.md
    trellic plot *.json --reference mbt2018-mean -o rd.png
    trellic report *.json --anchor jpeg -o report.html
    trellic convert-results results.json --to compressai -o compressai.json

Every option value is checked at parse time (trellic.argtypes; exit 2). Curves measured on
different image sets are not compared unless ``--allow-mixed-images`` (then a warning).
eval and baseline check every image before coding any (trellic.eval.sweep) and write their
results file again each time a point finishes, so a failure or an interrupt keeps the
finished points (the error says how many). plot writes PNG, SVG or PDF by the extension.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from trellic import __version__
from trellic.argtypes import (
    float_in,
    int_in,
    positive_float,
    positive_int,
    threads,
    word_or_int,
)
from trellic.coding.bitstream import MAX_LAMBDA_T
from trellic.device import add_device_option, resolve_device
from trellic.errors import TrellicError, warn
from trellic.eval import baselines
from trellic.eval.bdrate import METHODS, bd
from trellic.eval.learned import load_learned
from trellic.eval.metrics import MS_SSIM_MIN_SIDE
from trellic.eval.plot import (
    MAX_BPP_RANGE,
    empty_range_warning,
    ms_ssim_db,
    plot_format,
    rd_plot,
    rd_plot_png,
)
from trellic.eval.results import (
    Results,
    check_image_sets,
    read_reference,
    read_results,
    reference_names,
    to_compressai,
    write_results,
)
from trellic.eval.runner import Setting
from trellic.eval.sweep import checked_images, summary, sweep
from trellic.io import check_output, write_atomic
from trellic.models.refine import REFINE_MODES
from trellic.paths import kodak_dir
from trellic.quant.registry import quantizer_names

DEFAULT_MODEL = "default"  # what compress uses: the zoo manifest's default model


def _done(args: argparse.Namespace, results: Results, output: Path, line: str) -> int:
    print(summary(results, output) if args.json else line)
    return 0


def _eval(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))
    output = check_output(args.output, args.force)
    files = checked_images(args)
    settings = []
    for model in args.model or [DEFAULT_MODEL]:
        load = {"model": model, "quantizer": args.quantizer, "lambda_t": args.lambda_t,
                "refine": args.refine}
        info = dict(load_learned(**load).describe())
        fields = {"model": info.pop("model", model),
                  "checkpoint_sha256": info.pop("checkpoint_sha256", None),
                  "quantizer": info.pop("quantizer", {"name": args.quantizer}),
                  "lambda_": info.pop("lambda", None), "options": {**info, "load": load}}
        settings.append(Setting(model, functools.partial(load_learned, **load, device=device),
                                fields))
    results = sweep(args, settings, files, output, name=args.name or f"trellic {args.quantizer}",
                    codec="trellic", encoder=f"trellic {__version__}")
    return _done(args, results, output, f"trellic eval: {len(results.points)} point(s) x "
                 f"{len(files)} images in {results.wall_seconds:.0f} s -> {output}")


def _baseline(args: argparse.Namespace) -> int:
    output = check_output(args.output, args.force)
    baseline = baselines.get_baseline(args.codec)
    files = checked_images(args)
    results = sweep(args, baselines.settings(args.codec, args.quality), files, output,
                    name=args.name or baseline.title, codec=args.codec,
                    encoder=baselines.encoder_version(args.codec))
    return _done(args, results, output, f"trellic baseline {args.codec}: "
                 f"{len(results.points)} points x {len(files)} images in "
                 f"{results.wall_seconds:.0f} s -> {output}")


def _load_curves(args: argparse.Namespace) -> tuple[list[Results], list[str]]:
    """Results files given as arguments, then the requested reference curves; refused when
    measured on different image sets (unless --allow-mixed-images: a warning)."""
    names = list(args.reference or [])
    if "all" in names:
        names = reference_names()
    curves = [read_results(path) for path in args.files]
    labels = list(args.files)
    curves += [read_reference(name) for name in names]
    labels += [f"reference:{name}" for name in names]
    for warning in check_image_sets(curves, labels, args.allow_mixed_images):
        warn(warning)
    return curves, labels


def _quality(curve: Results, metric: str) -> tuple[list[float], list[float]]:
    if metric == "psnr":
        return [p.bpp for p in curve.points], [p.psnr_rgb for p in curve.points]
    points = [p for p in curve.points if p.ms_ssim_rgb is not None]
    if not points:
        raise TrellicError(f"{curve.name} has no MS-SSIM values")
    return [p.bpp for p in points], [ms_ssim_db(p.ms_ssim_rgb) for p in points]


def bd_table(curves: list[Results], labels: list[str], method: str, metric: str) -> str:
    """Markdown: BD-rate and BD-quality matrices (each column against each row's anchor)."""
    unit = "dB" if metric == "psnr" else "dB of MS-SSIM"
    names = [curve.name for curve in curves]
    header = "| anchor \\ test | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    rate_rows, quality_rows = [header, rule], [header, rule]
    for anchor in curves:
        rates, qualities = [], []
        for test in curves:
            try:
                result = bd(*_quality(anchor, metric), *_quality(test, metric), method)
            except TrellicError:
                rates.append("n/a")
                qualities.append("n/a")
                continue
            rates.append(f"{result.rate_percent:+.1f}")
            delta = result.quality_delta
            qualities.append("n/a" if delta is None else f"{delta:+.2f}")
        rate_rows.append(f"| {anchor.name} | " + " | ".join(rates) + " |")
        quality_rows.append(f"| {anchor.name} | " + " | ".join(qualities) + " |")
    sources = [f"- {curve.name}: `{label}` ({curve.encoder}"
               + (f"; source: {curve.source}" if curve.source else "") + ")"
               for curve, label in zip(curves, labels, strict=True)]
    metric_name = "PSNR-RGB" if metric == "psnr" else "MS-SSIM-RGB (dB)"
    return "\n".join([
        f"# BD-rate table ({metric_name}, {method})", "",
        "Produced by `trellic bdrate --table`. Each cell is the column codec against the row "
        "codec (the anchor), over the range where both curves overlap; n/a where they do not.",
        "", "## BD-rate (%), negative = the column codec needs fewer bits", "", *rate_rows, "",
        f"## BD-{'PSNR' if metric == 'psnr' else 'quality'} ({unit}), positive = the column "
        "codec has higher quality", "", *quality_rows, "", "## Curves", "", *sources, ""])


def _bdrate(args: argparse.Namespace) -> int:
    output = check_output(args.output, args.force) if args.output else None
    curves, labels = _load_curves(args)
    if args.table:
        if len(curves) < 2:
            raise TrellicError("--table needs at least two curves")
        text = bd_table(curves, labels, args.method, args.metric)
    else:
        if len(curves) != 2:
            raise TrellicError(f"bdrate compares two curves (B against A), got {len(curves)}; "
                               "use --table for more")
        anchor, test = curves
        result = bd(*_quality(anchor, args.metric), *_quality(test, args.metric), args.method)
        unit = "dB" if args.metric == "psnr" else "dB (MS-SSIM)"
        delta = "n/a (rates do not overlap)" if result.quality_delta is None \
            else f"{result.quality_delta:+.3f} {unit}"
        text = (f"{test.name} against {anchor.name} ({args.method}, {args.metric}):\n"
                f"  BD-rate {result.rate_percent:+.2f} % "
                f"(over {result.low:.2f} to {result.high:.2f} {unit})\n"
                f"  BD-{'PSNR' if args.metric == 'psnr' else 'quality'} {delta}\n")
    print(text, end="")
    if output:
        write_atomic(output, text.encode(), args.force)
    return 0


def _check_rate_axis(curves: list[Results], max_bpp: float) -> None:
    warning = empty_range_warning(curves, max_bpp)
    if warning:
        warn(warning)


def _plot(args: argparse.Namespace) -> int:
    fmt = plot_format(args.output)
    output = check_output(args.output, args.force)
    curves, _ = _load_curves(args)
    _check_rate_axis(curves, args.max_bpp)
    write_atomic(output, rd_plot(curves, args.max_bpp, args.title, fmt=fmt), args.force)
    print(f"wrote {output}")
    return 0


def _crop_image(named: str | None) -> tuple[Path | None, str | None]:
    """The report's crop image (``--image``, else Kodak kodim23.png), or None and why not:
    without --image the crops are skipped (a warning) where the default is not at hand."""
    if named:
        return Path(named), None
    try:
        image = kodak_dir() / "kodim23.png"
    except TrellicError:  # installed, without TRELLIC_DATA
        return None, ("no crops: pass --image or set TRELLIC_DATA (the default crop image is "
                      "Kodak kodim23.png)")
    if not image.is_file():
        return None, f"no crops: the default crop image {image} is not there; pass --image"
    return image, None


def _report(args: argparse.Namespace) -> int:
    from trellic.eval.crops import make_crops, parse_box, unmeasured_warning
    from trellic.eval.report import choose_anchor, render_report

    output = check_output(args.output, args.force)
    if args.image and not Path(args.image).is_file():
        raise TrellicError(f"--image {args.image}: "
                           f"{'not a file' if Path(args.image).exists() else 'no such file'}")
    box = parse_box(args.crop) if args.crop else None
    curves, labels = _load_curves(args)
    anchor = choose_anchor(curves, labels, args.anchor)
    _check_rate_axis(curves, args.max_bpp)
    image, note = _crop_image(args.image)
    crops = None
    if image is not None:
        warning = unmeasured_warning([c for c in curves if c.codec != "reference"], image.name)
        if warning:
            warn(warning)
        crops = make_crops(curves, image, args.crop_bpp, box, progress=sys.stderr.isatty())
    else:
        warn(note)
    page = render_report(curves, labels, anchor, rd_plot_png(curves, args.max_bpp), crops,
                         note, args.method)
    write_atomic(output, page.encode(), args.force)
    print(f"wrote {output}")
    return 0


def _convert_results(args: argparse.Namespace) -> int:
    output = check_output(args.output, args.force, (Path(args.file),))
    results = read_results(args.file)
    if args.to == "compressai":
        text = json.dumps(to_compressai(results), indent=2, allow_nan=False) + "\n"
        write_atomic(output, text.encode(), args.force)
    else:
        write_results(results, output, args.force)
    print(f"wrote {output}")
    return 0


def _add_output(parser: argparse.ArgumentParser, required: bool = True,
                help: str = "output file (atomic write)") -> None:
    parser.add_argument("-o", "--output", required=required, help=help)
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def _add_curves(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="results JSON (trellic or CompressAI format)")
    parser.add_argument("--reference", action="append", metavar="NAME",
                        choices=[*reference_names(), "all"],
                        help="add a published curve (repeatable; 'all' for every one): "
                        + ", ".join(reference_names()))
    parser.add_argument("--allow-mixed-images", action="store_true",
                        help="compare curves measured on different image sets (a warning "
                        "instead of an error)")


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="folder of images (e.g. Kodak); its sub-folders are not read")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes to shard the (setting, image) tasks over; more than "
                        "the tasks or the usable CPUs is capped, with a warning (default: 1)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="use only the first N images (by name; default: all)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out, with a warning, images that cannot be read or are "
                        f"smaller than MS-SSIM needs ({MS_SSIM_MIN_SIDE} pixels a side); "
                        "without it such an image is an error before any coding")
    parser.add_argument("--name", help="curve name shown in plots and tables")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary (output, images, per-point means) on stdout "
                        "instead of the one-line summary")
    _add_output(parser)


def _add_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS, default="pchip",
                        help="BD interpolation: pchip (monotone piecewise cubic) or cubic "
                        "(VCEG-M33 polynomial)")


def _add_max_bpp(parser: argparse.ArgumentParser) -> None:
    low, high = MAX_BPP_RANGE
    parser.add_argument("--max-bpp", type=float_in(low, high), default=2.0, metavar="BPP",
                        help=f"right end of the rate axis, in [{low:g}, {high:g}] (default: 2.0)")


class _QualityCheck(argparse.Action):
    """Stores --codec or --quality; once both are known (in either order), checks the
    qualities against the codec's range, so a bad one is a usage error (exit 2)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        codec, qualities = getattr(namespace, "codec", None), getattr(namespace, "quality", None)
        if codec is not None and qualities is not None:
            try:
                baselines.check_qualities(codec, qualities)
            except TrellicError as error:
                raise argparse.ArgumentError(self, str(error)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate the learned codec on a folder")
    _add_run(parser)
    parser.add_argument("--model", action="append",
                        help="zoo model name or .safetensors path; repeat for a curve, one point "
                        f"per model (default: {DEFAULT_MODEL!r}, the model compress uses)")
    parser.add_argument("--quantizer", choices=quantizer_names(), default="usq",
                        help="quantizer of the latents (default: usq)")
    parser.add_argument("--lambda-t", type=float_in(0.0, MAX_LAMBDA_T, high_open=True),
                        help="rate weight of the rdoq/tcq search in latent units (default: the "
                        "model's measured operating point, else the quantizer's)")
    parser.add_argument("--refine", type=word_or_int(tuple(REFINE_MODES), 0), default=0,
                        metavar="MODE", help="latent refinement per image: linear, cheap, "
                        "full or a number of annealed steps, 0 for off (default: 0)")
    parser.add_argument("--threads", type=threads,
                        help="torch intra-op threads of each worker process, at most the usable "
                        "CPUs (default: torch's own with --workers 1, else 1 per worker)")
    add_device_option(parser, "where each worker runs g_a and g_s: auto (the GPU if CUDA is "
                      "available, else the CPU), cpu or cuda; the entropy coding stays on the "
                      "CPU (default: auto)")
    parser.set_defaults(func=_eval)

    parser = subparsers.add_parser("baseline", help="quality sweep of a classical codec")
    _add_run(parser)
    parser.add_argument("--codec", required=True, choices=list(baselines.BASELINES),
                        action=_QualityCheck, help="the classical codec to sweep (jxl needs "
                        "cjxl/djxl, x265 needs ffmpeg on PATH)")
    parser.add_argument("--quality", type=int_in(), nargs="+", action=_QualityCheck,
                        help="override the swept qualities (each in the codec's range: "
                        + ", ".join(f"{name} {b.quality_range[0]}-{b.quality_range[1]}"
                                    for name, b in baselines.BASELINES.items()) + ")")
    parser.set_defaults(func=_baseline)

    parser = subparsers.add_parser("bdrate", help="BD-rate / BD-PSNR of B against A")
    _add_curves(parser)
    parser.add_argument("--table", action="store_true", help="matrix over all curves (markdown)")
    _add_method(parser)
    parser.add_argument("--metric", choices=("psnr", "ms-ssim"), default="psnr",
                        help="quality axis: PSNR-RGB, or MS-SSIM-RGB in dB")
    _add_output(parser, required=False,
                help="also write the text to this file (atomic write; default: stdout only)")
    parser.set_defaults(func=_bdrate)

    parser = subparsers.add_parser("plot", help="RD curves (PSNR, MS-SSIM) to a PNG, SVG or PDF")
    _add_curves(parser)
    _add_max_bpp(parser)
    parser.add_argument("--title", help="figure title (default: the image sets and their "
                        "image counts)")
    _add_output(parser, help="output file, .png, .svg or .pdf: the extension picks the format "
                "(atomic write)")
    parser.set_defaults(func=_plot)

    parser = subparsers.add_parser("report", help="static HTML report: plots, BD, crops")
    _add_curves(parser)
    parser.add_argument("--anchor", help="anchor curve for BD (file, name or codec)")
    parser.add_argument("--image", help="image for the crops, best one the curves were "
                        "measured on; a missing file is an error (default: Kodak kodim23.png "
                        "from TRELLIC_DATA, crops skipped with a warning where it is not there)")
    parser.add_argument("--crop", metavar="X,Y,W,H",
                        help="crop box (default: the most detailed 192x192 square)")
    parser.add_argument("--crop-bpp", type=positive_float, action="append", metavar="BPP",
                        help="target rate of a crop row, reached by every measured curve "
                        "(repeatable; default: two such rates, chosen from the curves)")
    _add_method(parser)
    _add_max_bpp(parser)
    _add_output(parser)
    parser.set_defaults(func=_report)

    parser = subparsers.add_parser(
        "convert-results", help="a results JSON in trellic's or CompressAI's layout",
        description="Read a trellic or CompressAI results JSON and write it in the chosen "
        "layout (CompressAI's: columns bpp, psnr-rgb, ms-ssim-rgb, times; its plot reads it).")
    parser.add_argument("file", help="results JSON (trellic or CompressAI format)")
    parser.add_argument("--to", choices=("compressai", "trellic"), required=True,
                        help="layout to write: CompressAI's columns or trellic's schema")
    _add_output(parser)
    parser.set_defaults(func=_convert_results)
