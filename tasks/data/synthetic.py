"""Deterministic synthetic vehicle image dataset.

Why this exists: the pipeline needs a labelled image set that can be rebuilt
anywhere (CI, laptops, air-gapped runners) without downloads or licences, and
that is hard enough to be a fair test of the classifier rather than a toy.
Images are drawn with Pillow and numpy only. Every image is a pure function of
``(seed, index)`` so the dataset is byte-identical across runs and any single
image can be regenerated on its own.

Labels are balanced by construction: the type and the colour of image ``i`` are
taken from seeded permutations of consecutive blocks of indices, so every class
count differs by at most one for any ``n`` while type and colour stay
independent of each other.
"""

from __future__ import annotations

import colorsys
import csv
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.data.atomic import atomic_folder
from vehicle_model.featurizer import usable_cores

__all__ = ["COLORS", "VEHICLE_TYPES", "generate_dataset"]

RGB = tuple[int, int, int]
Point = tuple[float, float]

VEHICLE_TYPES: tuple[str, ...] = (
    "sedan",
    "suv",
    "pickup",
    "van",
    "bus",
    "truck",
    "motorcycle",
)

# Chromatic hues are >= 25 degrees apart in HSV; the achromatic three are kept
# far apart in value so brightness jitter cannot easily swap them.
COLORS: dict[str, RGB] = {
    "red": (200, 24, 28),
    "orange": (240, 122, 16),
    "yellow": (236, 206, 24),
    "green": (34, 150, 52),
    "blue": (28, 72, 204),
    "white": (248, 248, 248),
    "silver": (110, 117, 130),
    "black": (20, 20, 22),
}

IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (160, 120),
    (224, 224),
    (256, 192),
    (320, 240),
    (400, 300),
)

# (format, file extension, probability): mostly lossless, some lossy.
_FORMATS: tuple[tuple[str, str, float], ...] = (
    ("PNG", "png", 0.70),
    ("JPEG", "jpg", 0.20),
    ("WEBP", "webp", 0.10),
)

_SUPERSAMPLE = 2  # vehicles are drawn at 2x and reduced, for anti-aliasing
_GLASS: RGB = (42, 56, 82)
_TYRE: RGB = (16, 16, 18)
_HUB: RGB = (150, 152, 158)
_FRAME: RGB = (60, 60, 64)
_LAMP: RGB = (236, 232, 200)


@dataclass(frozen=True)
class _Sample:
    """Everything that identifies one image; derived only from (seed, index)."""

    index: int
    vehicle_type: str
    color: str
    fmt: str
    ext: str

    @property
    def relpath(self) -> str:
        """Path relative to the dataset root, as written to ``labels.csv``."""
        return f"images/{self.index:06d}.{self.ext}"


def _image_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per (seed, index, stream).

    A SeedSequence over the tuple (rather than ``seed + index``) keeps
    dataset seed 1 from reusing the images of seed 0 shifted by one.
    """
    return np.random.default_rng([seed, index, stream])


def _block_label(index: int, seed: int, classes: Sequence[str], stream: int) -> str:
    """Label from a seeded permutation of the block of ``len(classes)`` indices.

    Why: each block holds every class once, so any prefix is balanced to within
    one; distinct streams for type and colour keep them uncorrelated.
    """
    k = len(classes)
    block, offset = divmod(index, k)
    perm = np.random.default_rng([seed, block, stream, 7919]).permutation(k)
    return classes[int(perm[offset])]


def _make_sample(index: int, seed: int) -> _Sample:
    """Decide the labels and file format of image ``index``."""
    vtype = _block_label(index, seed, VEHICLE_TYPES, stream=1)
    color = _block_label(index, seed, tuple(COLORS), stream=2)
    rng = _image_rng(seed, index, stream=3)
    probs = np.array([p for _, _, p in _FORMATS])
    fmt, ext, _ = _FORMATS[int(rng.choice(len(_FORMATS), p=probs / probs.sum()))]
    return _Sample(index, vtype, color, fmt, ext)


def _hsv(h: float, s: float, v: float) -> RGB:
    """HSV in [0, 1] to an 8-bit RGB tuple."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _shade(rgb: RGB, factor: float) -> RGB:
    """Scale a colour's brightness, clipped to the 8-bit range."""
    r, g, b = (int(min(255, max(0, round(c * factor)))) for c in rgb)
    return (r, g, b)


