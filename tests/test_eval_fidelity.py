"""Fidelity matrix, attribution and held-out preference accuracy on cases whose answer is known.

Known answer without training: a reply generated greedily by adapter X is, token by token, X's most
likely continuation, so X fits it better than another adapter does. Each contributor's held-out
demonstrations are written by "their" replica; the matrix must put every contributor's minimum on
their own replica, and attribution accuracy must be 1.
"""

import math

import pytest
import torch

from replica.agents.loop import GenerationSettings, chat_turn
from replica.eval.fidelity import attribution, fidelity_matrix, preference_accuracy, preference_logprobs
from replica.eval.likelihood import demonstration_rows, mean_nll, score_rows
from replica.model import load_tokenizer
from replica.templates import training_chat_template

PROMPTS = ["How do I reset my password?", "Where is my order?", "Can I change my address?"]


@pytest.fixture(scope="module")
def two_replicas(tiny_base_dir, tmp_path_factory):
    """The trained agent model with two random LoRA adapters, `ann` and `bob`, loaded through
    load_adapters (the agent model, not the tiny base: its sharp distributions tell adapters apart)."""
    from peft import LoraConfig, get_peft_model
    from test_agents_loop import agent_base
    from transformers import AutoModelForCausalLM

    from replica.agents.adapters import load_adapters

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(agent_base(tiny_base_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, lora, adapter_name="ann")
    model.add_adapter("bob", lora)
    out = tmp_path_factory.mktemp("replicas")
    model.save_pretrained(out)
    model = load_adapters(model.unload(), {"ann": out / "ann", "bob": out / "bob"})
    return model, load_tokenizer(str(agent_base(tiny_base_dir)))


def _written_by(model, tokenizer, adapter: str | None, prompts: list[str]) -> list[dict]:
    settings = GenerationSettings(max_new_tokens=24)
    rows = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        reply = chat_turn(model, tokenizer, messages, adapter=adapter, settings=settings)
        rows.append(
            {"messages": messages + [{"role": "assistant", "content": reply["content"]}], "tools": None}
        )
    return rows


def test_fidelity_matrix_puts_each_contributor_on_their_own_replica(two_replicas):
    model, tokenizer = two_replicas
    demos = {c: _written_by(model, tokenizer, c, PROMPTS) for c in ("ann", "bob")}
    assert demos["ann"] != demos["bob"]
    template = training_chat_template(tokenizer)
    matrix = fidelity_matrix(model, tokenizer, demos, {"ann": "ann", "bob": "bob", "base": None}, template)
    assert matrix["ann"]["ann"] < matrix["ann"]["bob"]
    assert matrix["bob"]["bob"] < matrix["bob"]["ann"]
    # The cell is the token-weighted mean NLL the likelihood module computes directly.
    direct = mean_nll(
        score_rows(
            model, demonstration_rows(tokenizer, demos["ann"], template), "bob", tokenizer.pad_token_id
        )
    )
    assert matrix["ann"]["bob"] == pytest.approx(direct)
    result = attribution({c: {r: v for r, v in row.items() if r != "base"} for c, row in matrix.items()})
    assert result == {"accuracy": 1.0, "best": {"ann": "ann", "bob": "bob"}, "contributors": 2}


def test_attribution_on_a_hand_made_matrix():
    matrix = {
        "ann": {"ann": 1.0, "bob": 2.0, "cy": 3.0},
        "bob": {"ann": 1.5, "bob": 2.0, "cy": 3.0},  # fits ann's replica best: a miss
        "cy": {"ann": 2.0, "bob": 2.0, "cy": 2.0},  # a three-way tie is no attribution
    }
    result = attribution(matrix)
    assert result["best"] == {"ann": "ann", "bob": "ann", "cy": None}
    assert result["accuracy"] == pytest.approx(1 / 3)
    # One replica is no choice at all: no attribution claim, rather than a trivial 1/1.
    assert math.isnan(attribution({"ann": {"ann": 1.0}, "bob": {"ann": 2.0}})["accuracy"])


def test_preference_accuracy_uses_the_implicit_reward_against_the_reference(two_replicas):
    model, tokenizer = two_replicas
    by_ann = _written_by(model, tokenizer, "ann", PROMPTS)
    by_base = _written_by(model, tokenizer, None, PROMPTS)
    pairs = [
        {
            "prompt": a["messages"][:1],
            "chosen": a["messages"][1:],
            "rejected": b["messages"][1:],
            "tools": None,
        }
        for a, b in zip(by_ann, by_base, strict=True)
        if a["messages"][1:] != b["messages"][1:]
    ]
    assert pairs
    policy = preference_logprobs(model, tokenizer, pairs, "ann")
    reference = preference_logprobs(model, tokenizer, pairs, None)
    # ann's own greedy replies rise relative to the base; the base's fall: every pair ranks right.
    assert preference_accuracy(policy, reference)["accuracy"] == 1.0
    swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]
    policy = preference_logprobs(model, tokenizer, swapped, "ann")
    reference = preference_logprobs(model, tokenizer, swapped, None)
    assert preference_accuracy(policy, reference)["accuracy"] == 0.0


def test_preference_accuracy_by_hand():
    # margins: (−1 − −2) − (−3 − −3) = 1 > 0;  (−2 − −1) − (−1 − −1) = −1 < 0
    result = preference_accuracy(([-1.0, -2.0], [-3.0, -1.0]), ([-2.0, -1.0], [-3.0, -1.0]))
    assert result == {"accuracy": 0.5, "margin": 0.0, "pairs": 2}
    assert math.isnan(preference_accuracy(([], []), ([], []))["accuracy"])


def _plain_scores(model, rows, adapter):
    """The reference: one plain forward pass per whole row, every position projected."""
    from replica.agents.adapters import use_adapter

    scores = []
    with torch.inference_mode(), use_adapter(model, adapter):
        for ids, mask in rows:
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            token_nll = -torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
            scored = torch.tensor(mask[1:], dtype=torch.bool)
            scores.append((float(token_nll[scored].sum()), int(scored.sum())))
    return scores


@pytest.mark.parametrize("first_scored", [41, 30], ids=["after the shared part", "inside it"])
def test_scores_read_from_a_shared_prefix_cache_equal_a_plain_forward_pass(two_replicas, first_scored):
    from replica.eval.likelihood import _shared_prefix

    model, _ = two_replicas
    generator = torch.Generator().manual_seed(0)
    shared = torch.randint(5, 300, (40,), generator=generator).tolist()
    rows = []
    for extra, start in [(20, first_scored), (35, 45), (6, 44)]:
        ids = shared + torch.randint(5, 300, (extra,), generator=generator).tolist()
        mask = [0] * start + [1] * (len(ids) - start - 2) + [0, 1]  # a gap, then the last token
        rows.append((ids, mask))
    # The cache stops before the token that predicts the first scored one.
    assert len(_shared_prefix(model, rows).ids) == min(40, first_scored - 1)
    for adapter in ("ann", None):
        expected = _plain_scores(model, rows, adapter)
        for share_prefix in (True, False):
            got = score_rows(model, rows, adapter, pad_token_id=0, batch_size=2, share_prefix=share_prefix)
            assert [s.tokens for s in got] == [tokens for _, tokens in expected]
            assert [s.nll for s in got] == pytest.approx([nll for nll, _ in expected], rel=1e-4)
