"""A tenant's look on its booking pages: name, logo, accent colour and its own privacy and terms pages.

The accent colour is the tenant's choice, but the pages put white text on it (buttons, the chosen day) and use it
for links on white, so a colour too light for that is darkened until it meets WCAG 2.x AA contrast (4.5:1). The
colour maths is pure and lives here so it can be tested without a page."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ACCENT = "#0b5cad"
AA_CONTRAST = 4.5
"""WCAG 2.2 SC 1.4.3: normal-size text needs 4.5:1 against its background."""

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Branding:
    """What the pages show for a tenant; the defaults are Slotwise's own (our privacy and terms pages)."""

    display_name: str = ""
    logo_url: str = ""
    accent: str = DEFAULT_ACCENT
    privacy_url: str = "/privacy"
    terms_url: str = "/terms"


DEFAULT_BRANDING = Branding()


def is_hex_colour(value: str) -> bool:
    return bool(_HEX.match(value))


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(char * 2 for char in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _channel(value: int) -> float:
    """sRGB channel to linear light (WCAG 2.x relative luminance definition)."""
    scaled = value / 255
    return scaled / 12.92 if scaled <= 0.04045 else ((scaled + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    red, green, blue = (_channel(part) for part in _rgb(colour))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: str, second: str) -> float:
    """(L1 + 0.05) / (L2 + 0.05), the lighter colour on top: 1.0 for equal colours, 21.0 for black on white."""
    a, b = relative_luminance(first), relative_luminance(second)
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


def contrast_safe_accent(colour: str, against: str = "#ffffff", minimum: float = AA_CONTRAST) -> str:
    """The colour itself when it already reaches `minimum` contrast with `against`; else the lightest darker shade
    of the same hue that does (each channel scaled down together, so the hue is kept). Not a colour: the default."""
    if not is_hex_colour(colour):
        return DEFAULT_ACCENT
    red, green, blue = _rgb(colour)
    normalised = f"#{red:02x}{green:02x}{blue:02x}"
    if contrast_ratio(normalised, against) >= minimum:
        return normalised
    # Binary search over the scale factor: contrast with white grows as the factor shrinks (monotonic).
    low, high = 0.0, 1.0
    for _ in range(24):
        middle = (low + high) / 2
        shade = _scaled(red, green, blue, middle)
        if contrast_ratio(shade, against) >= minimum:
            low = middle
        else:
            high = middle
    return _scaled(red, green, blue, low)


def _scaled(red: int, green: int, blue: int, factor: float) -> str:
    return f"#{int(red * factor):02x}{int(green * factor):02x}{int(blue * factor):02x}"


def branding_from(document: Mapping[str, Any] | None) -> Branding:
    """Branding from what storage keeps (the tenant file's `branding` section, already validated on apply)."""
    if not document:
        return DEFAULT_BRANDING
    return Branding(
        display_name=str(document.get("display_name") or ""),
        logo_url=str(document.get("logo_url") or ""),
        accent=contrast_safe_accent(str(document.get("accent_colour") or DEFAULT_ACCENT)),
        privacy_url=str(document.get("privacy_url") or "/privacy"),
        terms_url=str(document.get("terms_url") or "/terms"),
    )


def initials(name: str) -> str:
    """Up to two initials for a host without a photo: 'Alice Adams' → 'AA', 'Sales Team' → 'ST'."""
    words = [word for word in name.replace("-", " ").split() if word[:1].isalnum()]
    if not words:
        return "?"
    picked = [words[0], words[-1]] if len(words) > 1 else [words[0]]
    return "".join(word[0].upper() for word in picked)
