"""The agent loop's caches (turn cache, shared prefix): greedy episodes are token-for-token the same
with and without each of them, for the base, one adapter and mixed-adapter batches, including a
conversation that runs into the context limit and prompts that do not share a prefix; and the
caches really save work (fewer prompt tokens computed) within their memory bound.
"""

from dataclasses import replace

import pytest
import torch
from test_agents_loop import TOOLS, agent_base
from test_sandbox import LedgerEnv

from replica.agents.cache_store import CacheStore
from replica.agents.kv_cache import RowCache
from replica.agents.loop import Episode, GenerationSettings, render_prompt, run_episodes
from replica.agents.sandbox import Sandbox
from replica.model import load_tokenizer

REQUESTS = ["Put 5 in A.", "Freeze B.", "Break things.", "Put 5 in A please."]
NO_CACHE = GenerationSettings(max_new_tokens=48, turn_cache=False, prefix_cache=False)
CACHED = {
    "turn": replace(NO_CACHE, turn_cache=True),
    "prefix": replace(NO_CACHE, prefix_cache=True),
    "both": replace(NO_CACHE, turn_cache=True, prefix_cache=True),
}


@pytest.fixture(scope="module")
def agent(tiny_base_dir):
    from transformers import AutoModelForCausalLM

    path = agent_base(tiny_base_dir)
    return AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(str(path))


