"""Pixels to uint8 sRGB: image modes to RGB, and colour management (what trellic codes is sRGB).

Every image mode Pillow opens is converted to RGB by a stated rule or refused
(:func:`to_rgb`, the input policy of :mod:`trellic.io`).

An image whose embedded ICC profile is not sRGB is converted with littleCMS
(Pillow's ImageCms); a PNG whose ``gAMA`` is not sRGB's 1/2.2 (and that has no
``sRGB`` chunk or profile) has its gamma undone and the sRGB curve applied. The
decoded PNGs carry an ``sRGB`` chunk (:func:`trellic.io.encode_png`), so an image
looks the same in a colour-managed viewer before and after coding.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from trellic.errors import TrellicError

COLOUR_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")  # Pillow converts
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # alpha dropped, colour converted by Pillow
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
FULL_SCALE = {**dict.fromkeys(SIXTEEN_BIT_MODES, 65535), "I": 65535, "F": 1}  # sample -> 255


def to_rgb(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert a Pillow image to uint8 RGB (H, W, 3) by the input policy of trellic.io.

    Raises:
        TrellicError: a mode outside the policy, or samples outside the range of their mode.
    """
    if {"A", "a"} & set(image.getbands()) or "transparency" in image.info:
        warnings.warn(f"{name}: alpha channel dropped (trellic codes RGB only)", stacklevel=3)
    if image.mode in FULL_SCALE:
        gray = _scale_to_8_bits(np.asarray(image), FULL_SCALE[image.mode], image.mode, name)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "La":  # premultiplied: Pillow converts it to RGB only through LA
        image = image.convert("LA")
    if image.mode not in COLOUR_MODES + ALPHA_MODES:
        raise TrellicError(f"cannot read image {name}: unsupported image mode {image.mode}")
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise TrellicError(f"cannot read image {name}: unsupported image layout {array.shape}")
    return array


def _scale_to_8_bits(samples: np.ndarray, full_scale: float, mode: str, name: str) -> np.ndarray:
    """Single-channel samples in [0, full_scale] -> uint8 by round(v / full_scale * 255)."""
    samples = samples.astype(np.float64)
    if samples.size and not (np.isfinite(samples).all() and samples.min() >= 0
                             and samples.max() <= full_scale):
        finite = samples[np.isfinite(samples)]
        found = f"{finite.min():g} to {finite.max():g}" if finite.size else "none finite"
        if finite.size < samples.size:
            found += ", and non-finite values"
        raise TrellicError(f"cannot read image {name}: mode {mode} samples must lie in "
                           f"[0, {full_scale:g}] (found {found})")
    return np.round(samples / full_scale * 255.0).astype(np.uint8)


def to_srgb_rgb(image: Image.Image, name: str = "image") -> np.ndarray:
    """:func:`to_rgb`, then colour-managed to sRGB: an embedded ICC profile other than
    sRGB is applied with littleCMS (Pillow's ImageCms), else a PNG ``gAMA`` other than
    sRGB's 1/2.2 (without an ``sRGB`` chunk) is undone and the sRGB curve applied.

    What trellic codes and decodes is sRGB (decoded PNGs carry an ``sRGB`` chunk), so an
    image looks the same in a colour-managed viewer before and after. A profile that
    littleCMS cannot read or apply is ignored with a warning (read as sRGB).
    """
    profile = _embedded_profile(image, name)
    if profile is not None and (image.mode, _space(profile)) in (("CMYK", "CMYK"),
                                                                 ("L", "GRAY")):
        image = _apply_profile(image, profile, name) or image  # before Pillow's plain rule
        profile = None
    rgb = to_rgb(image, name)
    if profile is not None:
        if _space(profile) == "RGB":
            converted = _apply_profile(Image.fromarray(rgb, "RGB"), profile, name)
            if converted is not None:
                rgb = np.asarray(converted, dtype=np.uint8)
        else:
            warnings.warn(f"{name}: ICC profile of a {_space(profile)} colour space for a "
                          f"{image.mode} image ignored (read as sRGB)", stacklevel=3)
    elif "gamma" in image.info and "srgb" not in image.info:
        rgb = _gamma_to_srgb(rgb, image.info["gamma"])
    return rgb


def _embedded_profile(image: Image.Image, name: str):
    """The image's ICC profile (ImageCms), None when it has none or it is sRGB."""
    from PIL import ImageCms

    icc = image.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile) or ""
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        warnings.warn(f"{name}: unreadable ICC profile ignored (read as sRGB)", stacklevel=4)
        return None
    return None if "srgb" in description.lower() else profile


def _space(profile) -> str:
    return str(profile.profile.xcolor_space).strip()


def _apply_profile(image: Image.Image, profile, name: str) -> Image.Image | None:
    """The image converted from ``profile`` to sRGB (RGB), None (with a warning) on failure."""
    from PIL import ImageCms

    try:
        return ImageCms.profileToProfile(image, profile, srgb_profile(), outputMode="RGB")
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.warn(f"{name}: ICC profile not applied ({message}; read as sRGB)",
                      stacklevel=4)
        return None


def srgb_profile():
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


SRGB_GAMMA = 1 / 2.2  # the gAMA value PNG writers store for sRGB (45455)


def _gamma_to_srgb(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """8-bit samples of a PNG with file gamma ``gamma`` (sample = light ** gamma) -> sRGB."""
    if not (isinstance(gamma, float | int) and 0.01 <= gamma <= 100):
        return rgb  # absurd or absent: read as sRGB, as viewers do
    if abs(gamma - SRGB_GAMMA) <= 0.01 * SRGB_GAMMA:
        return rgb
    light = (np.arange(256) / 255.0) ** (1.0 / gamma)
    encoded = np.where(light <= 0.0031308, 12.92 * light, 1.055 * light ** (1 / 2.4) - 0.055)
    lut = np.round(np.clip(encoded, 0, 1) * 255).astype(np.uint8)
    return lut[rgb]
