"""Reading uploads safely and saying precisely why one was rejected.

Uploads stay in memory (Litestar spools parts above 1 MB to anonymous temporary files, never
named after the client's filename). The client's filename is only ever echoed back, cleaned,
as a label in batch results: it never reaches a path, a cache key or a log line.
"""

from __future__ import annotations

import re

from litestar.datastructures import UploadFile

from serving.http.errors import ApiError
from vehicle_model.images import ACCEPTED_FORMATS, ImageDecodeError, ImageLimits

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
MAX_ECHOED_NAME = 100

# Decoding failures -> (HTTP status, error code). Corrupt or truncated images are 422: the
# request is well-formed and the format is one we accept, but the content is unusable.
DECODE_STATUS: dict[str, tuple[int, str]] = {
    "empty": (400, "empty_file"),
    "too_large": (413, "file_too_large"),
    "too_many_pixels": (413, "too_many_pixels"),
    "unsupported_format": (415, "unsupported_format"),
    "corrupt": (422, "corrupt_image"),
}


async def read_upload(upload: UploadFile) -> bytes:
    """The upload's bytes; the per-file limit is enforced first thing by ``decode_image``."""
    try:
        return await upload.read()
    finally:
        await upload.close()


def decode_error(exc: ImageDecodeError, limits: ImageLimits) -> ApiError:
    """The API error for a file ``decode_image`` rejected (the per-file size limit included)."""
    status, code = DECODE_STATUS.get(exc.reason, (422, "corrupt_image"))
    details: dict[str, object] = {"accepted": list(ACCEPTED_FORMATS)}
    if exc.reason == "too_large":
        details["limit_bytes"] = limits.max_bytes
    if exc.reason == "too_many_pixels":
        details["limit_pixels"] = limits.max_pixels
    return ApiError(status, code, str(exc), **details)


def display_name(filename: str | None) -> str | None:
    """The client's filename made safe to echo: no control characters, bounded length."""
    if not filename:
        return None
    return _UNPRINTABLE.sub("", filename)[:MAX_ECHOED_NAME] or None
