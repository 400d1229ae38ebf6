"""``decode_image``: every accepted format and mode becomes 8-bit RGB; bad bytes are rejected
with a reason a caller can act on."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from vehicle_model.images import ACCEPTED_FORMATS, ImageDecodeError, ImageLimits, decode_image

pytestmark = pytest.mark.unit

RED = (200, 30, 40)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int32)


def noise_png(size: int = 64) -> bytes:
    """A PNG that does not compress, so half of its bytes lack half of its pixels."""
    array = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(array), "PNG")


def one_bit_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit greyscale PNG, written row by row so it never exists in memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ACCEPTED_FORMATS)
def test_each_accepted_format_decodes_to_rgb(fmt: str) -> None:
    decoded = decode_image(encode(Image.new("RGB", (40, 30), RED), fmt))

    assert decoded.mode == "RGB"
    assert decoded.size == (40, 30)
    # JPEG and WebP are lossy; the rest keep a flat colour exactly.
    tolerance = 6 if fmt in ("JPEG", "WEBP") else 0
    assert np.abs(pixels(decoded) - RED).max() <= tolerance


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3

    decoded = decode_image(data)

    assert decoded.mode == "RGB"
    assert (pixels(decoded) == (255, 0, 0)).all()


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), 1 blue
    image.putpixel((0, 0), 1)

    decoded = pixels(decode_image(encode(image, "PNG", transparency=0)))

    assert tuple(decoded[0, 0]) == (0, 0, 255)
    assert (decoded[1:] == 255).all()


def test_rgba_is_composited_on_white_by_alpha() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(0, 0, 0, 0), (0, 0, 0, 128), (255, 0, 0, 255)])

    decoded = pixels(decode_image(encode(image, "PNG")))

    assert tuple(decoded[0, 0]) == (255, 255, 255)
    assert np.abs(decoded[0, 1] - 127).max() <= 1
    assert tuple(decoded[0, 2]) == (255, 0, 0)


def test_la_is_composited_on_white_by_alpha() -> None:
    image = Image.new("LA", (2, 1))
    image.putdata([(0, 0), (0, 255)])

    decoded = pixels(decode_image(encode(image, "PNG")))

    assert decoded.tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_16_bit_greyscale_png_is_scaled_to_8_bits() -> None:
    wide = np.array([[65535, 32768, 0]], dtype=np.uint16)
    data = encode(Image.fromarray(wide), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    decoded = pixels(decode_image(data))

    assert decoded[0, 0].tolist() == [255] * 3
    assert np.abs(decoded[0, 1] - 128).max() <= 1
    assert decoded[0, 2].tolist() == [0] * 3


def test_dark_16_bit_png_stays_dark() -> None:
    # All values <= 255 out of 65535: a nearly black image, not an 8-bit one in disguise.
    wide = np.array([[255, 128, 0]], dtype=np.uint16)

    decoded = pixels(decode_image(encode(Image.fromarray(wide), "PNG")))

    assert decoded.max() <= 1


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    decoded = decode_image(data)

    assert decoded.mode == "RGB"
    assert np.abs(pixels(decoded) - (255, 0, 0)).max() <= 8


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise

    decoded = decode_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))

    assert decoded.size == (32, 64)
    array = pixels(decoded)
    assert np.abs(array[8, 16] - (255, 0, 0)).max() <= 8  # the left edge is now on top
    assert np.abs(array[56, 16] - (0, 0, 255)).max() <= 8


def test_one_pixel_image_decodes() -> None:
    decoded = decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))

    assert decoded.size == (1, 1)
    assert pixels(decoded).tolist() == [[[1, 2, 3]]]


def test_empty_bytes_are_rejected() -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(b"")
    assert error.value.reason == "empty"


def test_bytes_over_the_limit_are_rejected_before_decoding() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")

    with pytest.raises(ImageDecodeError) as error:
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))

    assert error.value.reason == "too_large"
    assert f"limit is {len(data) - 1} bytes" in str(error.value)


def test_pixels_over_the_configured_limit_are_rejected() -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(encode(Image.new("RGB", (100, 100)), "PNG"), ImageLimits(max_pixels=5_000))

    assert error.value.reason == "too_many_pixels"
    assert "100x100" in str(error.value)
    assert "5000 pixels" in str(error.value)


@pytest.mark.parametrize("side", [7_000, 20_000])
def test_decompression_bomb_is_rejected_from_its_header(side: int) -> None:
    # 7000^2 is over the default 40M limit but under Pillow's own warning threshold;
    # 20000^2 is over Pillow's hard limit. Both must be rejected with the configured limit.
    data = one_bit_png(side, side)
    assert len(data) < 100_000

    with pytest.raises(ImageDecodeError) as error:
        decode_image(data)

    assert error.value.reason == "too_many_pixels"
    assert f"{ImageLimits().max_pixels} pixels" in str(error.value)


@pytest.mark.parametrize(
    "data",
    [
        b"vehicle_type,color\nsedan,red\n",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>',
    ],
    ids=["text", "svg"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(data)

    assert error.value.reason == "unsupported_format"
    assert all(fmt in str(error.value) for fmt in ACCEPTED_FORMATS)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_corrupt(fmt: str) -> None:
    array = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = noise_png() if fmt == "PNG" else encode(Image.fromarray(array), "JPEG")

    with pytest.raises(ImageDecodeError) as error:
        decode_image(data[: len(data) // 2])

    assert error.value.reason == "corrupt"


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(ImageDecodeError, ValueError)


def test_malformed_exif_block_is_corrupt_not_a_crash() -> None:
    """The EXIF block is parsed only when orientation is applied, after the pixels load."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    png = buffer.getvalue()
    payload = b"garbage"
    exif = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(png[:33] + exif + png[33:])  # after the 33-byte signature + IHDR
    assert raised.value.reason == "corrupt"


