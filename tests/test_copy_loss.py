"""`pretrain.copy_weight` (replica/bases/copy_loss.py): which tokens it weights, that the loss is
the plain next-token loss plus the extra weight on exactly those, and a build that uses it."""

import json
from pathlib import Path

import pytest

from replica.model import load_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


def _first_conversation() -> dict:
    return json.loads((FIXTURES / "tiny_corpus.jsonl").read_text().splitlines()[0])


def test_copy_weights_mark_the_repeated_values_and_nothing_else(tiny_base_dir):
    import torch

    from replica.bases.copy_loss import copy_weights

    tokenizer = load_tokenizer(str(tiny_base_dir))
    row = _first_conversation()
    text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    weights = copy_weights(tokenizer, ids, 4.0)[0]
    marked = "".join(tokenizer.decode([int(i)]) for i, w in zip(ids[0], weights, strict=True) if w == 4.0)
    # O-964 is given by the user, then repeated four times (call, result, call, reply): its three
    # digits each time, in order; the total 54 repeats as the refund's amount (the reply's
    # "54 dollars" is prose, not an amount the gate's pattern names); "delivered" appears once.
    assert marked.replace(" ", "") == "964" * 3 + "54" + "964"
    assert set(weights.tolist()) == {1.0, 4.0}


def test_the_copy_weighted_loss_adds_the_extra_weight_on_copied_tokens_only(tiny_base_dir, tmp_path):
    import torch
    from datasets import Dataset, Features, Json, List
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from replica.bases.copy_loss import copy_weighted_trainer, copy_weights

    tokenizer = load_tokenizer(str(tiny_base_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    row = _first_conversation()
    dataset = Dataset.from_list([row], features=Features({"messages": List(Json()), "tools": Json()}))
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1)
    text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    labels = ids.clone()
    labels[0, :5] = -100  # unscored positions stay unscored
    inputs = {"input_ids": ids, "labels": labels}

    def loss(weight: float) -> float:
        trainer = copy_weighted_trainer(
            weight, model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        with torch.no_grad():
            return trainer.compute_loss(model, dict(inputs)).item()

    with torch.no_grad():
        plain = model(input_ids=ids, labels=labels).loss.item()
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    token_loss = -log_probs.gather(-1, ids[0, 1:, None])[:, 0]
    copied = copy_weights(tokenizer, ids, 2.0)[0, 1:] == 2.0
    scored = labels[0, 1:] != -100
    assert copied.sum() > 0
    assert loss(1.0) == pytest.approx(plain, rel=1e-5)  # weight 1: the model's own mean loss
    extra = 2.0 * token_loss[copied & scored].sum().item() / scored.sum().item()
    assert loss(3.0) == pytest.approx(plain + extra, rel=1e-5)


def test_a_base_builds_with_copy_weighted_pretraining_and_records_it(tmp_path):
    import yaml

    from replica.artifacts import read_json
    from replica.bases.tiny import build_key, ensure_base, load_build_config
    from replica.errors import UserError

    raw = yaml.safe_load((FIXTURES / "tiny_base.yaml").read_text())
    raw |= {"corpus": [str(FIXTURES / c) for c in raw["corpus"]], "cache_dir": str(tmp_path / "bases")}
    raw["pretrain"] |= {"steps": 2}
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    plain_key = build_key(load_build_config(path))
    raw["pretrain"] |= {"copy_weight": 5.0}
    path.write_text(yaml.safe_dump(raw))
    assert build_key(load_build_config(path)) != plain_key  # another recipe, another cached base

    built = ensure_base(path)
    assert read_json(built / "build.json")["config"]["pretrain"]["copy_weight"] == 5.0
    raw["pretrain"] |= {"copy_weight": 0.5}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="pretrain.copy_weight"):
        load_build_config(path)
