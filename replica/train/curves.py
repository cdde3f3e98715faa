"""Training curves of a stage as a PNG next to its adapter (`training_curves.png`).

Read from the Trainer's log history (kept in every checkpoint, so a resumed stage draws its whole
run): the training loss and, when there is a held-out split, the evaluation loss; for DPO also
the reward margin (chosen minus rejected implicit reward) and the preference accuracy (how often
chosen scores above rejected), the two numbers that say whether DPO is learning the preferences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

CURVES_NAME = "training_curves.png"
_PNG_METADATA = {"Software": None}  # no version strings: reruns give the same bytes
# (panel title, [(log key, legend label)]) in drawing order; panels without data are left out.
PANELS = [
    ("loss", [("loss", "train"), ("eval_loss", "held out")]),
    ("reward margin", [("rewards/margins", "train"), ("eval_rewards/margins", "held out")]),
    ("preference accuracy", [("rewards/accuracies", "train"), ("eval_rewards/accuracies", "held out")]),
]


def series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged metric."""
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    return [float(s) for s, _ in points], [float(v) for _, v in points]


def plot_training_curves(history: list[dict[str, Any]], title: str, path: Path) -> Path | None:
    """Draw every panel that has data; None (no file) when nothing was logged."""
    panels = [(name, lines) for name, lines in PANELS if any(series(history, key)[0] for key, _ in lines)]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, lines) in zip(axes[0], panels, strict=True):
        for key, label in lines:
            steps, values = series(history, key)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)
    return path
