"""Crop targets lie where every curve reaches, on the crop's own image; error maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trellic.errors import TrellicError
from trellic.eval.crops import (
    abs_error,
    check_targets,
    choose_targets,
    common_range,
    heat_map,
    image_rate,
)
from trellic.eval.results import Dataset, ImageResult, Point, Results


def _curve(name: str, rates: list[float], on_image: list[float] | None = None) -> Results:
    """A curve with these mean rates; ``on_image``: its rates on kodim23.png."""
    points = []
    for index, rate in enumerate(rates):
        images = [] if on_image is None else [
            ImageResult("kodim23.png", 768, 512, 1, on_image[index], 30.0, 0.95, 0.1, 0.1)]
        points.append(Point(f"p{index}", bpp=rate, psnr_rgb=30 + index, images=images))
    return Results(name, "jpeg", "test", Dataset("kodak"), points)


def test_targets_lie_where_every_curve_reaches_on_the_image_not_at_the_mean_rates():
    # the case: the learned curve stops at 0.31 bpp on the crop's image, JPEG goes on
    learned = _curve("learned", [0.16, 0.3, 0.5, 0.8], on_image=[0.1, 0.17, 0.24, 0.31])
    jpeg = _curve("jpeg", [0.1 * 1.3**i for i in range(12)],
                  on_image=[0.09 * 1.3**i for i in range(12)])
    assert common_range([learned, jpeg], "kodim23.png") == (0.1, 0.31)
    targets = choose_targets([learned, jpeg], "kodim23.png")
    assert len(targets) == 2 and all(0.1 <= t <= 0.31 for t in targets)
    middle = math.sqrt(0.1 * 0.31)
    assert targets[0] <= middle <= targets[1]  # one per half of the range
    for curve in (learned, jpeg):  # every curve has a point within 15% of each target
        for target in targets:
            nearest = min((image_rate(p, "kodim23.png") for p in curve.points),
                          key=lambda rate, target=target: abs(math.log(rate / target)))
            assert abs(math.log(nearest / target)) < math.log(1.15)
    check_targets([learned, jpeg], "kodim23.png", targets)
    with pytest.raises(TrellicError, match=r"outside the rates every curve reaches on "
                                           r"kodim23.png: 0.100 to 0.310 bpp"):
        check_targets([learned, jpeg], "kodim23.png", [0.5])


def test_an_image_without_per_image_results_uses_the_mean_rates():
    curve = _curve("a", [0.2, 0.4, 0.6], on_image=[0.25, 0.5, 0.7])
    assert image_rate(curve.points[0], "kodim23.png") == 0.25
    assert image_rate(curve.points[0], "other.png") == 0.2
    assert common_range([curve], "other.png") == (0.2, 0.6)


def test_curves_that_share_no_rate_are_refused():
    with pytest.raises(TrellicError, match="no rate is reached by every curve on x.png"):
        common_range([_curve("low", [0.1, 0.2]), _curve("high", [0.5, 0.9])], "x.png")


def test_a_single_common_rate_gives_one_target():
    targets = choose_targets([_curve("a", [0.1, 0.3]), _curve("b", [0.3, 0.9])], "x.png")
    assert targets == [0.3]


def test_error_map_runs_black_to_white_on_the_row_scale():
    original = np.zeros((2, 2, 3), np.uint8)
    reconstruction = np.array([[[0, 0, 0], [3, 3, 3]], [[6, 6, 6], [255, 0, 0]]], np.uint8)
    error = abs_error(original, reconstruction)
    assert error.tolist() == [[0, 3], [6, 85]]
    rgb = heat_map(error, scale=6)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 0].tolist() == [255, 255, 255]
    assert rgb[1, 1].tolist() == [255, 255, 255]  # above the scale: clipped to white
    assert rgb[0, 1].tolist() == [255, 128, 0]  # half way: red full, green half, no blue
