"""Adapter rules (what multi-LoRA servers can load) and `--shard K/N` partitioning."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from replica.errors import UserError
from replica.train.adapter_rules import AdapterRuleError, check_adapter
from replica.train.shard import parse_shard, select_shard

GOOD_CONFIG = {"r": 4, "lora_alpha": 8, "bias": "none", "use_dora": False, "modules_to_save": None}


def _adapter(tmp_path, config=None, tensors=None):
    (tmp_path / "adapter_config.json").write_text(json.dumps({**GOOD_CONFIG, **(config or {})}))
    tensors = tensors or {"base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(4, 8)}
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    return tmp_path


def test_a_plain_lora_adapter_passes(tmp_path):
    check_adapter(_adapter(tmp_path), base_vocab_size=400, tokenizer_size=400)


@pytest.mark.parametrize(
    ("config", "tensors", "sizes", "rule"),
    [
        ({"modules_to_save": ["lm_head"]}, None, (400, 400), "no modules_to_save"),
        ({"use_dora": True}, None, (400, 400), "no DoRA"),
        ({"bias": "lora_only"}, None, (400, 400), "bias: none"),
        ({}, None, (400, 401), "no added tokens"),
        ({}, {"base_model.model.lm_head.weight": torch.zeros(2, 2)}, (400, 400), "LoRA factors only"),
        ({}, {"m.q_proj.lora_magnitude_vector": torch.zeros(2)}, (400, 400), "no DoRA"),
    ],
)
def test_each_rule_violation_names_its_rule(tmp_path, config, tensors, sizes, rule):
    with pytest.raises(AdapterRuleError, match=rule):
        check_adapter(_adapter(tmp_path, config, tensors), base_vocab_size=sizes[0], tokenizer_size=sizes[1])


def test_missing_files_are_a_rule_violation(tmp_path):
    with pytest.raises(AdapterRuleError, match="plain PEFT files"):
        check_adapter(tmp_path, base_vocab_size=400, tokenizer_size=400)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_contributors_exactly(count):
    contributors = [f"expert-{i:03d}" for i in range(50)]
    shards = [select_shard(contributors, parse_shard(f"{k}/{count}")) for k in range(count)]
    assigned = [c for shard in shards for c in shard]
    assert sorted(assigned) == contributors  # every contributor once, none twice
    assert len(set(assigned)) == len(assigned)
    if count > 1:
        assert all(shard for shard in shards), "a shard got no contributors out of 50"
    # Deterministic and independent of the others: adding a contributor moves no one.
    more = select_shard([*contributors, "newcomer"], parse_shard(f"0/{count}"))
    assert [c for c in more if c != "newcomer"] == shards[0]


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "0/0"])
def test_bad_shard_specs_are_user_errors(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)