@pytest.fixture(scope="module")
def mixed(tiny_base_dir, tmp_path_factory):
    """The agent base with two random LoRA adapters ("one", "two") loaded by name, as eval loads them
    (its own copy: PEFT injects the adapters into the model it wraps)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from replica.agents.adapters import load_adapters

    path = agent_base(tiny_base_dir)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(str(path))
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, lora, adapter_name="one")
    peft_model.add_adapter("two", lora)
    saved = tmp_path_factory.mktemp("adapters")
    peft_model.save_pretrained(saved)
    base = peft_model.unload()
    return load_adapters(base, {"one": saved / "one", "two": saved / "two"}), tokenizer


def _episode(
    request: str, system: str | None = None, adapter: str | None = None, max_turns: int = 3
) -> Episode:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": request})
    return Episode(messages, TOOLS, Sandbox(LedgerEnv()), adapter=adapter, max_turns=max_turns)


def _assert_same(runs: list[Episode], baseline: list[Episode]) -> None:
    for run, base in zip(runs, baseline, strict=True):
        assert run.messages == base.messages
        assert run.sandbox.env.state == base.sandbox.env.state
        assert (run.stop_reason, run.turns, run.generated_tokens) == (
            base.stop_reason,
            base.turns,
            base.generated_tokens,
        )


@pytest.mark.parametrize("cache", sorted(CACHED))
def test_base_episodes_are_identical_with_each_cache(agent, cache):
    model, tokenizer = agent
    episodes = lambda: [_episode(r, system="You keep the ledger.") for r in REQUESTS]  # noqa: E731
    baseline = run_episodes(model, tokenizer, episodes(), NO_CACHE, batch_size=4)
    cached = run_episodes(model, tokenizer, episodes(), CACHED[cache], batch_size=4)
    _assert_same(cached, baseline)
    assert sum(e.turns for e in baseline) > len(baseline)  # several turns: the turn cache has work
    # The caches really spare prompt tokens, by at least what the episodes actually run make certain
    # (how many turns a random tiny model takes differs between CPUs, so no fixed ratio): with the
    # turn cache, each later turn of an episode at least does not recompute its first prompt; with
    # the shared prefix, every episode but one reads the prompt part all four share.
    saved = sum(e.prefilled_tokens for e in baseline) - sum(e.prefilled_tokens for e in cached)
    prompts = [render_prompt(tokenizer, e.messages[:2], TOOLS) for e in episodes()]
    floor = 0
    if CACHED[cache].turn_cache:
        floor += sum((e.turns - 1) * len(p) for e, p in zip(baseline, prompts, strict=True))
    if CACHED[cache].prefix_cache:
        shared = next(i for i, column in enumerate(zip(*prompts, strict=False)) if len(set(column)) > 1)
        floor += (len(prompts) - 1) * shared
    assert saved >= floor > 0, (saved, floor)


@pytest.mark.parametrize("cache", sorted(CACHED))
def test_mixed_adapter_batches_are_identical_with_each_cache(mixed, cache):
    model, tokenizer = mixed

    def episodes() -> list[Episode]:
        return [_episode(r, adapter=a) for a in (None, "one", "two") for r in REQUESTS[:2]]

    baseline = run_episodes(model, tokenizer, episodes(), NO_CACHE, batch_size=1)
    batched = run_episodes(model, tokenizer, episodes(), CACHED[cache], batch_size=6)
    single = run_episodes(model, tokenizer, episodes()[2:4], CACHED[cache], batch_size=1)  # one adapter alone
    _assert_same(batched, baseline)
    _assert_same(single, baseline[2:4])
    assert len({str(e.messages) for e in baseline[::2]}) == 3  # the adapters really differ


def test_a_conversation_running_into_the_context_limit_ends_the_same(agent):
    model, tokenizer = agent
    first = render_prompt(tokenizer, _episode(REQUESTS[0]).messages, TOOLS)
    settings = NO_CACHE
    original = model.config.max_position_embeddings
    # The first turn fits; the second (first turn + tool result + header) does not.
    model.config.max_position_embeddings = len(first) + settings.max_new_tokens + 8
    try:
        baseline = run_episodes(model, tokenizer, [_episode(REQUESTS[0])], settings)
        cached = run_episodes(model, tokenizer, [_episode(REQUESTS[0])], replace(settings, **_on()))
    finally:
        model.config.max_position_embeddings = original
    assert baseline[0].stop_reason == "context_limit" and baseline[0].turns == 1
    _assert_same(cached, baseline)


def test_prompts_with_different_prefixes_each_get_their_own_and_match(agent):
    """Two system prompts and none at all in one batch: each row reads only a prefix its own prompt
    starts with (or none), and the episodes equal the uncached ones."""
    model, tokenizer = agent
    systems = ["You keep the ledger.", "You audit the ledger carefully.", None]

    def episodes() -> list[Episode]:
        return [_episode(r, system=s) for s in systems for r in REQUESTS[:2]]

    baseline = run_episodes(model, tokenizer, episodes(), NO_CACHE, batch_size=6)
    cached = run_episodes(model, tokenizer, episodes(), CACHED["prefix"], batch_size=6)
    _assert_same(cached, baseline)
    store = CacheStore(2**30)
    starts = [(None, e.messages, TOOLS) for e in episodes()]
    store.prefill_prefixes(model, tokenizer, starts)
    assert store.prefix_prefills == 3  # one per distinct prefix, not one per episode
    prompts = [render_prompt(tokenizer, e.messages, TOOLS) for e in episodes()]
    for (_, messages, _), prompt in zip(starts, prompts, strict=True):
        found = store.reusable(0, None, prompt)
        assert found.ids == store.prefix_ids(tokenizer, messages, TOOLS) == prompt[: len(found.ids)]
    assert store.reusable(0, "other-adapter", prompts[0]) is None  # keys and values are per adapter
    unrelated = tokenizer("a prompt of another shape entirely")["input_ids"]
    assert store.reusable(0, None, unrelated) is None  # falls back to a full prefill


def test_the_store_keeps_turns_within_its_bound_least_recently_used_first():
    def entry(n: int) -> RowCache:
        return RowCache(list(range(n)), [(torch.zeros(1, 1, n, 4), torch.zeros(1, 1, n, 4))])

    store = CacheStore(max_bytes=entry(10).nbytes * 2)
    store.keep_turn(1, entry(10))
    store.keep_turn(2, entry(10))
    assert store.reusable(1, None, list(range(20))).ids == list(range(10))  # 1 is now the most recent
    store.keep_turn(3, entry(10))  # over the bound: the least recently used (2) goes
    assert store.has_turn(1) and store.has_turn(3) and not store.has_turn(2)
    assert store.evictions == 1 and store.nbytes == entry(10).nbytes * 2
    # A reused turn always leaves the prompt's last token to compute, and stops where prompts differ.
    assert store.reusable(1, None, list(range(10))).ids == list(range(9))
    assert store.reusable(1, None, [0, 1, 2, 99, 4]).ids == [0, 1, 2]
    store.drop_turn(1)
    assert not store.has_turn(1) and store.nbytes == entry(10).nbytes


def _on() -> dict:
    return {"turn_cache": True, "prefix_cache": True}


@torch.inference_mode()
def test_a_batch_reading_cached_starts_computes_what_a_full_prefill_computes(agent):
    """Rows of different lengths, each reading a different cached start (or none), left-padded
    together: every row's next-token logits and keys/values equal those of its own full prefill."""
    from replica.agents.cache_store import _prefill
    from replica.agents.kv_cache import cached_batch, row_caches

    model, tokenizer = agent
    prompts = [render_prompt(tokenizer, _episode(r).messages, TOOLS) for r in REQUESTS[:3]]
    prompts[1] = prompts[1][:20]  # a short row that reads nothing
    prompts[2] = prompts[2][:-40]  # a shorter one that reads more than it computes
    full = [_prefill(model, None, p) for p in prompts]
    reused = [full[0].cropped(len(prompts[0]) - 30), None, full[2].cropped(len(prompts[2]) - 10)]
    layout = cached_batch(model, prompts, reused, tokenizer.pad_token_id, new_tokens=4)
    past = layout.cache.get_seq_length()
    positions = (layout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=layout.input_ids[:, past:],
        attention_mask=layout.attention_mask,
        position_ids=positions[:, past:],
        cache=layout.cache,
    ).logits[:, -1]
    for row, prompt in enumerate(prompts):
        alone = model(input_ids=torch.tensor([prompt])).logits[0, -1]
        torch.testing.assert_close(logits[row], alone, atol=1e-4, rtol=1e-4)
    assert layout.computed == [30, 20, 30]  # row 2 computes 20 of its cached tokens again: one width
    assert past == len(prompts[0]) - 30
    for cut, whole in zip(row_caches(layout.cache, prompts, layout.starts), full, strict=True):
        assert cut.ids == whole.ids
        for (keys, values), (keys_alone, values_alone) in zip(cut.layers, whole.layers, strict=True):
            torch.testing.assert_close(keys, keys_alone, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(values, values_alone, atol=1e-4, rtol=1e-4)
