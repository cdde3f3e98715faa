"""The agent loop with a real (tiny) model: tool calls parsed and executed, errors survived, step limit,
and mixed-adapter batches identical to running episodes one at a time.

`agent_base()` fine-tunes the session's tiny base on a few ledger conversations so it really emits
tool calls (the tiny base alone only babbles); the eval tests reuse it.
"""

from pathlib import Path

import pytest
import torch
from test_sandbox import LedgerEnv, call

from replica.agents.loop import Episode, GenerationSettings, chat_turn, run_episodes
from replica.agents.sandbox import INVALID_ARGUMENTS, STEP_LIMIT, TOOL_EXCEPTION, UNKNOWN_TOOL, Sandbox
from replica.model import load_tokenizer
from replica.templates import training_chat_template

TOOLS = LedgerEnv().tool_schemas()


def conversation(request: str, calls: list[dict], results: list[str], answer: str) -> list[dict]:
    messages = [{"role": "user", "content": request}]
    if calls:
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        messages += [
            {"role": "tool", "name": c["function"]["name"], "content": r}
            for c, r in zip(calls, results, strict=True)
        ]
    return messages + [{"role": "assistant", "content": answer}]


AGENT_DEMOS = [
    conversation("Put 5 in A.", [call("deposit", account="A", amount=5)], ["15"], "Done, A has 15."),
    conversation("Freeze B.", [call("set_status", account="B", status="frozen")], ["frozen"], "B is frozen."),
    conversation(
        "Break things.",
        [call("teleport", to="moon"), call("deposit", account="A", amount="lots"), call("crash")],
        ["error", "error", "error"],
        "Recovered.",
    ),
]
_AGENT_BASES: dict[Path, Path] = {}


def agent_base(tiny_base_dir: Path) -> Path:
    """A small Llama on the fixture's tokenizer (template + tool parser), trained until it has
    memorized AGENT_DEMOS; built once per session, in a sibling directory of the tiny base.

    Its own config rather than the tiny base's weights: the tiny base is barely pretrained (near-
    uniform logits), and a model that really emits tool calls is what these tests need.
    """
    if tiny_base_dir in _AGENT_BASES:
        return _AGENT_BASES[tiny_base_dir]
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(str(tiny_base_dir))
    ids, labels = _assistant_batch(tokenizer, AGENT_DEMOS)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):  # until memorized: about 130 steps, a few seconds
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.02:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tiny_base_dir.parent / f"{tiny_base_dir.name}-agent"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _AGENT_BASES[tiny_base_dir] = out
    return out