def exif_png(tag: int, tag_type: int, value: bytes) -> bytes:
    """An 8x8 PNG whose eXIf block says "rotate" (orientation 6) and holds one crafted tag.

    Applying the orientation makes Pillow re-encode the EXIF block, which is where a tag
    stored with a type its value cannot be written back as blows up.
    """
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    png = buffer.getvalue()
    entries = [(0x0112, 3, 1, struct.pack("<H", 6)), (tag, tag_type, 1, value)]
    offset = 8 + 2 + 12 * len(entries) + 4
    table, blobs = b"", b""
    for number, kind, count, data in entries:
        inline = data.ljust(4, b"\0") if len(data) <= 4 else struct.pack("<I", offset + len(blobs))
        blobs += b"" if len(data) <= 4 else data
        table += struct.pack("<HHI", number, kind, count) + inline
    payload = b"II*\0" + struct.pack("<IH", 8, len(entries)) + table + b"\0\0\0\0" + blobs
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    return png[:33] + chunk + png[33:]  # after the 33-byte signature + IHDR


CRAFTED_EXIF = {
    # XResolution stored as a signed byte -1: re-encoding it raises struct.error.
    "struct.error": (struct.error, exif_png(0x011A, 6, b"\xff")),
    # ImageDescription stored as a rational: Pillow calls .encode() on it (AttributeError).
    "AttributeError": (AttributeError, exif_png(0x010E, 5, struct.pack("<II", 1, 0))),
    # The Exif sub-IFD pointer as a 64-bit offset past any buffer: OverflowError.
    "OverflowError": (OverflowError, exif_png(0x8769, 16, b"\xff" * 8)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_EXIF))
def test_any_exception_from_a_crafted_file_is_corrupt(name: str) -> None:
    """Pillow raises far more than OSError/ValueError on hostile files; each must become a
    ``corrupt`` rejection, never escape (a 500 for a whole batch, an aborted validation run)."""
    expected, data = CRAFTED_EXIF[name]
    with pytest.raises(expected):  # the premise: Pillow itself really raises this type here
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))

    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)

    assert raised.value.reason == "corrupt"
    assert isinstance(raised.value.__cause__, expected)


def test_memory_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running out of memory is the process's problem, not the file's."""

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Image, "open", exhausted)
    with pytest.raises(MemoryError):
        decode_image(encode(Image.new("RGB", (4, 4)), "PNG"))
