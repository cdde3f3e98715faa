"""PNG plots of a report: success by stage per contributor, and the fidelity matrix as a heat map.

matplotlib with the Agg backend (no display needed); no timestamps in the files, so reruns give
the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

_PNG_METADATA = {"Software": None}  # keep the bytes free of version strings that vary by machine


def plot_success(report: dict[str, Any], path: Path) -> Path:
    """Grouped bars: one group per contributor, one bar per stage, 95% Wilson interval as error bars."""
    contributors = sorted({e["contributor"] for e in report["results"]})
    stages = [s for s in ("base", "sft", "dpo") if any(e["stage"] == s for e in report["results"])]
    width = 0.8 / max(len(stages), 1)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.6 * len(contributors) + 1), 3.2))
    for index, stage in enumerate(stages):
        entries = {e["contributor"]: e for e in report["results"] if e["stage"] == stage}
        xs, heights, low, high = [], [], [], []
        for position, contributor in enumerate(contributors):
            entry = entries.get(contributor)
            if entry is None or entry.get("success") is None:
                continue
            xs.append(position + (index - (len(stages) - 1) / 2) * width)
            heights.append(entry["success"])
            # max(0, ...): at 0/n or n/n the interval's end equals the rate up to rounding.
            low.append(max(0.0, entry["success"] - entry["success_ci95"][0]))
            high.append(max(0.0, entry["success_ci95"][1] - entry["success"]))
        axes.bar(xs, heights, width, yerr=[low, high], capsize=3, label=stage)
    axes.set_xticks(range(len(contributors)), contributors)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("held-out task success")
    axes.set_title("Success by stage (95% CI)")
    axes.legend(frameon=False)
    return _save(figure, path)


def plot_fidelity(report: dict[str, Any], path: Path) -> Path | None:
    """Heat map of held-out demonstration NLL: rows contributors, columns replicas (lower = closer)."""
    fidelity = report.get("fidelity") or {}
    if not fidelity.get("matrix") or not fidelity.get("replicas"):
        return None
    labels = ("replica", "contributor's held-out demonstrations", "NLL (nats/token)")
    return _heatmap(fidelity["matrix"], fidelity["replicas"], "Fidelity matrix", labels, "viridis_r", path)


def plot_cross_success(report: dict[str, Any], path: Path) -> Path | None:
    """Heat map of success: rows task owners, columns replicas (own tasks should be brightest)."""
    cross = report.get("cross_success") or {}
    if not cross.get("matrix") or not cross.get("replicas"):
        return None
    labels = ("replica (final stage)", "whose held-out tasks", "success")
    return _heatmap(
        cross["matrix"], cross["replicas"], "Success on each contributor's tasks", labels, "viridis", path
    )


def _heatmap(
    matrix: dict[str, dict[str, float]],
    columns: list[str],
    title: str,
    labels: tuple[str, str, str],
    cmap: str,
    path: Path,
) -> Path:
    rows = list(matrix)
    values = [[_nan(matrix[r].get(c)) for c in columns] for r in rows]
    figure, axes = plt.subplots(figsize=(1.2 * len(columns) + 2.5, 0.8 * len(rows) + 1.8))
    image = axes.imshow(values, cmap=cmap)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", color="white", fontsize=8)
    figure.colorbar(image, ax=axes, label=labels[2])
    axes.set_title(title)
    return _save(figure, path)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata=_PNG_METADATA)
    plt.close(figure)
    return path
