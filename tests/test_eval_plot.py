"""RD plots: every curve has its own style, and the legend is drawn whole, off the panels."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from trellic.eval.plot import curve_styles, legend_columns, png_bytes, rd_figure
from trellic.eval.results import Dataset, Point, Results

pytest.importorskip("matplotlib")


def _curves(count: int) -> list[Results]:
    """``count`` curves with labels as long as the zoo's, every third one published."""
    curves = []
    for index in range(count):
        points = [Point(f"p{i}", bpp=0.1 * (i + 1) * (1 + index / 50), psnr_rgb=28 + 2 * i,
                        ms_ssim_rgb=0.9 + i / 50) for i in range(5)]
        curves.append(Results(name=f"trellic zoo, TCQ-4 hyper+decoder retrained {index:02d}",
                              codec="reference" if index % 3 == 0 else "trellic",
                              encoder="test", dataset=Dataset("kodak"), points=points))
    return curves


def _style(line) -> tuple:
    return (tuple(line.get_color()), line.get_marker(), line.get_linestyle())


def test_sixteen_curves_have_sixteen_distinct_styles_in_both_panels_and_legend():
    curves = _curves(16)
    figure = rd_figure(curves)
    legend = figure.legends[0]
    legend_styles = {text.get_text(): _style(handle)
                     for text, handle in zip(legend.get_texts(), legend.legend_handles,
                                             strict=True)}
    assert list(legend_styles) == [curve.name for curve in curves]
    for panel in figure.axes:
        lines = panel.get_lines()
        assert len({_style(line) for line in lines}) == 16
        assert len({line.get_color() for line in lines}) == 16  # colour alone tells them apart
        # each legend entry is drawn exactly like the line of the same curve
        assert all(legend_styles[line.get_label()] == _style(line) for line in lines)


def test_legend_lies_inside_the_saved_figure_and_off_the_panels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = rd_figure(_curves(16))
    FigureCanvasAgg(figure)  # a canvas with a renderer to measure the drawn legend with
    png = png_bytes(figure)  # draws the figure
    renderer = figure.canvas.get_renderer()
    box = figure.legends[0].get_window_extent(renderer)
    canvas = figure.bbox
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1
    assert canvas.y0 <= box.y0 and box.y1 <= canvas.y1
    assert not any(box.overlaps(panel.get_window_extent(renderer)) for panel in figure.axes)
    saved = figure.get_tightbbox(renderer)  # inches: what bbox_inches="tight" keeps
    inches = box.transformed(figure.dpi_scale_trans.inverted())
    assert saved.x0 <= inches.x0 and inches.x1 <= saved.x1
    assert saved.y0 <= inches.y0 and inches.y1 <= saved.y1
    width, height = Image.open(io.BytesIO(png)).size
    assert abs(width - (saved.width + 0.2) * figure.dpi) <= 2  # 0.1 inch padding each side
    assert abs(height - (saved.height + 0.2) * figure.dpi) <= 2


def test_styles_stay_distinct_beyond_the_palette_and_references_are_dashed():
    styles = curve_styles([index % 2 == 0 for index in range(60)])
    assert len({(s.color, s.marker, s.linestyle) for s in styles}) == 60
    assert {s.linestyle for s in styles[0::2]} == {"--"} and not any(s.filled for s in styles[::2])
    assert {s.linestyle for s in styles[1::2]} == {"-"} and all(s.filled for s in styles[1::2])


def test_legend_columns_shrink_as_labels_grow():
    assert legend_columns(["JPEG"] * 8) == 4
    assert legend_columns(["x" * 50] * 8) < legend_columns(["x" * 20] * 8)
    assert legend_columns(["x" * 400]) == 1