def _muted(rng: np.random.Generator, s_max: float, v_lo: float, v_hi: float) -> RGB:
    """A random low-saturation colour, so scenery never rivals the body colour."""
    return _hsv(rng.random(), rng.uniform(0.0, s_max), rng.uniform(v_lo, v_hi))


def _vertical_blend(top: RGB, bottom: RGB, h: int, w: int) -> np.ndarray:
    """An h x w x 3 float image fading from ``top`` to ``bottom``."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    a = np.asarray(top, np.float32)
    b = np.asarray(bottom, np.float32)
    return np.broadcast_to(a + (b - a) * t, (h, w, 3)).copy()


def _bg_gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Plain two-colour gradient (studio / overcast look)."""
    return _vertical_blend(_muted(rng, 0.25, 0.35, 0.8), _muted(rng, 0.25, 0.3, 0.75), h, w)


def _bg_sky_road(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pale sky over grey tarmac with a horizon and dashed lane marking."""
    horizon = int(h * rng.uniform(0.3, 0.5))
    sky = _vertical_blend(
        _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.1, 0.3), rng.uniform(0.6, 0.8)),
        _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.02, 0.12), rng.uniform(0.7, 0.85)),
        horizon,
        w,
    )
    road = _vertical_blend(_muted(rng, 0.06, 0.35, 0.5), _muted(rng, 0.06, 0.28, 0.45), h - horizon, w)
    img = np.concatenate([sky, road], axis=0)
    _lane_dashes(img, rng, horizon)
    return img


def _lane_dashes(img: np.ndarray, rng: np.random.Generator, horizon: int) -> None:
    """Light-grey dashes on the road so it is not a flat area."""
    h, w, _ = img.shape
    y = int(horizon + (h - horizon) * rng.uniform(0.3, 0.9))
    thick = max(1, h // 80)
    period = max(8, w // int(rng.integers(4, 8)))
    shift = int(rng.integers(0, period))
    for x0 in range(-shift, w, period):
        img[y : y + thick, max(0, x0) : max(0, x0 + period // 2)] = 185.0


def _bg_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blotchy low-frequency noise tinted with a muted colour (walls, foliage)."""
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(4, 12))
    coarse = rng.uniform(0.0, 255.0, size=(gh, gw)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
    field = (field / 255.0 - 0.5) * rng.uniform(0.3, 0.7)
    base = np.asarray(_muted(rng, 0.25, 0.4, 0.7), np.float32)
    fine = rng.normal(0.0, rng.uniform(2.0, 10.0), size=(h, w, 1)).astype(np.float32)
    return base * (1.0 + field[:, :, None]) + fine


_BACKGROUNDS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _bg_gradient,
    _bg_sky_road,
    _bg_texture,
)


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Pick and render one background style."""
    arr = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))](rng, h, w)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _add_clutter(img: Image.Image, rng: np.random.Generator) -> None:
    """Small, mostly desaturated shapes so the model cannot rely on clean scenes.

    At most one tiny saturated shape is added; it covers well under 1% of the
    image so the vehicle body stays the dominant saturated colour.
    """
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(int(rng.integers(2, 7))):
        _clutter_shape(draw, rng, w, h, 0.04, 0.12, _muted(rng, 0.3, 0.25, 0.8))
    if rng.random() < 0.35:
        _clutter_shape(draw, rng, w, h, 0.02, 0.05, _hsv(rng.random(), 0.8, 0.8))


def _clutter_shape(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    w: int,
    h: int,
    lo: float,
    hi: float,
    fill: RGB,
) -> None:
    """One rectangle or ellipse whose sides are ``lo``-``hi`` of the image width."""
    sw, sh = (int(w * rng.uniform(lo, hi)) + 1 for _ in range(2))
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    box = (x, y, x + sw, y + sh)
    if rng.random() < 0.5:
        draw.rectangle(box, fill=fill)
    else:
        draw.ellipse(box, fill=fill)


class _Painter:
    """Draws in vehicle coordinates so silhouettes are resolution-independent.

    x runs 0 (rear) to 1 (front) along the vehicle length, y is height above
    the ground in the same unit. The front faces right; mirroring happens later.
    """

    def __init__(self, length_px: int, height: float, body: RGB) -> None:
        self.scale = float(length_px * _SUPERSAMPLE)
        self.margin = 2 * _SUPERSAMPLE
        size = (int(self.scale) + 2 * self.margin, int(height * self.scale) + 2 * self.margin)
        self.image = Image.new("RGBA", size, (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.body = body
        self.dark = _shade(body, 0.72) if sum(body) > 90 else _shade(body, 1.9)

    def pt(self, x: float, y: float) -> tuple[float, float]:
        """Vehicle coordinates to layer pixels."""
        return (self.margin + x * self.scale, self.image.height - self.margin - y * self.scale)

    def poly(self, pts: Sequence[Point], fill: RGB, outline: bool = False) -> None:
        """Filled polygon, optionally with a darker panel edge."""
        edge = self.dark if outline else None
        self.draw.polygon([self.pt(*p) for p in pts], fill=fill, outline=edge, width=_SUPERSAMPLE)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        """Axis-aligned rectangle from corner (x0, y0) to (x1, y1)."""
        self.poly([(x0, y0), (x0, y1), (x1, y1), (x1, y0)], fill)

    def circle(self, cx: float, cy: float, r: float, fill: RGB) -> None:
        """Filled circle."""
        (x0, y0), (x1, y1) = self.pt(cx - r, cy + r), self.pt(cx + r, cy - r)
        self.draw.ellipse((x0, y0, x1, y1), fill=fill)

    def line(self, pts: Sequence[Point], fill: RGB, width: float) -> None:
        """Polyline whose width is in vehicle units."""
        px = max(1, round(width * self.scale))
        self.draw.line([self.pt(*p) for p in pts], fill=fill, width=px, joint="curve")

    def arch(self, cx: float, r: float) -> None:
        """Dark wheel well behind a wheel."""
        self.circle(cx, r, r * 1.12, (28, 28, 30))

    def wheel(self, cx: float, r: float, hub: float = 0.5) -> None:
        """Black tyre with a grey hub, resting on the ground."""
        self.circle(cx, r, r, _TYRE)
        self.circle(cx, r, r * hub, _HUB)
        self.circle(cx, r, r * hub * 0.35, (70, 70, 74))

    def shadow(self, x0: float, x1: float) -> None:
        """Soft contact shadow under the vehicle."""
        (a, b), (c, d) = self.pt(x0, 0.025), self.pt(x1, -0.015)
        self.draw.ellipse((a, b, c, d), fill=(0, 0, 0, 90))

    def finish(self) -> Image.Image:
        """Downsample to the requested size (anti-aliasing)."""
        return self.image.reduce(_SUPERSAMPLE)


def _window_row(p: _Painter, x0: float, x1: float, y0: float, y1: float, n: int) -> None:
    """``n`` equal windows separated by body-coloured pillars."""
    step = (x1 - x0) / n
    for k in range(n):
        p.rect(x0 + k * step + 0.006, y0, x0 + (k + 1) * step - 0.006, y1, _GLASS)


def _draw_sedan(p: _Painter, rng: np.random.Generator) -> None:
    """Low three-box profile: boot, glasshouse, bonnet; two wheels."""
    r, wx = 0.085, (0.19, 0.81)
    p.shadow(0.0, 1.0)
    body = [
        (0.0, 0.075),
        (0.0, 0.17),
        (0.025, 0.2),
        (0.24, 0.205),
        (0.35, 0.3),
        (0.6, 0.305),
        (0.73, 0.21),
        (0.95, 0.19),
        (1.0, 0.155),
        (1.0, 0.075),
    ]
    p.poly(body, p.body, outline=True)
    p.poly([(0.275, 0.205), (0.365, 0.285), (0.59, 0.29), (0.7, 0.21)], _GLASS)
    p.line([(0.485, 0.2), (0.485, 0.295)], p.body, 0.014)
    p.line([(0.485, 0.09), (0.485, 0.2)], p.dark, 0.004)
    p.rect(0.96, 0.14, 0.995, 0.165, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_suv(p: _Painter, rng: np.random.Generator) -> None:
    """Tall two-box body, high clearance, roof rails and a tailgate spare wheel."""
    r, wx = 0.105, (0.2, 0.81)
    p.shadow(0.0, 1.0)
    body = [
        (0.04, 0.11),
        (0.04, 0.45),
        (0.065, 0.48),
        (0.68, 0.48),
        (0.78, 0.32),
        (0.97, 0.29),
        (1.0, 0.23),
        (1.0, 0.11),
    ]
    p.poly(body, p.body, outline=True)
    p.poly([(0.075, 0.32), (0.075, 0.45), (0.665, 0.45), (0.755, 0.32)], _GLASS)
    for x in (0.27, 0.47):
        p.line([(x, 0.315), (x, 0.455)], p.body, 0.018)
    p.line([(0.47, 0.13), (0.47, 0.32)], p.dark, 0.004)
    p.line([(0.1, 0.495), (0.62, 0.495)], _FRAME, 0.012)
    p.circle(0.045, 0.27, 0.075, _TYRE)  # spare wheel on the tailgate
    p.circle(0.045, 0.27, 0.035, _HUB)
    p.rect(0.965, 0.21, 0.995, 0.25, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_pickup(p: _Painter, rng: np.random.Generator) -> None:
    """Tall cab in front of a separate, much lower open load bed."""
    r, wx = 0.1, (0.17, 0.81)
    p.shadow(0.0, 1.0)
    cab = [(0.375, 0.1), (0.375, 0.42), (0.41, 0.445), (0.6, 0.445), (0.7, 0.29), (0.96, 0.26), (1.0, 0.21), (1.0, 0.1)]
    p.poly(cab, p.body, outline=True)
    p.poly([(0.0, 0.1), (0.0, 0.255), (0.335, 0.255), (0.335, 0.1)], p.body, outline=True)
    p.rect(0.012, 0.22, 0.323, 0.25, (34, 34, 36))  # inside of the open bed
    p.line([(0.02, 0.11), (0.02, 0.22)], p.dark, 0.004)  # tailgate seam
    p.poly([(0.405, 0.29), (0.405, 0.415), (0.59, 0.415), (0.675, 0.29)], _GLASS)
    p.rect(0.965, 0.19, 0.995, 0.225, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_van(p: _Painter, rng: np.random.Generator) -> None:
    """Tall long box with a steeply sloped front and a windowless cargo side."""
    r, wx = 0.09, (0.16, 0.83)
    p.shadow(0.0, 1.0)
    body = [(0.0, 0.08), (0.0, 0.48), (0.02, 0.5), (0.7, 0.5), (0.9, 0.31), (0.99, 0.27), (1.0, 0.2), (1.0, 0.08)]
    p.poly(body, p.body, outline=True)
    p.poly([(0.62, 0.31), (0.62, 0.46), (0.705, 0.46), (0.855, 0.31)], _GLASS)
    for x in (0.33, 0.6):
        p.line([(x, 0.1), (x, 0.47)], p.dark, 0.005)
    p.line([(0.33, 0.43), (0.6, 0.43)], p.dark, 0.005)
    p.rect(0.97, 0.2, 0.998, 0.24, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_bus(p: _Painter, rng: np.random.Generator) -> None:
    """Very long low box with a full row of side windows; 2-3 wheels."""
    r = 0.055
    wx = (0.13, 0.8) if rng.random() < 0.5 else (0.13, 0.25, 0.8)
    p.shadow(0.0, 1.0)
    p.poly([(0.0, 0.045), (0.0, 0.29), (0.01, 0.3), (0.985, 0.3), (1.0, 0.28), (1.0, 0.045)], p.body, outline=True)
    _window_row(p, 0.02, 0.85, 0.17, 0.27, int(rng.integers(6, 9)))
    p.rect(0.87, 0.06, 0.925, 0.27, _GLASS)  # door
    p.rect(0.95, 0.14, 0.994, 0.28, _GLASS)  # windscreen
    p.rect(0.0, 0.145, 0.86, 0.155, p.dark)
    p.rect(0.975, 0.07, 0.997, 0.1, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_truck(p: _Painter, rng: np.random.Generator) -> None:
    """Separate cab and large cargo box on a visible chassis; three wheels."""
    r, wx = 0.075, (0.12, 0.28, 0.85)
    p.shadow(0.0, 1.0)
    p.rect(0.02, 0.07, 0.985, 0.125, _FRAME)  # chassis rail
    p.poly([(0.0, 0.125), (0.0, 0.58), (0.69, 0.58), (0.69, 0.125)], p.body, outline=True)
    for k in range(1, 6):
        p.line([(0.115 * k, 0.14), (0.115 * k, 0.565)], p.dark, 0.004)
    cab = [(0.72, 0.08), (0.72, 0.5), (0.74, 0.52), (0.92, 0.52), (0.99, 0.4), (1.0, 0.35), (1.0, 0.08)]
    p.poly(cab, p.body, outline=True)
    p.poly([(0.79, 0.34), (0.79, 0.48), (0.91, 0.48), (0.965, 0.34)], _GLASS)
    p.rect(0.975, 0.07, 1.0, 0.14, _FRAME)  # bumper
    p.rect(0.975, 0.16, 0.997, 0.2, _LAMP)
    for x in wx:
        p.arch(x, r)
        p.wheel(x, r)


def _draw_motorcycle(p: _Painter, rng: np.random.Generator) -> None:
    """Two large wheels, thin fork and frame; tank, tail and full fairing in body colour."""
    r, wx = 0.16, (0.17, 0.83)
    p.shadow(0.05, 0.95)
    for x in wx:
        p.wheel(x, r, hub=0.6)
    p.line([(0.17, r), (0.46, 0.27)], _FRAME, 0.024)  # swing arm
    p.line([(0.46, 0.15), (0.3, 0.17), (0.1, 0.25)], (176, 176, 182), 0.022)  # exhaust
    p.line([(0.83, r), (0.72, 0.54)], (176, 178, 184), 0.022)  # fork
    p.line([(0.72, 0.54), (0.64, 0.58)], _FRAME, 0.016)  # handlebar
    p.poly([(0.4, 0.12), (0.58, 0.11), (0.62, 0.28), (0.42, 0.3)], (80, 80, 86))  # engine
    p.poly([(0.06, 0.45), (0.24, 0.42), (0.42, 0.39), (0.46, 0.31), (0.28, 0.3)], p.body, True)
    p.poly([(0.22, 0.425), (0.45, 0.445), (0.47, 0.405), (0.25, 0.395)], (26, 26, 28))  # seat
    p.poly([(0.45, 0.41), (0.5, 0.5), (0.63, 0.51), (0.71, 0.45), (0.66, 0.37), (0.47, 0.36)], p.body, True)  # tank
    p.poly(
        [
            (0.46, 0.35),
            (0.63, 0.4),
            (0.72, 0.54),
            (0.8, 0.53),
            (0.85, 0.41),
            (0.78, 0.26),
            (0.68, 0.13),
            (0.52, 0.14),
            (0.48, 0.24),
        ],
        p.body,
        True,
    )  # full fairing
    p.poly([(0.72, 0.54), (0.745, 0.61), (0.79, 0.595), (0.8, 0.53)], _GLASS)  # screen
    p.poly(
        [(0.73, 0.31), (0.81, 0.345), (0.9, 0.33), (0.96, 0.27), (0.88, 0.31), (0.8, 0.32)], p.body
    )  # front mudguard
    p.circle(0.82, 0.44, 0.022, _LAMP)


_DRAWERS: dict[str, tuple[float, Callable[[_Painter, np.random.Generator], None]]] = {
    "sedan": (0.32, _draw_sedan),
    "suv": (0.51, _draw_suv),
    "pickup": (0.45, _draw_pickup),
    "van": (0.52, _draw_van),
    "bus": (0.31, _draw_bus),
    "truck": (0.6, _draw_truck),
    "motorcycle": (0.62, _draw_motorcycle),
}


def _render_vehicle(vtype: str, color: str, length_px: int, rng: np.random.Generator) -> Image.Image:
    """RGBA layer with one vehicle, body shade jittered by +-8%."""
    height, drawer = _DRAWERS[vtype]
    body = _shade(COLORS[color], rng.uniform(0.92, 1.08))
    painter = _Painter(length_px, height, body)
    drawer(painter, rng)
    return painter.finish()


def _pose(layer: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random left/right orientation and a small (+-10 degree) tilt."""
    if rng.random() < 0.5:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-10.0, 10.0))
    return layer.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)


