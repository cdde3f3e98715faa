"""Which next action a replica prefers at each step of its contributor's held-out demonstrations.

    python scripts/next_action.py configs/smol.yaml --contributor alice --stage sft

Task success says that an episode failed, not where. This scores every decision a held-out
demonstration makes (before each assistant turn: call tool X, or write the reply), teacher-forced
on the demonstration's own history, under the trained adapter: the log-probability of starting a
call to each tool the contributor's demonstrations use (`<tool_call>` then the tool's name) and of
replying instead (one minus the probability of `<tool_call>` as the first token). It prints, per
kind of task (the task id's middle part, `alice-refund-000` -> `refund`) and step, how often the
demonstrated action is the most likely one, and the mean probability the replica gives it. A step
near 1/(number of actions) is a decision the replica has not learned to read from the request.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPLY = "(reply)"


def demonstrated_steps(messages: list[dict]) -> list[tuple[int, str]]:
    """(index of the assistant message, its action) for each assistant turn of a demonstration."""
    steps = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        calls = message.get("tool_calls") or []
        steps.append((index, calls[0]["function"]["name"] if calls else REPLY))
    return steps


def action_log_probs(model, tokenizer, prompt: list[int], tools: list[str]) -> dict[str, float]:
    """Log-probability of each action at the end of `prompt` (tool names and the reply)."""
    per_token = {
        name: continuation_log_probs(
            model, prompt, tokenizer('<tool_call>\n{"name": "' + name, add_special_tokens=False)["input_ids"]
        )
        for name in tools
    }
    scores = {name: log_probs.sum().item() for name, log_probs in per_token.items()}
    # Every call starts with the `<tool_call>` token, so any call's first log-probability is the
    # probability of calling at all; without tools, score that one token alone.
    first = next(iter(per_token.values()), None)
    if first is None:
        first = continuation_log_probs(
            model, prompt, tokenizer("<tool_call>", add_special_tokens=False)["input_ids"]
        )
    scores[REPLY] = math.log(max(1.0 - math.exp(first[0].item()), 1e-12))
    return scores


def continuation_log_probs(model, prompt: list[int], continuation: list[int]):
    """The log-probability of each token of `continuation` after `prompt`, in one forward pass."""
    import torch

    ids = torch.tensor([prompt + continuation], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    targets = torch.tensor(continuation, device=model.device)[:, None]
    return torch.log_softmax(logits, -1).gather(1, targets)[:, 0]


def main(argv: list[str] | None = None) -> None:
    from replica.eval.inputs import scored_replica_parser

    args = scored_replica_parser(__doc__.split("\n\n")[0]).parse_args(argv)

    from replica.agents.loop import render_prompt
    from replica.agents.replica import to_template_messages
    from replica.config import load_config
    from replica.eval import inputs

    config = load_config(args.config, args.overrides)
    tokenizer, model, name = inputs.load_scored_replica(config, args.contributor, args.stage)
    train = inputs.load_rows(config.prepared_dir, args.contributor, "sft/train")
    used = sorted({a for row in train for _, a in demonstrated_steps(row["messages"]) if a != REPLY})
    examples = inputs.load_rows(config.prepared_dir, args.contributor, "sft/heldout")[: args.limit]
    print(
        f"{len(examples)} held-out demonstrations of {args.contributor}, adapter {name}; actions: "
        f"{', '.join(used)}, {REPLY}"
    )

    right: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for row in examples:
        kind = str(row.get("task_id") or row.get("id", "?-?")).split("-")[1]
        messages = to_template_messages(row["messages"])
        for step, (index, action) in enumerate(demonstrated_steps(messages), start=1):
            scores = action_log_probs(
                model, tokenizer, render_prompt(tokenizer, messages[:index], row.get("tools")), used
            )
            best = max(scores, key=scores.get)
            right[(kind, step, action)].append((best == action, math.exp(scores[action])))

    print(
        "| task kind | step | demonstrated action | n | most likely | mean p |\n| --- | ---: | --- | ---: | ---: | ---: |"
    )
    for (kind, step, action), found in sorted(right.items()):
        hits = sum(ok for ok, _ in found)
        mean_p = sum(p for _, p in found) / len(found)
        print(f"| {kind} | {step} | {action} | {len(found)} | {hits}/{len(found)} | {mean_p:.2f} |")


if __name__ == "__main__":
    from replica.errors import exit_on_user_error

    exit_on_user_error(main)
