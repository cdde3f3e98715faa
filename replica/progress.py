"""One progress display per long stage: a rich bar on a terminal, plain periodic lines otherwise.

Training shows `train alice/sft  step 12/48  loss 1.23  812 tok/s  left 0:01:05`; evaluation
shows episodes done per stage. On a terminal the line is a live `rich` bar on stderr; in CI or a
log file (stderr not a terminal) it is a plain line at most every `every_s` seconds (30, and only
when the count moved) and a last one at the end, so a log shows what ran and how long it took
without a redrawn bar's control codes or a wall of identical lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class StageProgress:
    """Progress of one stage: `update(done, info)` as work completes, `close()` at the end.

    `stream` defaults to stderr; rich draws a live bar when it is a terminal, plain lines are
    written otherwise. `start` is the count already done (a resumed stage), so time left is
    estimated from this session's pace. `clock` is injectable so tests can drive the time.
    """

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "step",
        stream: TextIO | None = None,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        start: int = 0,
    ) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.clock = every_s, clock
        self.started = clock()
        self.start = start  # where this session began: a resumed run starts past 0
        self.done, self.info = start, ""
        self.last_line: float | None = None
        self._written: tuple[int, str] | None = None  # what the last plain line showed
        self._bar = self._rich_bar() if _is_terminal(self.stream) else None

    def _rich_bar(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit + "s  {task.fields[info]}"),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
        )
        self._task = bar.add_task(self.label, total=self.total or None, completed=self.start, info="")
        bar.start()
        return bar

    def update(self, done: int, info: str = "") -> None:
        """`done` units of `total` are finished; `info` is shown after the count (loss, speed...)."""
        self.done, self.info = done, info
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info)
            return
        now = self.clock()
        if done >= self.total > 0:
            return  # finished: close() writes the last line once, with the final info
        moved = self._written is None or self._written[0] != done  # no line that says nothing new
        if self.last_line is None or (now - self.last_line >= self.every_s and moved):
            self._write_line(now)

    def line(self, now: float | None = None) -> str:
        """The plain line: label, count, percent, info, elapsed and time left."""
        now = self.clock() if now is None else now
        elapsed = now - self.started
        if self.total:
            parts = [f"{self.label}: {self.unit} {self.done}/{self.total} ({100 * self.done // self.total}%)"]
        else:  # an unknown total (records of a stream): the count alone
            parts = [f"{self.label}: {self.done:,} {self.unit}s"]
        if self.info:
            parts.append(self.info)
        parts.append(f"elapsed {_duration(elapsed)}")
        finished = self.done - self.start
        if self.done < self.total and finished > 0:
            parts.append(f"left {_duration(elapsed / finished * (self.total - self.done))}")
        return "  ".join(parts)

    def _write_line(self, now: float) -> None:
        self.last_line, self._written = now, (self.done, self.info)
        print(self.line(now), file=self.stream, flush=True)

    def close(self) -> None:
        """End the display: stop the live bar, or write the final plain line."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._written != (self.done, self.info):  # the last line shows where it ended
            self._write_line(self.clock())

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
