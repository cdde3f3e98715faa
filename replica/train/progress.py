"""Training progress as one line per stage: contributor and stage, step / total, loss, tokens per
second and time left (replica/progress.py draws it). A transformers TrainerCallback, so it sees
every optimizer step of TRL's trainers, resumed runs included, without touching their loops."""

from __future__ import annotations

from transformers import TrainerCallback

from replica.progress import Pace, StageProgress


class TrainProgress(TrainerCallback):
    """Feeds a StageProgress from the Trainer's state (main process only)."""

    def __init__(self, label: str, **display) -> None:
        self.label = label
        self.display = display  # StageProgress options (stream, every_s, clock) for tests
        self.bar: StageProgress | None = None
        self.loss: float | None = None
        self.tokens: Pace | None = None  # tokens seen over the recent steps: tok/s now

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = StageProgress(
                self.label, state.max_steps, "step", start=state.global_step, **self.display
            )
            self.tokens = Pace(self.bar.clock(), state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer logs after the step's on_step_end: show the new loss with that step's count.
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            self.on_step_end(args, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        info = [f"loss {self.loss:.3f}"] if self.loss is not None else []
        self.tokens.add(self.bar.clock(), state.num_input_tokens_seen or 0)
        rate = self.tokens.per_second()
        if rate:
            info.append(f"{rate:,.0f} tok/s")
        self.bar.update(state.global_step, "  ".join(info))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
