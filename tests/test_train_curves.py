"""Training curves next to the adapter, and `report_to: tensorboard` event files that outlive the run."""

from __future__ import annotations

from matplotlib.image import imread
from train_fixtures import write_config, write_prepared

from replica.config import load_config
from replica.train.context import build_context
from replica.train.curves import plot_training_curves, series
from replica.train.sft import train_sft

DPO_HISTORY = [
    {"step": 1, "loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.5},
    {"step": 2, "loss": 0.61, "rewards/margins": 0.3, "rewards/accuracies": 0.75},
    {"step": 2, "eval_loss": 0.65, "eval_rewards/margins": 0.2, "eval_rewards/accuracies": 0.5},
]


def test_curves_have_one_panel_per_logged_metric(tmp_path):
    assert series(DPO_HISTORY, "rewards/margins") == ([1.0, 2.0], [0.0, 0.3])
    dpo = plot_training_curves(DPO_HISTORY, "alice / dpo", tmp_path / "dpo.png")
    sft = plot_training_curves([{"step": 1, "loss": 2.0}], "alice / sft", tmp_path / "sft.png")
    assert imread(dpo).shape[1] == 3 * 420 and imread(sft).shape[1] == 420
    assert plot_training_curves([{"step": 1, "learning_rate": 1e-3}], "x", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_report_to_tensorboard_writes_event_files_offline_that_survive_publishing(tmp_path, tiny_base_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared, sft={"report_to": "tensorboard"}))
    path = train_sft(build_context(config), "alice")
    logs = config.run_dir / "tensorboard" / "alice" / "sft"
    events = list(logs.glob("events.out.tfevents.*"))
    assert events, f"no event files under {logs}"
    accumulator = EventAccumulator(str(logs))
    accumulator.Reload()
    losses = accumulator.Scalars("train/loss")
    assert [point.step for point in losses] == [1, 2, 3, 4]
    assert (path / "training_curves.png").exists()
