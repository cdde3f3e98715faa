"""load_replica, Replica.chat and Replica.run on real PEFT adapters over the tiny base."""
# ruff: noqa: F811  (pytest fixtures imported from test_serve_fixtures)

from __future__ import annotations

import json

import pytest
from test_serve_fixtures import make_run, serve_run  # noqa: F401  (fixture)

from replica.agents.batcher import BasePool, GenerationResult
from replica.agents.replica import load_replica
from replica.errors import UserError
from replica.templates import template_hash

QUESTION = [{"role": "user", "content": "Where is my order O-4821?"}]


def test_twenty_replicas_share_one_base(tiny_base_dir, tmp_path):
    contributors = [f"c{i:02d}" for i in range(20)]
    run = make_run(tiny_base_dir, tmp_path / "run", contributors)
    loads_before = BasePool.loads
    replicas = [load_replica(run, c, device="cpu") for c in contributors]
    assert BasePool.loads - loads_before <= 1  # at most the first load; none when already shared
    pool = replicas[0].pool
    assert all(r.pool is pool for r in replicas)
    assert {r.adapter_name for r in replicas} <= set(pool.adapters)
    assert len({r.adapter_hash for r in replicas}) == 20  # twenty distinct adapters, one base
    replies = {json.dumps(r.chat(QUESTION, max_new_tokens=8)) for r in replicas[:3]}
    assert len(replies) == 3  # each adapter really answers with its own weights


def test_template_at_load_is_the_one_recorded_in_training(serve_run):
    replica = load_replica(serve_run, "alice", device="cpu")
    recorded = json.loads((serve_run / "replicas/alice/sft/replica.json").read_text())
    assert template_hash(replica.tokenizer) == recorded["base_model"]["chat_template_hash"]
    assert replica.stage == "sft" and replica.contributor == "alice"


def test_changed_template_is_refused(tiny_base_dir, tmp_path):
    run = make_run(tiny_base_dir, tmp_path / "run", ["dora"])
    config = run / "replicas/dora/sft/tokenizer_config.json"
    data = json.loads(config.read_text())
    template_file = run / "replicas/dora/sft/chat_template.jinja"
    if template_file.exists():
        template_file.write_text(template_file.read_text() + "{# edited #}")
    else:
        data["chat_template"] += "{# edited #}"
        config.write_text(json.dumps(data))
    with pytest.raises(UserError, match="chat template hash"):
        load_replica(run, "dora", device="cpu")


def test_unknown_contributor_and_stage_are_user_errors(serve_run):
    with pytest.raises(UserError, match="known: alice, bob, carol"):
        load_replica(serve_run, "zed", device="cpu")
    with pytest.raises(UserError, match="no dpo adapter"):
        load_replica(serve_run, "alice", stage="dpo", device="cpu")


def test_chat_streams_the_text_it_returns(serve_run):
    replica = load_replica(serve_run / "replicas/bob/sft", device="cpu")  # a stage directory works too
    pieces: list[str] = []
    completion = replica.complete(QUESTION, max_new_tokens=12, on_text=pieces.append)
    assert completion.completion_tokens == 12 and completion.finish_reason == "length"
    assert "".join(pieces) == completion.message["content"]
    assert completion.prompt_tokens == len(replica.prompt_ids(QUESTION))


def test_tool_calls_are_parsed_with_ids_and_dict_arguments(serve_run):
    replica = load_replica(serve_run, "alice", device="cpu")
    prompt = replica.prompt_ids(QUESTION)
    text = '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "O-4821"}}\n</tool_call><|im_end|>'
    ids = replica.tokenizer(text)["input_ids"]
    completion = replica.finish(prompt, GenerationResult(ids, "stop"), None)
    (call,) = completion.message["tool_calls"]
    assert call["function"] == {"name": "get_order", "arguments": {"order_id": "O-4821"}}
    assert call["id"].startswith("call_") and completion.finish_reason == "tool_calls"
    # The reply goes back into the conversation and renders with the same template.
    follow = [*QUESTION, completion.message, {"role": "tool", "tool_call_id": call["id"], "content": "{}"}]
    assert len(replica.prompt_ids(follow)) > len(prompt) + len(ids) - 1


def test_mixed_adapter_batch_equals_one_at_a_time(serve_run):
    alice = load_replica(serve_run, "alice", device="cpu")
    carol = load_replica(serve_run, "carol", device="cpu")
    engine = alice.pool.engine(alice.tokenizer)
    short = alice.prompt_ids(QUESTION)
    long = carol.prompt_ids([{"role": "system", "content": "Be brief."}, *QUESTION])
    together = engine.generate([alice.request(short, 16), carol.request(long, 10)])
    alone = [engine.generate([alice.request(short, 16)])[0], engine.generate([carol.request(long, 10)])[0]]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [len(r.token_ids) for r in together] == [16, 10]  # each row keeps its own budget


def test_run_drives_the_agent_loop_in_the_environment(serve_run):
    replica = load_replica(serve_run, "carol", device="cpu")
    task = {"id": "t1", "instruction": "Refund order O-4821.", "env": "support_desk", "initial_state": None}
    episode = replica.run(task, max_turns=2, max_new_tokens=16)
    assert episode.done and episode.turns >= 1
    assert episode.messages[0] == {"role": "user", "content": "Refund order O-4821."}
    assert episode.messages[1]["role"] == "assistant" and episode.generated_tokens > 0
    assert episode.adapter == replica.adapter_name and episode.meta["contributor"] == "carol"
    assert type(episode.sandbox.env).name == "support_desk"
    with pytest.raises(UserError, match="name an environment"):
        replica.run("hello")


def test_a_conversation_longer_than_the_context_is_refused(serve_run):
    from replica.agents.replica import ContextTooLong

    replica = load_replica(serve_run, "alice", device="cpu")
    long = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(ContextTooLong, match="exceed the model's context of 1024 tokens"):
        replica.chat(long, max_new_tokens=4)
