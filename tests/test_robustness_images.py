"""Every kind of input image: the reading policy of trellic.io, through the CLI where it matters.

Images are made here with Pillow (or, for 16-bit RGB and lying headers, by
writing PNG chunks), never committed.
"""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.codec import MAX_PIXELS, Codec
from trellic.colour import ALPHA_MODES, COLOUR_MODES, FULL_SCALE, to_rgb
from trellic.errors import TrellicError
from trellic.io import list_images, read_image
from trellic.quant import make_quantizer


def png_bytes(width: int, height: int, depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A PNG from raw scanlines (filter bytes included), for what Pillow cannot write."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows))
            + chunk(b"IEND", b""))


def test_grayscale_and_bilevel_become_equal_rgb_channels(tmp_path):
    gray = synthetic_image(12, 20)[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    Image.fromarray(gray > 128).save(tmp_path / "b.png")
    rgb = read_image(tmp_path / "g.png")
    assert rgb.shape == (12, 20, 3) and (rgb == gray[..., None]).all()
    assert set(np.unique(read_image(tmp_path / "b.png"))) <= {0, 255}


def test_rgba_drops_alpha_with_a_one_line_warning(tmp_path, tiny_weights, capsys):
    rgba = np.dstack([synthetic_image(16, 16), np.full((16, 16), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        assert (read_image(tmp_path / "a.png") == rgba[..., :3]).all()
    assert main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.trl"),
                 "--model", str(tiny_weights[0])]) == 0
    err = capsys.readouterr().err
    assert err.startswith("trellic: warning:") and err.count("\n") == 1 and "alpha" in err


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_images_are_expanded(tmp_path, transparent):
    image = Image.fromarray(synthetic_image(10, 14)).convert("P", palette=Image.Palette.ADAPTIVE)
    options = {"transparency": 0} if transparent else {}
    image.save(tmp_path / "p.png", **options)
    expected = np.asarray(image.convert("RGB"))
    if transparent:
        with pytest.warns(UserWarning, match="alpha"):
            assert (read_image(tmp_path / "p.png") == expected).all()
    else:
        assert (read_image(tmp_path / "p.png") == expected).all()


def test_16_bit_grayscale_is_scaled_by_its_bit_depth_not_its_content(tmp_path):
    dark = (np.arange(64).reshape(8, 8) * 3).astype(np.uint16)  # max 189: still a 16-bit image
    Image.fromarray(dark).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    expected = np.round(dark / 65535 * 255).astype(np.uint8)
    assert (read_image(tmp_path / "g16.png") == expected[..., None]).all()


def test_16_bit_rgb_keeps_the_high_byte(tmp_path):
    samples = np.zeros((3, 5, 3), dtype=">u2")
    samples[..., 0], samples[..., 1], samples[..., 2] = 0xFFFF, 0x80FF, 0x00FF
    rows = b"".join(b"\x00" + row.tobytes() for row in samples)
    (tmp_path / "rgb16.png").write_bytes(png_bytes(5, 3, 16, 2, rows))
    assert (read_image(tmp_path / "rgb16.png") == [255, 128, 0]).all()


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.new("CMYK", (24, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    rgb = read_image(tmp_path / "c.jpg")
    assert rgb.shape == (16, 24, 3)
    assert rgb[..., 0].min() > 200 and rgb[..., 1:].max() < 60  # red


def test_exif_orientation_is_applied(tmp_path):
    array = synthetic_image(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(array).save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb = read_image(tmp_path / "r.jpg")
    assert rgb.shape == (30, 20, 3)
    expected = np.rot90(array, k=-1).astype(int)
    assert np.abs(rgb.astype(int) - expected).mean() < 12  # JPEG loss only


def test_first_frame_of_an_animation_is_read_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((250, 0, 0), (0, 250, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=rf"^{tmp_path / 'a.gif'}: 2 frames, coding the first$"):
        assert read_image(tmp_path / "a.gif")[0, 0, 0] > 200


def test_a_multi_page_tiff_warns_and_a_single_frame_does_not(tmp_path, tiny_weights, capsys):
    pages = [Image.fromarray(synthetic_image(16, 16)) for _ in range(3)]
    pages[0].save(tmp_path / "p.tif", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "one.tif")
    with pytest.warns(UserWarning, match="p.tif: 3 frames, coding the first"):
        read_image(tmp_path / "p.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "one.tif")
    assert main(["compress", str(tmp_path / "p.tif"), str(tmp_path / "p.trl"),
                 "--model", str(tiny_weights[0])]) == 0
    err = capsys.readouterr().err
    assert err == f"trellic: warning: {tmp_path / 'p.tif'}: 3 frames, coding the first\n"


def _linear_rgb_icc() -> bytes:
    """A minimal ICC v2 display profile: sRGB's primaries (D50-adapted) with a linear (gamma
    1.0) tone curve, i.e. linear-light RGB, as a raw or HDR-derived PNG may carry."""
    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    text = b"linear RGB (test)\x00"
    desc = (b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8)
            + bytes(3) + bytes(67))
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve),
            (b"bTRC", curve), (b"cprt", b"text" + bytes(4) + b"none\x00" + bytes(3))]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr"
              + b"RGB " + b"XYZ " + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0)
              + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + table + data


LINEAR_GREY_IN_SRGB = 188  # linear light 128/255 -> the sRGB curve


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_an_icc_profile_other_than_srgb_is_converted_to_srgb(tmp_path, fmt):
    grey = np.full((8, 8, 3), 128, np.uint8)
    path = tmp_path / f"linear.{fmt.lower()}"
    Image.fromarray(grey).save(path, format=fmt, icc_profile=_linear_rgb_icc(),
                               **({"quality": 100} if fmt == "JPEG" else {}))
    rgb = read_image(path)
    assert np.abs(rgb.astype(int) - LINEAR_GREY_IN_SRGB).max() <= 2, rgb[0, 0]


def test_an_srgb_profile_and_an_untagged_image_are_read_unchanged(tmp_path):
    from PIL import ImageCms

    array = synthetic_image(16, 16)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(array).save(tmp_path / "s.png", icc_profile=srgb)
    Image.fromarray(array).save(tmp_path / "u.png")
    assert (read_image(tmp_path / "s.png") == array).all()
    assert (read_image(tmp_path / "u.png") == array).all()


def test_a_lab_profile_on_a_lab_image_and_a_broken_profile(tmp_path):
    from PIL import ImageCms

    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(synthetic_image(8, 8)).save(tmp_path / "rgb_lab.png", icc_profile=lab)
    with pytest.warns(UserWarning, match="ICC profile of a Lab colour space for a RGB image "
                                         "ignored"):
        assert read_image(tmp_path / "rgb_lab.png").shape == (8, 8, 3)
    Image.fromarray(synthetic_image(8, 8)).save(tmp_path / "bad.png", icc_profile=b"\0" * 200)
    with pytest.warns(UserWarning, match="bad.png: unreadable ICC profile ignored"):
        assert read_image(tmp_path / "bad.png").shape == (8, 8, 3)


@pytest.mark.parametrize(("gamma", "expected"), [(100000, LINEAR_GREY_IN_SRGB), (45455, 128),
                                                 (45000, 128)])
def test_a_png_gama_chunk_is_converted_to_srgb(tmp_path, gamma, expected):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", gamma))
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(tmp_path / "g.png", pnginfo=info)
    assert Image.open(tmp_path / "g.png").info["gamma"] == pytest.approx(gamma / 100000)
    assert (read_image(tmp_path / "g.png") == expected).all()


def test_gama_next_to_an_srgb_chunk_is_ignored(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add(b"sRGB", b"\x00")
    info.add(b"gAMA", struct.pack(">I", 100000))  # contradicts sRGB: the sRGB chunk wins
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(tmp_path / "g.png", pnginfo=info)
    assert (read_image(tmp_path / "g.png") == 128).all()


@pytest.mark.parametrize("size", [(1, 1), (8, 10000)])
def test_tiny_and_very_wide_images_round_trip_through_the_cli(tmp_path, tiny_weights, size):
    array = synthetic_image(*size)
    Image.fromarray(array).save(tmp_path / "in.png")
    weights = str(tiny_weights[0])
    assert main(["compress", str(tmp_path / "in.png"), str(tmp_path / "a.trl"), "--model", weights,
                 "--quantizer", "tcq8"]) == 0
    assert main(["decompress", str(tmp_path / "a.trl"), str(tmp_path / "out.png"),
                 "--model", weights]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (*size, 3)


def test_an_image_over_the_codec_limit_is_refused_from_its_header(tmp_path, tiny_weights, capsys):
    """8000x6000: refused before a pixel is decoded (the IDAT here holds one row only)."""
    (tmp_path / "huge.png").write_bytes(png_bytes(8000, 6000, 8, 2, b"\x00" * (1 + 3 * 8000)))
    argv = ["compress", str(tmp_path / "huge.png"), str(tmp_path / "h.trl"),
            "--model", str(tiny_weights[0])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"exceeds the supported maximum of {MAX_PIXELS} pixels" in err and err.count("\n") == 1
    with pytest.raises(TrellicError, match="exceeds the supported maximum"):
        Codec(tiny_weights[1], make_quantizer("usq")).encode(np.zeros((6000, 8000, 3), np.uint8))


def test_absurd_header_sizes_and_broken_files_are_one_line_errors(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_bytes(30000, 30000, 8, 2, b"\x00"))
    (tmp_path / "cut.png").write_bytes(png_bytes(64, 64, 8, 2, b"\x00" * (64 * 193))[:-40])
    Image.fromarray(synthetic_image(32, 32)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    (tmp_path / "text.png").write_text("hello")
    for name, message in (("bomb.png", "exceeds"), ("cut.png", "cannot read image"),
                          ("cut.jpg", "cannot read image"), ("text.png", "cannot read image")):
        with pytest.raises(TrellicError, match=message) as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_4000x3000_image_codes_and_an_8000x6000_one_is_refused(tmp_path, tiny_weights, capsys):
    model = ["--model", str(tiny_weights[0])]
    Image.fromarray(synthetic_image(3000, 4000)).save(tmp_path / "big.png")
    assert main(["compress", str(tmp_path / "big.png"), str(tmp_path / "b.trl"), *model]) == 0
    assert main(["decompress", str(tmp_path / "b.trl"), str(tmp_path / "b.png"), *model]) == 0
    assert Image.open(tmp_path / "b.png").size == (4000, 3000)
    Image.new("RGB", (8000, 6000)).save(tmp_path / "huge.png")
    capsys.readouterr()
    assert main(["compress", str(tmp_path / "huge.png"), str(tmp_path / "h.trl"), *model]) == 1
    assert "exceeds the supported maximum" in capsys.readouterr().err


def test_every_pillow_mode_has_a_rule():
    assert set(Image.MODES) <= set(COLOUR_MODES + ALPHA_MODES) | set(FULL_SCALE)


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_mode_converts_to_rgb_or_is_refused_in_one_line(mode):
    image = Image.new(mode, (5, 4))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alpha dropped
            rgb = to_rgb(image)
    except TrellicError as error:
        assert "\n" not in str(error) and mode in str(error)
    else:
        assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)


def test_premultiplied_gray_with_alpha_is_unpremultiplied_then_expanded():
    image = Image.new("La", (2, 2), (100, 128))
    with pytest.warns(UserWarning, match="alpha"):
        rgb = to_rgb(image)
    assert (rgb == np.asarray(image.convert("LA").convert("L"))[..., None]).all()


def test_float_images_in_0_1_are_scaled_to_8_bits(tmp_path):
    ramp = np.linspace(0, 1, 12 * 40, dtype=np.float32).reshape(12, 40)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    expected = np.round(ramp.astype(np.float64) * 255).astype(np.uint8)
    assert (read_image(tmp_path / "f.tif") == expected[..., None]).all()


@pytest.mark.parametrize("bad, found", [(1.5, "0 to 1.5"), (-0.25, "-0.25 to 0.9"),
                                        (np.nan, "0 to 0.9, and non-finite values"),
                                        (np.inf, "0 to 0.9, and non-finite values")])
def test_float_images_outside_0_1_are_refused_in_one_line(tmp_path, bad, found):
    samples = np.full((6, 8), 0.9, dtype=np.float32)
    samples[0, :4] = 0
    samples[1, 1] = bad
    Image.fromarray(samples).save(tmp_path / "f.tif")
    with pytest.raises(TrellicError) as info:
        read_image(tmp_path / "f.tif")
    assert str(info.value) == (f"cannot read image {tmp_path / 'f.tif'}: mode F samples must lie "
                               f"in [0, 1] (found {found})")


def test_16_bit_and_32_bit_integer_tiffs_are_scaled_as_0_to_65535(tmp_path):
    samples = np.arange(0, 65536, 257, dtype=np.uint16).reshape(1, -1).repeat(3, axis=0)
    Image.fromarray(samples).save(tmp_path / "g16.tif")
    Image.fromarray(samples.astype(np.int32)).save(tmp_path / "i32.tif")
    assert [Image.open(tmp_path / f).mode for f in ("g16.tif", "i32.tif")] == ["I;16", "I"]
    for name in ("g16.tif", "i32.tif"):
        assert (read_image(tmp_path / name) == np.arange(256, dtype=np.uint8)[:, None]).all()


@pytest.mark.parametrize("bad", [65536, -1, 2**31 - 1])
def test_32_bit_integers_outside_16_bits_are_refused(tmp_path, bad):
    samples = np.zeros((4, 4), dtype=np.int32)
    samples[2, 2] = bad
    Image.fromarray(samples).save(tmp_path / "i.tif")
    with pytest.raises(TrellicError, match=r"mode I samples must lie in \[0, 65535\]"):
        read_image(tmp_path / "i.tif")


def test_float_image_codes_through_the_cli_like_its_8_bit_version(tmp_path, tiny_weights):
    ramp = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    gray = np.round(ramp.astype(np.float64) * 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    weights = str(tiny_weights[0])
    for name in ("f.tif", "g.png"):
        assert main(["compress", str(tmp_path / name), str(tmp_path / f"{name}.trl"),
                     "--model", weights]) == 0
    assert (tmp_path / "f.tif.trl").read_bytes() == (tmp_path / "g.png.trl").read_bytes()


def test_one_lister_for_every_command(tmp_path):
    """Same accepted types everywhere; sub-folders on request; hidden files skipped; sorted."""
    for name in ("b.png", "a.JPG", "c.tif", "d.webp", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.tiff").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    flat = ["a.JPG", "b.png", "c.tif", "d.webp"]
    assert [p.name for p in list_images(tmp_path)] == flat
    assert [p.name for p in list_images([tmp_path], recursive=True)] == flat + ["e.tiff"]
    assert [p.name for p in list_images(tmp_path, limit=2)] == flat[:2]
    with pytest.raises(TrellicError, match="image folder not found"):
        list_images([tmp_path, tmp_path / "missing"])
    with pytest.raises(TrellicError, match="no images"):
        list_images(tmp_path / "sub" / ".." / "dir.png")
