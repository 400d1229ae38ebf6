"""Safe decoding of untrusted image bytes into RGB Pillow images.

The same function decodes training files and HTTP uploads, so a model never sees
pixels prepared differently in training and in serving.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Formats decided by decoding, never by extension or content type. Pillow's SVG/EPS/PDF
# handlers are excluded: they are either unsupported or run external programs.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


@dataclass(frozen=True)
class ImageLimits:
    """Bounds that keep one image from exhausting memory.

    Attributes:
        max_bytes: largest encoded size accepted.
        max_pixels: largest width*height accepted, checked from the header before the
            pixels are decoded (the decompression-bomb guard).
    """

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


class ImageDecodeError(ValueError):
    """Raised for bytes that are not a safe, decodable image.

    Attributes:
        reason: a short machine-readable code (``empty``, ``too_large``, ``too_many_pixels``,
            ``unsupported_format``, ``corrupt``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decodes image bytes into an 8-bit RGB image with EXIF orientation applied.

    Animated images give their first frame; palette, alpha, 16-bit, greyscale and CMYK
    inputs are all normalised to RGB.

    Raises:
        ImageDecodeError: with a reason and a message saying what is accepted.
    """
    if not data:
        raise ImageDecodeError("empty", "the file is empty")
    if len(data) > limits.max_bytes:
        raise ImageDecodeError("too_large", f"the file is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    # Our own pixel check runs on the header, before any pixel is decoded; Pillow's
    # global bomb check stays as a second line (no thread-unsafe warning filters here).
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        _check_pixels(image, limits)
        image.seek(0)
        image.load()
        # Inside the try: a malformed EXIF block only surfaces when orientation is applied.
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            "too_many_pixels", f"the image is too large to decode ({exc}); the limit is {limits.max_pixels} pixels"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "unsupported_format",
            f"not a recognised image; accepted formats: {', '.join(ACCEPTED_FORMATS)}",
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow's decoders raise whatever a crafted file provokes (struct.error,
        # ZeroDivisionError, ...); any of them means these bytes are not a usable image.
        # MemoryError is the process's problem, not the file's; KeyboardInterrupt and
        # SystemExit are not Exceptions and pass through.
        raise ImageDecodeError("corrupt", f"the image could not be decoded: {exc}") from exc


def _check_pixels(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError("corrupt", "the image has no pixels")
    if width * height > limits.max_pixels:
        raise ImageDecodeError(
            "too_many_pixels",
            f"the image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels",
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalises any Pillow mode to 8-bit RGB, compositing transparency onto white."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = _wide_to_l(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _wide_to_l(image: Image.Image) -> Image.Image:
    """Scales a 16- or 32-bit greyscale image to 8 bits.

    ``I;16*`` modes have a known 0..65535 range, so a dark 16-bit image stays dark. Only
    32-bit ``I``, whose range the file does not state, is scaled by its own values.
    """
    array = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode != "I" or array.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), mode="L")
