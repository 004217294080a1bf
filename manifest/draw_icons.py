"""Draws the two Teams app icons, a calendar with a tick, using the standard library only.

Run `python -m manifest.draw_icons` to rewrite the committed PNGs.

Teams wants `color.png` at 192x192 in full colour and `outline.png` at 32x32, white on a transparent background
(manifest schema, `icons`). The PNGs are committed; this script is how they were made, and the tests check that the
committed pixels still match it.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

ACCENT = (0x33, 0x58, 0xD4)
"""The manifest's accentColor, #3358D4."""
WHITE = (0xFF, 0xFF, 0xFF)
COLOR_SIZE = 192
OUTLINE_SIZE = 32
_SAMPLES = 4
"""Sub-samples per pixel side: 16 per pixel give smooth edges without any imaging library."""

Shape = Callable[[float, float], bool]
"""Is the point (x, y), in glyph units (0..1, y down), inside the glyph?"""


def _rounded_rect(left: float, top: float, right: float, bottom: float, radius: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        if not (left <= x <= right and top <= y <= bottom):
            return False
        nearest_x = min(max(x, left + radius), right - radius)
        nearest_y = min(max(y, top + radius), bottom - radius)
        return math.hypot(x - nearest_x, y - nearest_y) <= radius

    return inside


def _stroke(x1: float, y1: float, x2: float, y2: float, width: float) -> Shape:
    """A line segment with round caps."""
    dx, dy = x2 - x1, y2 - y1
    length_squared = dx * dx + dy * dy

    def inside(x: float, y: float) -> bool:
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / length_squared))
        return math.hypot(x - (x1 + t * dx), y - (y1 + t * dy)) <= width / 2

    return inside


def calendar_glyph() -> Shape:
    """The page with its binding rings, a header band and a tick: readable at 32 px, recognisable at 96."""
    outer = _rounded_rect(0.06, 0.16, 0.94, 0.94, 0.12)
    inner = _rounded_rect(0.15, 0.25, 0.85, 0.85, 0.05)
    header = _rounded_rect(0.06, 0.16, 0.94, 0.40, 0.12)
    rings = [_stroke(0.32, 0.06, 0.32, 0.24, 0.11), _stroke(0.68, 0.06, 0.68, 0.24, 0.11)]
    tick = [_stroke(0.31, 0.62, 0.45, 0.75, 0.10), _stroke(0.45, 0.75, 0.70, 0.50, 0.10)]

    def inside(x: float, y: float) -> bool:
        frame = outer(x, y) and (not inner(x, y) or header(x, y))
        return frame or any(part(x, y) for part in rings + tick)

    return inside


def coverage(shape: Shape, size: int, box: tuple[float, float, float]) -> list[list[float]]:
    """Fraction (0..1) of each pixel of a size x size image covered by `shape`, drawn in the square
    `box` = (left, top, side) given in pixels."""
    left, top, side = box

    def inside(x: float, y: float) -> bool:
        return shape((x - left) / side, (y - top) / side)

    rows = []
    for row in range(size):
        values = []
        for column in range(size):
            if not (left - 1 <= column <= left + side and top - 1 <= row <= top + side):
                values.append(0.0)  # the glyph lives inside its box; most of the colour icon is background
                continue
            probes = {inside(column + dx, row + dy) for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5))}
            if len(probes) == 1:
                # Corners and centre agree: no edge crosses this pixel (every stroke is wider than a pixel).
                values.append(1.0 if probes.pop() else 0.0)
                continue
            hits = sum(
                inside(column + (sub_x + 0.5) / _SAMPLES, row + (sub_y + 0.5) / _SAMPLES)
                for sub_y in range(_SAMPLES)
                for sub_x in range(_SAMPLES)
            )
            values.append(hits / _SAMPLES**2)
        rows.append(values)
    return rows


def color_pixels() -> list[list[tuple[int, int, int, int]]]:
    """192x192 RGBA: a white glyph in the central 96 px (Teams' safe area) on the accent colour, edge to edge."""
    glyph = coverage(calendar_glyph(), COLOR_SIZE, (48.0, 48.0, 96.0))

    def blend(amount: float) -> tuple[int, int, int, int]:
        red, green, blue = (round(base + (top - base) * amount) for base, top in zip(ACCENT, WHITE, strict=True))
        return (red, green, blue, 255)

    return [[blend(amount) for amount in row] for row in glyph]


def outline_pixels() -> list[list[tuple[int, int, int, int]]]:
    """32x32 RGBA: only white, with the glyph's coverage as alpha, on transparency."""
    glyph = coverage(calendar_glyph(), OUTLINE_SIZE, (1.0, 1.0, 30.0))
    return [[(255, 255, 255, round(255 * amount)) if amount else (0, 0, 0, 0) for amount in row] for row in glyph]


RIBBON_SIZES = (16, 32, 64, 80, 128)
"""Outlook's command icons (16/32/80) and `alternateIcons` (64/128), served by Slotwise from addin/static/."""


def ribbon_pixels(size: int) -> list[list[tuple[int, int, int, int]]]:
    """size x size RGBA: the glyph in the accent colour on transparency, as Office ribbon icons are drawn, with a
    one-pixel margin from 32 px up so the ring tops are not clipped."""
    margin = 0.0 if size < 32 else size / 32
    glyph = coverage(calendar_glyph(), size, (margin, margin, size - 2 * margin))
    return [[(*ACCENT, round(255 * amount)) if amount else (0, 0, 0, 0) for amount in row] for row in glyph]


def encode_png(pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    """8-bit RGBA PNG, no filtering (filter type 0 on every row), zlib level 9."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(channel for pixel in row for channel in pixel) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main(argv: list[str] | None = None) -> None:
    target = Path(argv[0]) if argv else Path(__file__).resolve().parent
    (target / "color.png").write_bytes(encode_png(color_pixels()))
    (target / "outline.png").write_bytes(encode_png(outline_pixels()))
    sys.stdout.write(f"wrote {target / 'color.png'} and {target / 'outline.png'}\n")
    served = Path(argv[1]) if argv and len(argv) > 1 else Path(__file__).resolve().parent.parent / "addin" / "static"
    served.mkdir(parents=True, exist_ok=True)
    for size in RIBBON_SIZES:
        (served / f"icon-{size}.png").write_bytes(encode_png(ribbon_pixels(size)))
    sys.stdout.write(f"wrote the Outlook icons ({', '.join(map(str, RIBBON_SIZES))} px) to {served}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
