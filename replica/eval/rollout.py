"""Roll replicas out on held-out tasks and score every episode.

One `Target` is one model to evaluate (a contributor's stage: base, sft or dpo, as a loaded
adapter name). All targets' episodes go to the agent loop together, so one batch may mix adapters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replica.agents.envs.base import Environment, get_environment
from replica.agents.loop import Episode, GenerationSettings, run_episodes
from replica.agents.sandbox import Sandbox
from replica.eval.checks import check_episode, read_check, reference_actions, replay
from replica.eval.metrics import check_tool_calls, step_agreement
from replica.eval.progress import EpisodeProgress


@dataclass(frozen=True)
class Target:
    """A model under evaluation: whose tasks, which stage, which loaded adapter (None = base), and
    whose replica it is (None: the task owner's own; another id in the cross-success matrix)."""

    contributor: str
    stage: str
    adapter: str | None
    replica: str | None = None


def build_episodes(
    tasks: list[dict[str, Any]], target: Target, k: int, max_turns: int, env_override: str | None = None
) -> list[Episode]:
    """k episodes per held-out task (`tasks/heldout` rows) for one target, each on a fresh environment."""
    episodes = []
    for task in tasks:
        env_cls = _environment(task, env_override)
        for sample in range(k):
            messages = [{"role": "system", "content": task["system"]}] if task.get("system") else []
            messages.append({"role": "user", "content": task["instruction"]})
            env = env_cls(task.get("initial_state")) if env_cls else None
            episodes.append(
                Episode(
                    messages=messages,
                    tools=task.get("tools") or (env.tool_schemas() if env else None),
                    sandbox=Sandbox(env, max_calls=4 * max_turns) if env else None,
                    adapter=target.adapter,
                    max_turns=max_turns,
                    meta={"target": target, "task": task, "sample": sample},
                )
            )
    return episodes


def roll_out(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    episodes: list[Episode],
    settings: GenerationSettings,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Run every episode through the agent loop and return one scored row per episode."""
    with EpisodeProgress(episodes) as progress:
        run_episodes(model, tokenizer, episodes, settings, batch_size=batch_size, on_progress=progress.update)
    expected: dict[tuple[str, str], dict | None] = {}
    rows = []
    for episode in episodes:
        task = episode.meta["task"]
        key = (task["contributor_id"], task["id"])
        if key not in expected:
            expected[key] = expected_end_state(task, episode)
        rows.append(score_episode(episode, expected[key]))
    return rows


def expected_end_state(task: dict[str, Any], episode: Episode) -> dict[str, Any] | None:
    """The end state the contributor's own actions reach from the task's initial state."""
    if episode.sandbox is None:
        return None
    env = replay(
        type(episode.sandbox.env), task.get("initial_state"), reference_actions(task["reference_messages"])
    )
    return env.snapshot()


def score_episode(episode: Episode, expected_state: dict[str, Any] | None) -> dict[str, Any]:
    """One results.csv row: the verdict, the tool-call checks and the step agreement of an episode."""
    target: Target = episode.meta["target"]
    task = episode.meta["task"]
    check = read_check(task.get("check"), where=f"task {task['id']} check")
    end_state = episode.sandbox.env.snapshot() if episode.sandbox else None
    verdict = check_episode(check, end_state, episode.final_answer, expected_state)
    reference = reference_actions(task["reference_messages"])
    calls = check_tool_calls(episode.tool_calls, reference, episode.tools)
    return {
        "contributor": target.contributor,
        "replica": target.replica or target.contributor,
        "stage": target.stage,
        "task_id": task["id"],
        "sample": episode.meta["sample"],
        "reward": verdict.reward,
        "state_ok": verdict.state_ok,
        "answer_ok": verdict.answer_ok,
        "missing_strings": json.dumps(verdict.missing_strings),
        "failed_facts": json.dumps(verdict.failed_facts),
        "turns": episode.turns,
        "stop_reason": episode.stop_reason,
        "tool_calls": len(episode.tool_calls),
        "tool_errors": json.dumps(_counts(episode.tool_errors), sort_keys=True),
        "call_checks": json.dumps(calls),
        "step_agreement": step_agreement(episode.tool_calls, reference),
        "generated_tokens": episode.generated_tokens,
        "final_answer": episode.final_answer,
    }


def _environment(task: dict[str, Any], env_override: str | None) -> type[Environment] | None:
    name = task.get("env") or env_override
    return get_environment(name) if name else None


def _counts(items: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
