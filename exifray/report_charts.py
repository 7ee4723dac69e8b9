"""The report's charts as a person reads them: matplotlib figures rendered to inline SVG (glyphs as paths, stable
ids), plain tick labels, no tick label over another, categories in their natural order."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def svg(fig: Figure) -> str:
    import matplotlib.pyplot as plt

    declutter(fig)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG inside HTML
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if 0 <= start < end else text


def figure_setup() -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    matplotlib.rcParams["svg.fonttype"] = "path"  # glyphs as paths: no font files to fetch
    matplotlib.rcParams["svg.hashsalt"] = "exifray"  # stable ids: the same analysis gives the same file


def figure(width: float = 6.4, height: float = 4.0) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    figure_setup()
    return plt.subplots(figsize=(width, height))


def plain_ticks(axis: object, log: bool) -> None:
    """Tick labels a person reads: plain numbers at 1, 2 and 5 per decade on a log axis (no minor-tick labels),
    at most 6 on a linear one; `declutter` hides any that would still touch."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if log:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))  # type: ignore[attr-defined]
        axis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]
    else:
        axis.set_major_locator(MaxNLocator(nbins=6))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # type: ignore[attr-defined]


def declutter(fig: Figure) -> None:
    """Hide each tick label that would overlap the one before it on its axis (long category names, crowded log
    decades): the report must never print labels over each other."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            kept = None
            for label in labels:
                if not label.get_visible() or not label.get_text():
                    continue
                box = label.get_window_extent(renderer).expanded(1.1, 1.1)
                if kept is not None and box.overlaps(kept):
                    label.set_visible(False)
                else:
                    kept = box


def category_order(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order (fusion_width 32, 64, 128), then text in alphabetical order."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value
