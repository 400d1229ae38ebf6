"""Hostile and unusual uploads: each gets the right 4xx or a 200, never a 5xx."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from PIL import Image, ImageDraw
from serving_helpers import BATCH, CLASSIFY, REPORT, assert_error

from serving.app import create_app
from serving.http.uploads import display_name
from serving.model.service import ModelService
from serving.settings import ServingSettings

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="session")]

MAX_FILE = 200_000
MAX_BODY = 1_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scene(mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 200))
    width, height = size
    ImageDraw.Draw(image).rectangle((width // 5, height // 3, width * 3 // 4, height * 2 // 3), fill=(220, 30, 30))
    return image.convert(mode)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def palette_with_transparency() -> bytes:
    image = scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (80, 60))
    image.putdata([(i * 97) % 65536 for i in range(80 * 60)])
    return encode(image, "PNG")


def animated_gif() -> bytes:
    frames = [scene(), Image.new("RGB", (96, 64), (0, 200, 0)), Image.new("RGB", (96, 64), (250, 250, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise
    return encode(scene(), "JPEG", exif=exif)


def big_one_bit_png() -> bytes:
    """A legal, well-compressed PNG of 7000 x 6000 pixels: 42 M pixels, over the 40 M limit."""
    return encode(Image.new("1", (7000, 6000)), "PNG", optimize=True)


GOOD = encode(scene(), "PNG")
JPEG = encode(scene(), "JPEG")

# (case id, bytes factory, filename, expected status, expected code or None for 200)
CORPUS: list[tuple[str, Callable[[], bytes], str, int, str | None]] = [
    ("empty", lambda: b"", "empty.jpg", 400, "empty_file"),
    ("text", lambda: b"hello, this is plain text\n" * 10, "notes.jpg", 415, "unsupported_format"),
    ("html", lambda: b"<html><script>alert(1)</script></html>", "page.png", 415, "unsupported_format"),
    (
        "svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        "a.svg",
        415,
        "unsupported_format",
    ),
    ("pdf", lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "doc.pdf", 415, "unsupported_format"),
    (
        "eps",
        lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        "x.eps",
        415,
        "unsupported_format",
    ),
    (
        "ico",
        lambda: encode(scene("RGBA", size=(32, 32)), "ICO", sizes=[(32, 32)]),
        "favicon.ico",
        415,
        "unsupported_format",
    ),
    ("zip", lambda: b"PK\x03\x04" + b"\0" * 100, "archive.zip", 415, "unsupported_format"),
    ("truncated png", lambda: GOOD[: len(GOOD) // 2], "cut.png", 422, "corrupt_image"),
    ("truncated jpeg", lambda: JPEG[: len(JPEG) // 2], "cut.jpg", 422, "corrupt_image"),
    # Damaged so early that Pillow cannot even identify the format: refused as unsupported.
    ("png header only", lambda: GOOD[:40], "header.png", 415, "unsupported_format"),
    ("png bad header crc", lambda: GOOD[:29] + b"\0\0\0\0" + GOOD[33:], "crc.png", 415, "unsupported_format"),
    ("jpeg bad data", lambda: JPEG[:200] + bytes(range(256)) * 8, "noise.jpg", 422, "corrupt_image"),
    ("decompression bomb header", lambda: png_claiming(50_000, 50_000), "bomb.png", 413, "too_many_pixels"),
    ("decompression bomb real", big_one_bit_png, "bomb2.png", 413, "too_many_pixels"),
    ("oversized file", lambda: b"\xff\xd8" + b"\0" * (MAX_FILE + 1), "huge.jpg", 413, "file_too_large"),
    ("path traversal name", lambda: GOOD, "../../../../etc/passwd", 200, None),
    ("absolute path name", lambda: GOOD, "/etc/shadow", 200, None),
    ("nul in name", lambda: GOOD, "evil\x00.png", 200, None),
    ("long name", lambda: GOOD, "n" * 300 + ".png", 200, None),
    ("name over the multipart header limit", lambda: GOOD, "n" * 5000 + ".png", 400, "multipart_limit"),
    ("cmyk jpeg", lambda: encode(scene("CMYK"), "JPEG"), "cmyk.jpg", 200, None),
    ("16-bit png", sixteen_bit_png, "deep.png", 200, None),
    ("palette png with transparency", palette_with_transparency, "palette.png", 200, None),
    ("animated gif", animated_gif, "anim.gif", 200, None),
    ("grayscale png", lambda: encode(scene("L"), "PNG"), "grey.png", 200, None),
    ("rgba png", lambda: encode(scene("RGBA"), "PNG"), "alpha.png", 200, None),
    ("bmp", lambda: encode(scene(), "BMP"), "a.bmp", 200, None),
    ("webp", lambda: encode(scene(), "WEBP"), "a.webp", 200, None),
    ("tiff", lambda: encode(scene(), "TIFF"), "a.tiff", 200, None),
    ("exif rotated jpeg", exif_rotated_jpeg, "rotated.jpg", 200, None),
    ("png with trailing html", lambda: GOOD + b"<script>alert(1)</script>", "poly.png", 200, None),
    ("png named exe", lambda: GOOD, "setup.exe", 200, None),
]


@pytest.fixture(scope="module")
def upload_settings(tmp_path_factory: pytest.TempPathFactory) -> ServingSettings:
    return ServingSettings(
        redis_url=None,
        log_dir=tmp_path_factory.mktemp("upload-logs"),
        max_file_bytes=MAX_FILE,
        max_body_bytes=MAX_BODY,
        rate_limit_per_minute=0,
        api_key=None,
        cors_origins=[],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(upload_settings: ServingSettings, small_model) -> AsyncIterator[AsyncTestClient]:
    """One app for the module, serving a model handed in directly (no registry)."""
    app = create_app(upload_settings, model_service=ModelService(None, small_model))
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(("make", "filename", "status", "code"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
async def test_hostile_upload_to_classify(client, make, filename, status, code):
    response = await client.post(CLASSIFY, files={"file": (filename, make(), "image/png")})
    assert response.status_code < 500
    if code is None:
        assert response.status_code == 200, response.text
        assert set(response.json()["predictions"]) == {"vehicle_type", "color"}
    else:
        assert_error(response, status, code)


async def test_hostile_corpus_in_one_batch_fails_only_the_bad_files(client):
    # Every file-level case; a name over the parser's header limit rejects the whole request.
    expected = [case for case in CORPUS if case[4] != "multipart_limit"]
    files = [("files", (case[2], case[1](), "application/octet-stream")) for case in expected]
    response = await client.post(BATCH, files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for case, item in zip(expected, results, strict=True):
        name, _, _, status, code = case
        if code is None:
            assert item["status"] == "ok", (name, item)
        else:
            assert (item["status"], item["error"]["status"], item["error"]["code"]) == ("error", status, code), name
    names = [item["filename"] for item in results]
    assert all(name is None or len(name) <= 100 for name in names)


def raw_multipart(filename: bytes, data: bytes, boundary: bytes = b"b0undary") -> tuple[bytes, dict[str, str]]:
    """A multipart body with the filename bytes exactly as given (clients would escape them)."""
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}


@pytest.mark.parametrize(
    ("filename", "status", "echoed"),
    [
        (b"evil\x00.png", 200, "evil.png"),
        (b"..\x00/../x.png", 200, "../../x.png"),
        (b"a\x1b[31mred.png", 200, "a[31mred.png"),
        (b"\xff\xfe.png", 400, None),  # not UTF-8: the multipart parser refuses the body
    ],
)
async def test_raw_control_bytes_in_filenames_are_harmless(client, filename, status, echoed):
    body, headers = raw_multipart(filename, GOOD)
    response = await client.post(CLASSIFY, content=body, headers=headers)
    batch = await client.post(BATCH, content=body.replace(b'name="file"', b'name="files"'), headers=headers)
    if status == 400:
        assert_error(response, 400)
        assert_error(batch, 400)
        return
    assert response.status_code == 200 and batch.status_code == 200
    assert batch.json()["results"][0]["filename"] == echoed


async def test_report_rejects_a_bad_image_with_the_same_codes(client):
    bomb = await client.post(REPORT, files={"file": ("b.png", png_claiming(50_000, 50_000), "image/png")})
    svg = await client.post(REPORT, files={"file": ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x")})
    assert_error(bomb, 413, "too_many_pixels")
    assert "PNG" in assert_error(svg, 415, "unsupported_format")["accepted"]


async def test_malformed_requests_are_400_not_500(client):
    text_field = await client.post(CLASSIFY, data={"file": "just text"})
    empty_multipart = await client.post(
        CLASSIFY, content=b"--b\r\n\r\n--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    garbage = await client.post(
        CLASSIFY, content=b"\x00\x01garbage", headers={"Content-Type": "multipart/form-data; boundary=zz"}
    )
    many_parts = await client.post(CLASSIFY, files=[("x", ("a", b"1", "t"))] * 1500)
    batch_without_files = await client.post(BATCH, data={"other": "1"})
    for response in (text_field, empty_multipart, garbage, many_parts, batch_without_files):
        assert_error(response, 400)


async def test_uploads_are_never_written_under_client_names(client, tmp_path: Path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    response = await client.post(CLASSIFY, files={"file": ("../escape.png", GOOD, "image/png")})
    assert response.status_code == 200
    assert list(workdir.iterdir()) == [] and not (tmp_path / "escape.png").exists()


async def test_display_name_strips_control_characters():
    assert display_name("a\x00b\x1f\x7f.png") == "ab.png"
    assert display_name("\x00") is None and display_name(None) is None
    assert len(display_name("x" * 500)) == 100


RAW_CORPUS = [case for case in CORPUS if case[4] != "multipart_limit"]  # no multipart: no parser limits


@pytest.mark.parametrize(
    ("make", "status", "code"), [(c[1], c[3], c[4]) for c in RAW_CORPUS], ids=[c[0] for c in RAW_CORPUS]
)
async def test_hostile_raw_body_gets_the_same_answer_as_the_upload(client, make, status, code):
    # The declared image type is never trusted: the bytes decide, as for multipart uploads.
    response = await client.post(CLASSIFY, content=make(), headers={"Content-Type": "image/png"})
    if code is None:
        assert response.status_code == 200, response.text
        assert set(response.json()["predictions"]) == {"vehicle_type", "color"}
    else:
        assert_error(response, status, code)


async def test_raw_body_limits_and_content_types(client):
    over_body = await client.post(
        CLASSIFY, content=b"\xff\xd8" + b"\0" * MAX_BODY, headers={"Content-Type": "image/jpeg"}
    )
    empty = await client.post(CLASSIFY, content=b"", headers={"Content-Type": "image/jpeg"})
    as_text = await client.post(CLASSIFY, content=JPEG, headers={"Content-Type": "text/plain"})
    as_json = await client.post(CLASSIFY, json={"image": "aGVsbG8="})
    undeclared = await client.post(CLASSIFY, content=JPEG, headers={"Content-Type": ""})
    no_file = await client.post(CLASSIFY, files={"image": ("car.jpg", JPEG, "image/jpeg")})

    assert assert_error(over_body, 413, "body_too_large")["limit_bytes"] == MAX_BODY
    assert_error(empty, 400, "empty_file")
    for response in (as_text, as_json, undeclared, no_file):
        message = assert_error(response, 400, "invalid_request")["message"]
        assert "file" in message and "Content-Type image/*" in message


async def test_raw_body_and_multipart_upload_classify_alike(client):
    image = encode(scene(size=(90, 70)), "JPEG")
    raw = await client.post(CLASSIFY, content=image, headers={"Content-Type": "image/jpeg"}, params={"top_k": 2})
    form = await client.post(CLASSIFY, files={"file": ("car.jpg", image, "image/jpeg")}, params={"top_k": 2})
    assert raw.status_code == form.status_code == 200, raw.text
    assert (raw.json()["cached"], form.json()["cached"]) == (False, True)  # same bytes, same cache entry
    assert raw.json()["predictions"] == form.json()["predictions"]


async def test_openapi_documents_both_ways_to_send_an_image(client):
    schema = (await client.get("/docs/openapi.json")).json()
    body = schema["paths"][CLASSIFY]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["image/*"]["schema"] == {"type": "string", "format": "binary"}
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