def _place(canvas: Image.Image, layer: Image.Image, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Paste the vehicle around the middle of the frame with position jitter.

    Why central: like real vehicle-centric crops (and the featurizer's centre
    histogram), the subject is near the middle; up to ~5% may be cropped.

    Returns:
        The pasted bounding box ``(x0, y0, x1, y1)``, used for occlusion.
    """
    w, h = canvas.size
    lw, lh = layer.size
    cx = w / 2 + rng.uniform(-0.5, 0.5) * max(0, w - lw) + rng.uniform(-0.05, 0.05) * lw
    cy = h * rng.uniform(0.42, 0.62)
    x0 = int(round(cx - lw / 2))
    y0 = int(round(min(max(cy - lh / 2, 0.0), max(h - lh, 0))))
    canvas.paste(layer, (x0, y0), layer)
    return (x0, y0, x0 + lw, y0 + lh)


def _occlude(canvas: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """A post or crate in front of the vehicle covering at most ~15% of its box."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    fill = _muted(rng, 0.3, 0.25, 0.65)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.5:  # vertical post spanning the vehicle height
        pw = max(2, int(bw * rng.uniform(0.04, 0.13)))
        px = int(x0 + rng.uniform(0.1, 0.9) * bw)
        draw.rectangle((px, y0 - bh // 4, px + pw, y1), fill=fill)
    else:  # crate standing on the ground in front of the vehicle
        cw, ch = bw * rng.uniform(0.15, 0.3), bh * rng.uniform(0.2, 0.45)
        cx = x0 + rng.uniform(0.0, 1.0) * (bw - cw)
        crate = (int(cx), int(y1 - ch), int(cx + cw), y1)
        draw.rectangle(crate, fill=fill, outline=_shade(fill, 0.7))


def _photometric(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness and contrast jitter (+-25%) plus Gaussian sensor noise."""
    arr = np.asarray(img, np.float32)
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.75, 1.25) + mean
    arr *= rng.uniform(0.75, 1.25)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(rng.uniform(1.5, 7.0))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def _compose(sample: _Sample, seed: int) -> Image.Image:
    """Render image ``sample.index``; depends only on (seed, index)."""
    rng = _image_rng(seed, sample.index)
    w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    canvas = _background(rng, w, h)
    _add_clutter(canvas, rng)
    length = max(24, int(w * rng.uniform(0.35, 0.8)))
    layer = _pose(_render_vehicle(sample.vehicle_type, sample.color, length, rng), rng)
    box = _place(canvas, layer, rng)
    if rng.random() < 0.3:
        _occlude(canvas, box, rng)
    return _photometric(canvas, rng)


def _save(img: Image.Image, path: Path, fmt: str) -> None:
    """Encode with fixed settings and no metadata, so output bytes are reproducible."""
    if fmt == "PNG":
        # Level 1: the sensor noise is incompressible anyway, so higher levels only cost time.
        img.save(path, "PNG", compress_level=1, optimize=False)
    elif fmt == "JPEG":
        img.save(path, "JPEG", quality=90, subsampling=0, optimize=False, progressive=False)
    else:
        img.save(path, "WEBP", quality=90, method=4, lossless=False, exact=False)


def generate_dataset(
    out_dir: Path,
    n: int = 3000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    replace: bool = True,
) -> Path:
    """Write a balanced, reproducible synthetic vehicle dataset.

    Why: gives training, CI and demos a labelled image set with no download,
    where identical ``(n, seed)`` always yields byte-identical files.

    Args:
        out_dir: Dataset root; ``images/`` and ``labels.csv`` are created in it.
        n: Number of images.
        seed: Non-negative dataset seed; image ``i`` depends only on ``(seed, i)``.
        progress: Optional callback receiving the number of images written so far.
        replace: Whether a dataset already in ``out_dir`` is replaced; when False the first
            complete dataset stays (what concurrent flow runs want).

    Returns:
        Path of ``labels.csv`` with columns ``image`` (relative to ``out_dir``),
        ``vehicle_type`` and ``color``, one row per image in index order.

    Raises:
        ValueError: If ``n`` or ``seed`` is negative.
    """
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be non-negative, got n={n}, seed={seed}")
    out_dir = Path(out_dir)
    # Published in one rename (``tasks.data.atomic``): a concurrent generator or a reader never
    # sees a half-written dataset, and two generators never write into one folder.
    with atomic_folder(out_dir, if_exists="replace" if replace else "keep") as staging:
        (staging / "images").mkdir()

        def write(i: int) -> tuple[str, str, str]:
            sample = _make_sample(i, seed)
            _save(_compose(sample, seed), staging / sample.relpath, sample.fmt)
            return sample.relpath, sample.vehicle_type, sample.color

        rows: list[tuple[str, str, str]] = []
        # Drawing and encoding release the GIL, so threads scale with the cores (85 against
        # 170 images/s on two); image i depends on (seed, i) only, so the files are the same.
        with ThreadPoolExecutor(max(1, min(usable_cores(), n))) as pool:
            for row in pool.map(write, range(n)):
                rows.append(row)
                if progress is not None:
                    progress(len(rows))
        _write_labels(staging / "labels.csv", rows)
    return out_dir / "labels.csv"


def _write_labels(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Write ``labels.csv`` with fixed line endings for byte-stable output."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("image", "vehicle_type", "color"))
        writer.writerows(rows)
    return path
