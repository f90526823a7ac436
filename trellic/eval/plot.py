"""Rate-distortion plots: PSNR-RGB and MS-SSIM-RGB (in dB) against bpp, one line per curve.

Matplotlib is an optional extra (``pip install 'trellic[plot]'``); it is imported only
when a plot is drawn, through its object API (no pyplot, no global backend state).
Every curve gets its own (colour, marker) pair (:func:`curve_styles`); measured curves
are solid lines with filled markers, published reference curves dashed with open ones.
The legend sits below the panels, in as many columns as its longest label allows, and
the file (PNG, SVG or PDF) is cropped to everything drawn, so no entry is ever cut off.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from trellic.errors import TrellicError
from trellic.eval.results import Results

# tab10, five dark hues of tab20b, then tab10's light twins (tab20): 25 colours, the
# strongest first; seven markers, so the (colour, marker) pairs repeat only after
# lcm(25, 7) = 175 curves and a light colour never meets the marker of its dark twin.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
WIDTH_INCHES = 12.0
FORMATS = ("png", "svg", "pdf")  # by the output's extension
# The rate axis' right end: below 0.01 bpp no codec has a point; 32 bpp is above 8-bit RGB
# stored raw (24 bpp) with room for small images' headers.
MAX_BPP_RANGE = (0.01, 32.0)


@dataclass(frozen=True)
class LineStyle:
    """How one curve is drawn: keyword arguments for ``Axes.plot``."""

    color: tuple[float, float, float]
    marker: str
    linestyle: str
    filled: bool

    def kwargs(self) -> dict:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle,
                "markersize": 4.5, "markerfacecolor": self.color if self.filled else "none"}


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as CompressAI plots it."""
    return -10 * math.log10(max(1 - value, 1e-12))


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TrellicError("plotting needs matplotlib: pip install 'trellic[plot]'") from None


def make_figure(**options):
    """A matplotlib Figure (object API, no pyplot); TrellicError if matplotlib is missing."""
    _require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(**options)


def curve_styles(dashed: list[bool]) -> list[LineStyle]:
    """One distinct style per curve; ``dashed[i]``: curve i is drawn dashed with open markers
    (published curves, in :func:`rd_figure`), else solid with filled ones."""
    _require_matplotlib()
    from matplotlib import colormaps

    twins = colormaps["tab20"].colors
    colours = [*twins[0::2], *colormaps["tab20b"].colors[0::4], *twins[1::2]]
    return [LineStyle(tuple(colours[i % len(colours)]), _MARKERS[i % len(_MARKERS)],
                      "--" if dash else "-", not dash)
            for i, dash in enumerate(dashed)]


def legend_columns(labels: list[str], width_inches: float = WIDTH_INCHES,
                   fontsize: float = 9) -> int:
    """How many legend columns of these labels fit across the figure (at most 4)."""
    char_inches = 0.55 * fontsize / 72  # a typical sans-serif glyph is ~0.55 em wide
    column = 0.6 + char_inches * max((len(label) for label in labels), default=1)
    return max(1, min(4, len(labels), int(width_inches // column)))


def rd_figure(curves: list[Results], max_bpp: float = 2.0, title: str | None = None,
              dpi: int = 110):
    """Two panels (PSNR, MS-SSIM dB) against bpp up to ``max_bpp``: a matplotlib Figure."""
    if not curves:
        raise TrellicError("nothing to plot: no curves given")
    labels = [curve.name for curve in curves]
    columns = legend_columns(labels)
    rows = -(-len(curves) // columns)
    figure = make_figure(figsize=(WIDTH_INCHES, 5 + 0.22 * rows), dpi=dpi, layout="constrained")
    panels = figure.subplots(1, 2)
    styles = curve_styles([curve.codec == "reference" for curve in curves])
    metrics = (("psnr_rgb", "PSNR-RGB (dB)", float),
               ("ms_ssim_rgb", "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)", ms_ssim_db))
    for panel, (field, label, transform) in zip(panels, metrics, strict=True):
        shown: list[float] = []
        for curve, style in zip(curves, styles, strict=True):
            points = [p for p in curve.points if getattr(p, field) is not None]
            if not points:
                continue
            x = [p.bpp for p in points]
            y = [transform(getattr(p, field)) for p in points]
            shown += [value for bpp, value in zip(x, y, strict=True) if bpp <= max_bpp]
            panel.plot(x, y, label=curve.name, **style.kwargs())
        panel.set_xlim(0, max_bpp)
        if shown:
            margin = 0.03 * (max(shown) - min(shown) or 1)
            panel.set_ylim(min(shown) - margin, max(shown) + margin)
        panel.set_xlabel("bits per pixel (bpp)")
        panel.set_ylabel(label)
        panel.grid(True, alpha=0.3)
    handles, names = panels[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncols=columns, fontsize=9,
                  frameon=False)
    figure.suptitle(title or f"Rate-distortion on {datasets_label(curves)}")
    return figure


def datasets_label(curves: list[Results]) -> str:
    """The curves' image sets with their image counts, e.g. ``k3 (3 images), kodak (24 images)``."""
    return ", ".join(sorted({curve.dataset.label() for curve in curves}))


def plot_format(path: str | Path) -> str:
    """The file format of a plot output, from its extension: one of FORMATS (else an error)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise TrellicError(f"a plot is written as {', '.join(f'.{f}' for f in FORMATS)} (by the "
                           f"output's extension), not {Path(path).suffix or 'without one'}: "
                           f"{path}")
    return suffix


def empty_range_warning(curves: list[Results], max_bpp: float) -> str | None:
    """A warning where no point of any curve lies at or below ``max_bpp`` (empty panels)."""
    lowest = min((point.bpp for curve in curves for point in curve.points), default=None)
    if lowest is None or lowest <= max_bpp:
        return None
    return (f"no point lies at or below --max-bpp {max_bpp:g} (the lowest rate is "
            f"{lowest:.3f} bpp): the panels are empty")


def figure_bytes(figure, fmt: str = "png") -> bytes:
    """The figure in ``fmt`` (one of FORMATS), cropped to (or grown to) everything drawn,
    legend included."""
    if fmt not in FORMATS:
        raise TrellicError(f"unknown plot format {fmt!r}; choose from {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.1)
    return buffer.getvalue()


def png_bytes(figure) -> bytes:
    """The figure as PNG (:func:`figure_bytes`)."""
    return figure_bytes(figure, "png")


def rd_plot(curves: list[Results], max_bpp: float = 2.0, title: str | None = None,
            dpi: int = 110, fmt: str = "png") -> bytes:
    """:func:`rd_figure` as the bytes of a ``fmt`` file (png, svg or pdf)."""
    return figure_bytes(rd_figure(curves, max_bpp, title, dpi), fmt)


def rd_plot_png(curves: list[Results], max_bpp: float = 2.0, title: str | None = None,
                dpi: int = 110) -> bytes:
    """:func:`rd_figure` as PNG bytes."""
    return rd_plot(curves, max_bpp, title, dpi)
