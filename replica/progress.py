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
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class Pace:
    """A rate over the last `window` increases of a growing count: units per second now, not since
    the start, so that set-up before the first step, a pause (Ctrl-Z, a machine busy elsewhere) or
    the slow first steps stop skewing it once `window` increases have passed. Samples that do not
    increase the count (an evaluation batch in which no episode finished, a step reported twice)
    are not kept, so they cannot crowd the window."""

    def __init__(self, now: float, count: float = 0, window: int = 10) -> None:
        self.samples: deque[tuple[float, float]] = deque([(now, count)], maxlen=window + 1)

    def add(self, now: float, count: float) -> None:
        if count > self.samples[-1][1]:
            self.samples.append((now, count))

    def per_second(self) -> float | None:
        """Units per second between the oldest and newest sample; None until both differ."""
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        if t1 <= t0 or c1 <= c0:
            return None
        return (c1 - c0) / (t1 - t0)


class StageProgress:
    """Progress of one stage: `update(done, info)` as work completes, `close()` at the end.

    `stream` defaults to stderr; rich draws a live bar when it is a terminal, plain lines are
    written otherwise; both show the same time left (`Pace`: the last ten steps' pace). `start`
    is the count already done (a resumed stage). `clock` is injectable so tests can drive the time.
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
        self.pace = Pace(self.started, start)  # time left from recent steps, not the whole run
        self.last_line: float | None = None
        self._written: tuple[int, str] | None = None  # what the last plain line showed
        self._bar = self._rich_bar() if _is_terminal(self.stream) else None

    def _rich_bar(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit + "s  {task.fields[info]}"),
            TextColumn("{task.fields[left]}"),
            console=Console(file=self.stream),
        )
        self._task = bar.add_task(
            self.label, total=self.total or None, completed=self.start, info="", left=""
        )
        bar.start()
        return bar

    def update(self, done: int, info: str = "") -> None:
        """`done` units of `total` are finished; `info` is shown after the count (loss, speed...)."""
        self.done, self.info = done, info
        self.pace.add(self.clock(), done)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info, left=self.time_left())
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
        if left := self.time_left():
            parts.append(left)
        return "  ".join(parts)

    def time_left(self) -> str:
        """`left H:MM:SS` at the recent pace, or "" when finished or no step has been timed yet."""
        rate = self.pace.per_second()
        if self.done >= self.total or not rate:
            return ""
        return f"left {_duration((self.total - self.done) / rate)}"

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
