"""matplotlib with the file-only Agg backend, and the one way figures are finished and written (PNG)."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, title=None):
    """Give ``fig`` its title, lay it out, write it to ``path`` (PNG, 120 dpi) and close it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
