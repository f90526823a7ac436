"""A static HTML report: RD plots, BD-rates, crops with error maps, per-point and per-image
tables, and the curves' provenance.

One self-contained file (images embedded as base64 PNG, no scripts, no network), so it can
be attached to an issue or opened offline::

    curves (results JSON) -> rd_plot_png -------------------> <img> RD plots
                          -> bd() against the anchor -------> BD-rate / BD-PSNR table
                          -> make_crops(image, targets) ----> original; per target rate, a
                                                              crop and an error map per codec
                          -> every point -------------------> bpp, PSNR, MS-SSIM table
                          -> bd() per image, vs the anchor -> BD-rate per image and curve
                          -> provenance --------------------> encoders, data, commits
"""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass
from pathlib import Path

from trellic.errors import TrellicError
from trellic.eval.bdrate import bd
from trellic.eval.crops import Crop, CropSet
from trellic.eval.plot import datasets_label, ms_ssim_db
from trellic.eval.results import Results

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.better { color: #116611; } td.worse { color: #aa2222; }
.crops { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; max-width: 384px; }
figure img { width: 384px; height: 384px; image-rendering: pixelated; border: 1px solid #999; }
figure img.error { display: block; width: 192px; height: 192px; margin-top: 0.3em; }
.note { width: 384px; height: 384px; display: flex; align-items: center; justify-content: center;
        background: #f3f3f3; color: #666; border: 1px solid #ccc; text-align: center; }
.rd { max-width: 100%; }
table.images td { white-space: nowrap; }
.warning { color: #aa2222; }
table.wide { width: 100%; } table.wide td { text-align: left; overflow-wrap: anywhere; }
"""


@dataclass(frozen=True)
class BDRow:
    """BD numbers of one curve against the anchor; None where undefined (reason given)."""

    name: str
    rate_psnr: float | None
    psnr_db: float | None
    rate_ms_ssim: float | None
    reason: str | None = None


def _curve(results: Results, field: str) -> tuple[list[float], list[float]]:
    points = [p for p in results.points if getattr(p, field) is not None]
    values = [getattr(p, field) for p in points]
    if field == "ms_ssim_rgb":
        values = [ms_ssim_db(value) for value in values]
    return [p.bpp for p in points], values


def bd_rows(anchor: Results, curves: list[Results], method: str = "pchip") -> list[BDRow]:
    """BD-rate (PSNR and MS-SSIM) and BD-PSNR of every curve against the anchor."""
    rows = []
    for curve in curves:
        try:
            by_psnr = bd(*_curve(anchor, "psnr_rgb"), *_curve(curve, "psnr_rgb"), method)
        except TrellicError as error:
            rows.append(BDRow(curve.name, None, None, None, str(error)))
            continue
        try:
            rate_ms_ssim = bd(*_curve(anchor, "ms_ssim_rgb"), *_curve(curve, "ms_ssim_rgb"),
                              method).rate_percent
        except TrellicError:
            rate_ms_ssim = None
        rows.append(BDRow(curve.name, by_psnr.rate_percent, by_psnr.quality_delta, rate_ms_ssim))
    return rows


def _cell(value: float | None, unit: str, lower_is_better: bool) -> str:
    if value is None:
        return "<td>n/a</td>"
    better = value < 0 if lower_is_better else value > 0
    css = "better" if better else "worse" if value else ""
    return f'<td class="{css}">{value:+.2f}{unit}</td>'


def _image(png: bytes, alt: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _bd_table(anchor: Results, rows: list[BDRow], method: str) -> str:
    lines = [f"<p>Against the anchor <b>{html.escape(anchor.name)}</b>, {method} interpolation "
             "over the overlapping range; negative BD-rate = fewer bits for the same quality."
             "</p>", "<table><tr><th>codec</th><th>BD-rate (PSNR)</th><th>BD-PSNR</th>"
             "<th>BD-rate (MS-SSIM dB)</th><th>note</th></tr>"]
    for row in rows:
        lines.append(f"<tr><td>{html.escape(row.name)}</td>"
                     f"{_cell(row.rate_psnr, ' %', True)}{_cell(row.psnr_db, ' dB', False)}"
                     f"{_cell(row.rate_ms_ssim, ' %', True)}"
                     f"<td>{html.escape(row.reason or '')}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _figure(crop: Crop) -> str:
    body = (_image(crop.png, crop.title) if crop.png
            else f'<div class="note">{html.escape(crop.note or "")}</div>')
    error = (_image(crop.error_png, f"{crop.title}: error map", "error")
             if crop.error_png else "")
    return (f"<figure>{body}{error}<figcaption><b>{html.escape(crop.title)}</b><br>"
            f"{html.escape(crop.caption)}</figcaption></figure>")


def _crops_section(crops: CropSet, curves: list[Results]) -> str:
    published = [curve.name for curve in curves if curve.codec == "reference"]
    low, high = crops.rate_range
    parts = [f"<p>Every measured codec reaches {low:.3f} to {high:.3f} bpp on this image "
             "(by its per-image results; by its mean rates where it has none for this image); "
             "the targets lie in that range. Each codec is shown at its setting whose rate on "
             "this image is closest to the target (crops at 2x, nearest neighbour); the "
             "caption gives the rate and PSNR that setting gets on the whole image. Under "
             "each crop, its error map: |x - x&#770;| averaged over R, G, B, from black (0) "
             "through red and yellow to white (the row's scale)."
             + (f" Published curves have no reconstructions: {html.escape(', '.join(published))}."
                if published else "") + "</p>",
             f'<div class="crops">{_figure(crops.original)}</div>']
    if crops.warning:
        parts.insert(1, f'<p class="warning">Warning: {html.escape(crops.warning)}</p>')
    for row in crops.rows:
        parts += [f"<h3>Near {row.target_bpp:.3f} bpp (error maps: white = {row.error_scale} "
                  "levels or more)</h3>",
                  '<div class="crops">', *(_figure(crop) for crop in row.crops), "</div>"]
    return "\n".join(parts)


def _number(value: float | None, digits: int) -> str:
    return "<td>n/a</td>" if value is None else f"<td>{value:.{digits}f}</td>"


def _points_table(curves: list[Results]) -> str:
    count = sum(len(curve.points) for curve in curves)
    lines = [f"<details><summary>Every point of every curve ({count} points; means over the "
             "images)</summary>", "<table><tr><th>curve</th><th>point</th><th>bpp</th>"
             "<th>PSNR-RGB (dB)</th><th>MS-SSIM-RGB</th><th>MS-SSIM (dB)</th><th>images</th>"
             "</tr>"]
    for curve in curves:
        for point in curve.points:
            ms_ssim = point.ms_ssim_rgb
            lines.append(
                f"<tr><td>{html.escape(curve.name)}</td><td>{html.escape(point.label)}</td>"
                f"{_number(point.bpp, 4)}{_number(point.psnr_rgb, 3)}{_number(ms_ssim, 5)}"
                f"{_number(None if ms_ssim is None else ms_ssim_db(ms_ssim), 3)}"
                f"<td>{len(point.images) or 'n/a'}</td></tr>")
    lines += ["</table>", "</details>"]
    return "\n".join(lines)


def _image_curve(results: Results, name: str) -> tuple[list[float], list[float]]:
    entries = [entry for point in results.points for entry in point.images if entry.name == name]
    return [entry.bpp for entry in entries], [entry.psnr_rgb for entry in entries]


def _images_table(anchor: Results, curves: list[Results], method: str) -> str:
    names = [entry.name for entry in anchor.points[0].images] if anchor.points else []
    if not names:
        return (f"<p>The anchor {html.escape(anchor.name)} has no per-image results "
                "(a published curve): choose a measured anchor for this table.</p>")
    tested = [curve for curve in curves if any(point.images for point in curve.points)]
    if not tested:
        return "<p>No other curve has per-image results.</p>"
    lines = [f"<p>BD-rate (PSNR-RGB, {method}) of each curve against "
             f"<b>{html.escape(anchor.name)}</b> on each image alone; n/a where the curves "
             "do not overlap on that image or it was not measured.</p>",
             '<table class="images"><tr><th>image</th>'
             + "".join(f"<th>{html.escape(curve.name)}</th>" for curve in tested) + "</tr>"]
    for name in names:
        cells = []
        for curve in tested:
            try:
                rate = bd(*_image_curve(anchor, name), *_image_curve(curve, name),
                          method).rate_percent
            except TrellicError:
                rate = None
            cells.append(_cell(rate, " %", True))
        lines.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _provenance_table(curves: list[Results], labels: list[str]) -> str:
    lines = ['<table class="wide"><tr><th>curve</th><th>file</th><th>encoder</th><th>points</th>'
             "<th>bpp range</th><th>dataset</th><th>git commit</th><th>source</th></tr>"]
    for curve, label in zip(curves, labels, strict=True):
        rates = [p.bpp for p in curve.points]
        images = curve.dataset.size() or "?"
        lines.append(
            f"<tr><td>{html.escape(curve.name)}</td><td>{html.escape(label)}</td>"
            f"<td>{html.escape(curve.encoder)}</td><td>{len(curve.points)}</td>"
            f"<td>{min(rates):.3f} to {max(rates):.3f}</td>"
            f"<td>{html.escape(curve.dataset.name)} ({images} images)</td>"
            f"<td>{html.escape(curve.git_commit or '')}</td>"
            f"<td>{html.escape(curve.source or '')}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def choose_anchor(curves: list[Results], labels: list[str], anchor: str | None) -> Results:
    """The curve named by ``anchor`` (its file, name or codec); the first one if None."""
    if anchor is None:
        return curves[0]
    for curve, label in zip(curves, labels, strict=True):
        if anchor in (label, Path(label).name, Path(label).stem, curve.name, curve.codec):
            return curve
    raise TrellicError(f"anchor {anchor!r} is none of the curves: "
                       f"{', '.join(curve.name for curve in curves)}")


def render_report(curves: list[Results], labels: list[str], anchor: Results, plot_png: bytes,
                  crops: CropSet | None, crop_note: str | None = None,
                  method: str = "pchip") -> str:
    """The whole page as one HTML string."""
    others = [curve for curve in curves if curve is not anchor]
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    datasets = datasets_label(curves)
    crop_html = (_crops_section(crops, curves) if crops and crops.rows
                 else f"<p>{html.escape(crop_note or 'No crops: no measured curve.')}</p>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>trellic rate-distortion report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>trellic rate-distortion report</h1>",
        f"<p>Dataset: {html.escape(datasets)}. Generated {created}. Rates count every byte of "
        "the coded file; PSNR-RGB and MS-SSIM-RGB are averaged over images per point.</p>",
        "<h2>Rate-distortion curves</h2>", _image(plot_png, "RD curves", "rd"),
        "<h2>Bjontegaard deltas</h2>", _bd_table(anchor, bd_rows(anchor, others, method), method),
        "<h2>Crops at similar rates</h2>", crop_html,
        "<h2>Points</h2>", _points_table(curves),
        "<h2>Per image</h2>", _images_table(anchor, others, method),
        "<h2>Curves</h2>", _provenance_table(curves, labels),
        "</body></html>", ""])
