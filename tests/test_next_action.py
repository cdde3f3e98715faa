"""scripts/next_action.py: the actions a demonstration takes, and a replica's probability of each."""

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "data" / "demo" / "base"


def _script():
    spec = importlib.util.spec_from_file_location("next_action", ROOT / "scripts" / "next_action.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": {"order_id": "O-1"}}}


CONVERSATION = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "Where is my order O-1?"},
    {"role": "assistant", "content": "", "tool_calls": [_call("get_order")]},
    {"role": "tool", "name": "get_order", "content": '{"status": "delayed"}'},
    {"role": "assistant", "content": "Order O-1 is delayed."},
]


def test_each_assistant_turn_is_one_step_named_by_its_first_call_or_the_reply():
    script = _script()
    assert script.demonstrated_steps(CONVERSATION) == [(2, "get_order"), (4, script.REPLY)]


def test_action_probabilities_are_a_sub_distribution_of_the_next_tokens():
    """Calls to different tools are disjoint continuations of `<tool_call>`, and the reply is its
    complement, so the actions' probabilities are each in (0, 1] and sum to at most 1."""
    from transformers import AutoModelForCausalLM

    from replica.agents.loop import render_prompt
    from replica.model import load_tokenizer

    script = _script()
    tokenizer = load_tokenizer(str(BASE))
    model = AutoModelForCausalLM.from_pretrained(str(BASE)).eval()
    prompt = render_prompt(tokenizer, CONVERSATION[:2], None)
    scores = script.action_log_probs(
        model, tokenizer, prompt, ["get_order", "issue_refund", "verify_identity"]
    )

    assert set(scores) == {"get_order", "issue_refund", "verify_identity", script.REPLY}
    probabilities = [math.exp(s) for s in scores.values()]
    assert all(0.0 < p <= 1.0 for p in probabilities)
    assert sum(probabilities) <= 1.0 + 1e-5
    assert len({round(s, 6) for s in scores.values()}) == 4  # the tools are told apart


def test_set_overrides_reach_the_config_that_names_the_replica(tmp_path):
    """`--set` works as on `replica`: a run made with overrides is scored by giving them again."""
    from replica.errors import UserError

    script = _script()
    with pytest.raises(UserError, match="nowhere.*no published sft adapter of alice"):
        script.main(
            [
                str(ROOT / "configs" / "demo.yaml"),
                "--contributor",
                "alice",
                "--set",
                f"output_dir={tmp_path / 'nowhere'}",
            ]
        )
