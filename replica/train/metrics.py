"""Final train/eval metrics of a stage, read from the Trainer's log history.

The log history is part of every checkpoint, so a resumed run reports the same numbers an
uninterrupted run would (a fresh `train()` return value would only cover the resumed steps).
"""

from __future__ import annotations

from transformers import Trainer


def stage_metrics(trainer: Trainer, has_eval: bool) -> dict[str, float]:
    """Last logged training loss, mean training loss, steps, and (when held out) a final eval."""
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    metrics: dict[str, float] = {"global_step": float(trainer.state.global_step)}
    if losses:
        metrics["train_loss_last"] = float(losses[-1])
        metrics["train_loss_mean"] = float(sum(losses) / len(losses))
    else:  # fewer steps than logging_steps: only the Trainer's end-of-training summary has a loss
        summary = [entry["train_loss"] for entry in history if "train_loss" in entry]
        if summary:
            metrics["train_loss_mean"] = float(summary[-1])
    if has_eval:
        for key, value in trainer.evaluate().items():
            if isinstance(value, int | float) and not key.endswith(("runtime", "per_second")):
                metrics[key] = float(value)
    return metrics
