"""Evaluation progress: episodes done / total, per stage, while the agent loop runs them.

The loop (agents/loop.py) advances all episodes together in shared batches and calls its
`on_progress` hook after each batch; this feeds one StageProgress line from the episodes' `done`
flags: `eval: episode 37/90  base 15/30  sft 12/30  dpo 10/30  left 0:02:10`.
"""

from __future__ import annotations

from collections import Counter

from replica.agents.loop import Episode
from replica.progress import StageProgress


class EpisodeProgress:
    """`with EpisodeProgress(episodes) as progress: run_episodes(..., on_progress=progress.update)`."""

    def __init__(self, episodes: list[Episode], label: str = "eval", **display) -> None:
        self.episodes = episodes
        self.totals = Counter(_stage(e) for e in episodes)
        self.bar = StageProgress(label, len(episodes), "episode", **display)

    def __enter__(self) -> EpisodeProgress:
        self.update()
        return self

    def __exit__(self, *exc) -> None:
        self.update()
        self.bar.close()

    def update(self, episodes: list[Episode] | None = None) -> None:
        """Show how many episodes are done, per stage (`episodes`: the loop's list, the same one)."""
        done = Counter(_stage(e) for e in self.episodes if e.done)
        info = "  ".join(f"{stage} {done[stage]}/{total}" for stage, total in self.totals.items())
        self.bar.update(sum(done.values()), info)


def _stage(episode: Episode) -> str:
    target = episode.meta.get("target")
    stage = getattr(target, "stage", "episodes")
    return f"{stage} (cross)" if getattr(target, "replica", None) else stage
