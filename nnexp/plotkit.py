"""Drawing helpers for nnexp's figures: text measured and fitted to a width (cut or wrapped), and log
axes labelled with plain numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

DPI = 120
TITLE_SIZE = 12


def text_width(fig: Figure, texts: Sequence[str], size: float) -> float:
    """Width in inches of the widest text at `size` points (measured by the figure's renderer)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    font = FontProperties(size=size)
    px = max((renderer.get_text_width_height_descent(t, font, ismath=False)[0] for t in texts), default=0.0)
    return px / DPI


def shorten(fig: Figure, texts: Sequence[str], size: float, width: float) -> list[str]:
    """Each text cut in the middle (with …) until it fits `width` inches; short ones are left alone."""
    out = []
    for t in texts:
        s, full = t, text_width(fig, [t], size)
        keep = min(len(t), int(len(t) * width / full) + 1) if full > width else len(t)
        while keep > 8 and full > width:
            keep -= 1
            s = t[:(keep + 1) // 2] + "…" + t[len(t) - keep // 2:]
            full = text_width(fig, [s], size)
        out.append(s)
    return out


def fit(fig: Figure, text: str, width: float, size: float = TITLE_SIZE) -> str:
    """`text` with each of its lines cut in the middle (…) to fit `width` inches at `size` points."""
    return "\n".join(shorten(fig, text.split("\n"), size, width))


def wrap(fig: Figure, text: str, size: float, width: float) -> str:
    """`text` broken after "_" or " " into lines that fit `width` inches (a part that alone does not fit
    is cut in the middle)."""
    lines: list[str] = []
    for part in re.split(r"(?<=[_ ])", text):
        if lines and text_width(fig, [lines[-1] + part], size) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(shorten(fig, [line.strip() for line in lines], size, width))


LOG_SUBS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 5, 6, 8), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))


def log_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Tick values for a log axis from lo to hi: the densest of 1-2-3-...-9, ..., 1-2-5, 1 per decade
    that gives at most `most` ticks; powers of ten however many."""
    if not 0 < lo < hi or not math.isfinite(hi):
        return []
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for subs in LOG_SUBS:
        ticks = [float(f"{m}e{e}") for e in decades for m in subs if lo <= float(f"{m}e{e}") <= hi]
        if len(ticks) <= most:
            break
    return ticks


def plain_log(axis: Any, most: int = 8) -> None:
    """Plain-number tick labels on a log-scaled axis (0.003, 0.005, 0.01; not 3×10⁻³ in mathtext, which
    is wider, slower to draw, and was cut off at the figure's edge), no minor ticks. Ticks from
    `log_ticks` over the current view, or about five evenly spaced ones within a decade."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = log_ticks(lo, hi, most)
    axis.set_major_locator(ticker.FixedLocator(ticks) if len(ticks) >= 3 else ticker.MaxNLocator(5))
    axis.set_minor_locator(ticker.NullLocator())
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))


def log_y(ax: Any) -> None:
    """A log-scaled y axis with plain-number labels; call it after plotting (the ticks follow the data)."""
    ax.set_yscale("log")
    plain_log(ax.yaxis)
