"""Earnings: the contributor's rows of the usage ledger, per day and per consumer, with a plot.

Numbers come from `replica usage`'s own report (`agents.usage.usage_report`, restricted to the
contributor), so the studio and the command line can never disagree about what is owed.
"""

from __future__ import annotations

import io
from typing import Any

from replica.agents.usage import usage_report
from replica.errors import UserError
from replica.studio.site import StudioSite


def earnings(site: StudioSite, contributor: str) -> dict[str, Any] | None:
    """The contributor's usage report (with `days`), or None when nothing was served yet."""
    try:
        return usage_report(
            site.ledger_db,
            site.serve.rate_per_1k_tokens,
            site.serve.contributor_share_percent,
            contributor=contributor,
            by_day=True,
        )
    except UserError:  # no ledger yet: the replica has not been served
        return None


def plot_png(report: dict[str, Any] | None, currency: str) -> bytes:
    """A bar chart of the contributor's share per day, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a buffer
    import matplotlib.pyplot as plt

    days = report["days"] if report else []
    figure, axis = plt.subplots(figsize=(6.4, 2.8), dpi=100)
    try:
        if days:
            axis.bar([d["id"] for d in days], [float(d["contributor_share"]) for d in days], color="#3867d6")
            axis.set_xlim(-0.5, max(len(days), 7) - 0.5)  # a bar is never wider than a week's day
            axis.tick_params(axis="x", labelrotation=30, labelsize=8)
        else:
            axis.text(0.5, 0.5, "no requests yet", ha="center", va="center", transform=axis.transAxes)
        axis.set_ylabel(f"your share ({currency})")
        axis.set_title("earnings per day")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)
