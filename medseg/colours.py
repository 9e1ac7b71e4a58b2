"""Deterministic label colours shared by the PNG overlays and the DICOM-SEG display colours.

Label value ``v`` always gets the same colour (a fixed, high-contrast palette for 1-10, then
golden-angle hues), so a structure looks the same in every overlay and in viewers that honour
the SEG's Recommended Display CIELab Value. Hand-written: a ten-entry table, no library needed.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping

from medseg.errors import ExportError

__all__ = ["RGB", "label_colour", "label_colours"]

RGB = tuple[int, int, int]

# Bright colours that stay visible on grey CT / radiographs (no greys, no dark blues first).
_PALETTE: tuple[RGB, ...] = (
    (46, 204, 64),  # 1 green
    (255, 133, 27),  # 2 orange
    (0, 174, 255),  # 3 sky blue
    (255, 65, 54),  # 4 red
    (255, 220, 0),  # 5 yellow
    (177, 13, 201),  # 6 purple
    (57, 204, 204),  # 7 teal
    (240, 18, 190),  # 8 fuchsia
    (1, 255, 112),  # 9 lime
    (133, 20, 75),  # 10 maroon
)


def label_colour(value: int) -> RGB:
    """The RGB (0-255) colour of label ``value`` (>= 1); the same value always gives the same colour."""
    value = int(value)
    if value < 1:
        raise ExportError(f"label values start at 1 (0 is background), got {value}")
    if value <= len(_PALETTE):
        return _PALETTE[value - 1]
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


def label_colours(values: Iterable[int], overrides: Mapping[int, RGB] | None = None) -> dict[int, RGB]:
    """``{value: (r, g, b)}`` for ``values``; ``overrides`` (0-255 RGB triples) win where given."""
    out: dict[int, RGB] = {}
    for v in values:
        given = (overrides or {}).get(int(v))
        if given is not None:
            if len(given) != 3 or not all(0 <= int(c) <= 255 for c in given):
                raise ExportError(
                    f"colour for label {v} must be three integers 0-255, got {given!r}", hint="give (r, g, b)"
                )
            out[int(v)] = (int(given[0]), int(given[1]), int(given[2]))
        else:
            out[int(v)] = label_colour(int(v))
    return out