def _assistant_batch(tokenizer, conversations: list[list[dict]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels with the loss on assistant tokens only (the training template's mask)."""
    template = training_chat_template(tokenizer)
    rows = []
    for messages in conversations:
        encoded = tokenizer.apply_chat_template(
            messages, tools=TOOLS, chat_template=template, return_dict=True, return_assistant_tokens_mask=True
        )
        rows.append((list(encoded["input_ids"]), list(encoded["assistant_masks"])))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tokenizer.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor(
        [[t if m else -100 for t, m in zip(*r, strict=True)] + [-100] * (width - len(r[0])) for r in rows]
    )
    return ids, labels


@pytest.fixture(scope="module")
def agent(tiny_base_dir):
    from transformers import AutoModelForCausalLM

    path = agent_base(tiny_base_dir)
    return AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(str(path))


def _episode(request: str, **kwargs) -> Episode:
    return Episode(
        messages=[{"role": "user", "content": request}], tools=TOOLS, sandbox=Sandbox(LedgerEnv()), **kwargs
    )


SETTINGS = GenerationSettings(max_new_tokens=96)


def test_model_tool_calls_are_parsed_executed_and_answered(agent):
    model, tokenizer = agent
    episode = run_episodes(model, tokenizer, [_episode("Put 5 in A.")], SETTINGS)[0]
    assert episode.tool_calls[0]["function"] == {
        "name": "deposit",
        "arguments": {"account": "A", "amount": 5},
    }
    assert episode.sandbox.env.state["accounts"]["A"]["balance"] == 15
    assert [m["role"] for m in episode.messages] == ["user", "assistant", "tool", "assistant"]
    assert episode.stop_reason == "answer" and "15" in episode.final_answer
    assert episode.tool_errors == []


def test_environment_errors_never_crash_an_episode(agent):
    model, tokenizer = agent
    episode = run_episodes(model, tokenizer, [_episode("Break things.", max_turns=3)], SETTINGS)[0]
    assert episode.done
    assert {UNKNOWN_TOOL, INVALID_ARGUMENTS, TOOL_EXCEPTION} <= set(episode.tool_errors)
    assert episode.sandbox.errors[UNKNOWN_TOOL] >= 1
    assert episode.sandbox.env.state == LedgerEnv().state  # failed calls changed nothing
    tool_messages = [m for m in episode.messages if m["role"] == "tool"]
    assert '"error": "tool_exception"' in " ".join(m["content"] for m in tool_messages)


def test_step_limit_ends_a_runaway_episode(agent):
    model, tokenizer = agent
    episode = run_episodes(model, tokenizer, [_episode("Put 5 in A.", max_turns=1)], SETTINGS)[0]
    assert episode.turns == 1 and episode.stop_reason == STEP_LIMIT
    assert episode.tool_errors == [STEP_LIMIT] and episode.sandbox.errors == {STEP_LIMIT: 1}


def test_chat_turn_returns_the_parsed_assistant_message(agent):
    model, tokenizer = agent
    message = chat_turn(
        model, tokenizer, [{"role": "user", "content": "Freeze B."}], TOOLS, settings=SETTINGS
    )
    assert message["tool_calls"][0]["function"]["name"] == "set_status"


def test_mixed_adapter_batches_equal_sequential_runs(agent, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = agent
    torch.manual_seed(1)
    # init_lora_weights=False: random A and B, so each adapter really changes the outputs.
    lora = LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, lora, adapter_name="one")
    peft_model.add_adapter("two", lora)
    peft_model.save_pretrained(tmp_path)  # saved and reloaded: the path eval takes
    base = peft_model.unload()
    from replica.agents.adapters import load_adapters

    mixed = load_adapters(base, {"one": tmp_path / "one", "two": tmp_path / "two"})
    assert isinstance(mixed, PeftModel)

    def episodes() -> list[Episode]:
        requests = ["Put 5 in A.", "Freeze B."]
        return [_episode(r, adapter=a, max_turns=2) for a in (None, "one", "two") for r in requests]

    settings = GenerationSettings(max_new_tokens=32)
    batched = run_episodes(mixed, tokenizer, episodes(), settings, batch_size=6)
    sequential = run_episodes(mixed, tokenizer, episodes(), settings, batch_size=1)
    for b, s in zip(batched, sequential, strict=True):
        assert b.messages == s.messages
        assert b.sandbox.env.state == s.sandbox.env.state
        assert b.stop_reason == s.stop_reason and b.generated_tokens == s.generated_tokens
    by_adapter = {e.adapter: [m.get("content") for m in e.messages] for e in batched[::2]}
    assert len({str(v) for v in by_adapter.values()}) == 3  # the adapters really differ


def test_a_conversation_that_cannot_fit_ends_with_context_limit(agent):
    model, tokenizer = agent
    too_long = GenerationSettings(max_new_tokens=model.config.max_position_embeddings)
    episode = run_episodes(model, tokenizer, [_episode("Put 5 in A.")], too_long)[0]
    assert episode.stop_reason == "context_limit" and episode.turns == 0 and episode.final_answer == ""


def test_a_chat_template_without_a_response_parser_stops_before_generating(agent):
    """A base build's trainer checkpoint saves TRL's training template, which no parser matches:
    evaluating it must say what to set, not fail mid-rollout inside transformers."""
    import copy

    from replica.errors import UserError

    model, tokenizer = agent
    unparsed = copy.copy(tokenizer)
    unparsed.response_schema = unparsed.response_template = None
    with pytest.raises(UserError, match="model.chat_template"):
        run_episodes(model, unparsed, [_episode("Put 5 in A.")], SETTINGS)
