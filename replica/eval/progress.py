"""Evaluation progress: episodes done / total, per stage, while the agent loop runs them.

The loop (agents/loop.py) advances all episodes together in shared batches and has no progress
hook, so a watcher thread reads the episodes' `done` flags twice a second and feeds one
StageProgress line: `eval: episode 37/90  base 15/30  sft 12/30  dpo 10/30  left 0:02:10`.
Reading a flag another thread sets is safe in Python; the watcher never writes to an episode.
"""

from __future__ import annotations

import threading
from collections import Counter

from replica.agents.loop import Episode
from replica.progress import StageProgress


class EpisodeProgress:
    """`with EpisodeProgress(episodes): run_episodes(...)` shows the episodes finishing."""

    def __init__(self, episodes: list[Episode], label: str = "eval", poll_s: float = 0.5, **display) -> None:
        self.episodes = episodes
        self.poll_s = poll_s
        self.totals = Counter(_stage(e) for e in episodes)
        self.bar = StageProgress(label, len(episodes), "episode", **display)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="eval-progress")

    def __enter__(self) -> EpisodeProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        self.bar.close()

    def update(self) -> None:
        done = Counter(_stage(e) for e in self.episodes if e.done)
        info = "  ".join(f"{stage} {done[stage]}/{total}" for stage, total in self.totals.items())
        self.bar.update(sum(done.values()), info)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.update()


def _stage(episode: Episode) -> str:
    target = episode.meta.get("target")
    stage = getattr(target, "stage", "episodes")
    return f"{stage} (cross)" if getattr(target, "replica", None) else stage
