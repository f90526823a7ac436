"""Rate-distortion plots: PSNR-RGB and MS-SSIM-RGB (in dB) against bpp, one line per curve.

Matplotlib is an optional extra (``pip install 'trellic[plot]'``); it is imported only
when a plot is drawn, through its object API (no pyplot, no global backend state).
Measured curves are solid lines, published reference curves dashed.
"""

from __future__ import annotations

import io
import math

from trellic.errors import TrellicError
from trellic.eval.results import Results


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as CompressAI plots it."""
    return -10 * math.log10(max(1 - value, 1e-12))


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TrellicError("plotting needs matplotlib: pip install 'trellic[plot]'") from None
    return Figure


def rd_plot_png(curves: list[Results], max_bpp: float = 2.0, title: str | None = None,
                dpi: int = 110) -> bytes:
    """Two panels (PSNR, MS-SSIM dB) against bpp up to ``max_bpp``, as PNG bytes."""
    if not curves:
        raise TrellicError("nothing to plot: no curves given")
    rows = -(-len(curves) // 4)
    figure = _figure_class()(figsize=(12, 5 + 0.25 * rows), dpi=dpi, layout="constrained")
    panels = figure.subplots(1, 2)
    metrics = (("psnr_rgb", "PSNR-RGB (dB)", float),
               ("ms_ssim_rgb", "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)", ms_ssim_db))
    for panel, (field, label, transform) in zip(panels, metrics, strict=True):
        shown: list[float] = []
        for index, curve in enumerate(curves):
            points = [p for p in curve.points if getattr(p, field) is not None]
            if not points:
                continue
            x = [p.bpp for p in points]
            y = [transform(getattr(p, field)) for p in points]
            shown += [value for bpp, value in zip(x, y, strict=True) if bpp <= max_bpp]
            reference = curve.codec == "reference"
            panel.plot(x, y, linestyle="--" if reference else "-",
                       marker="o" if reference else "s", markersize=3.5,
                       markerfacecolor="none" if reference else None,
                       color=f"C{index % 10}", label=curve.name)
        panel.set_xlim(0, max_bpp)
        if shown:
            margin = 0.03 * (max(shown) - min(shown) or 1)
            panel.set_ylim(min(shown) - margin, max(shown) + margin)
        panel.set_xlabel("bits per pixel (bpp)")
        panel.set_ylabel(label)
        panel.grid(True, alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
                  fontsize=9, frameon=False)
    datasets = sorted({curve.dataset.name for curve in curves})
    figure.suptitle(title or f"Rate-distortion on {', '.join(datasets)}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
