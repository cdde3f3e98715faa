"""The loss mask on a multi-turn tool conversation: the tokens that carry loss are exactly the assistant turns.

The rows go through the prepared-data columns (Json messages) and TRL's own SFT pipeline
(`assistant_only_loss=True` with the training chat template), as `replica train` does. The
expected text of each assistant turn is derived independently, as the difference between the
conversation rendered up to that turn and the generation prompt before it.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import qwen3_chat_template

from replica.data.prepared import build_dataset
from replica.model import load_tokenizer
from replica.templates import training_chat_template

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund",
            "description": "Refund.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
            },
        },
    },
]
MESSAGES = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "Refund order O-7, it broke."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order", "arguments": {"order_id": "O-7"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"total": 12}'},
    {
        "role": "assistant",
        "content": "Checking the amount.",
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "refund", "arguments": {"order_id": "O-7", "amount": 12}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "content": '{"ok": true}'},
    {"role": "assistant", "content": "Refunded 12 EUR for O-7."},
    {"role": "user", "content": "Thanks! And O-8?"},
    {"role": "assistant", "content": "O-8 has not shipped yet."},
]
ROW = {
    "id": "d1",
    "contributor_id": "alice",
    "task_id": "t1",
    "messages": MESSAGES,
    "tools": TOOLS,
    "record_hash": "x",
}


def _expected_assistant_text(tokenizer) -> list[str]:
    turns = []
    for index, message in enumerate(MESSAGES):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            MESSAGES[:index], tools=TOOLS, add_generation_prompt=True, tokenize=False
        )
        upto = tokenizer.apply_chat_template(MESSAGES[: index + 1], tools=TOOLS, tokenize=False)
        assert upto.startswith(before), "template is not prefix-preserving"
        turns.append(upto[len(before) :])
    return turns


def _loss_text(tokenizer, model, tmp_path) -> str:
    dataset = build_dataset([ROW], "sft/train")  # the prepared-data columns, Json messages
    args = SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=True, max_length=2048, report_to="none", use_cpu=True
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    return tokenizer.decode(ids[labels != -100])


@pytest.mark.parametrize("family", ["tiny-qwen2.5", "trl-qwen3"])
def test_only_assistant_turns_carry_loss(tiny_base_dir, tmp_path, family):
    tokenizer = load_tokenizer(str(tiny_base_dir))
    if family == "trl-qwen3":
        tokenizer.chat_template = qwen3_chat_template  # a real template shipped with TRL
    tokenizer.chat_template = training_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32)
    expected = _expected_assistant_text(tokenizer)
    assert all(turn.rstrip("\n").endswith("<|im_end|>") for turn in expected)  # end-of-turn token included
    assert '{"name": "refund", "arguments": {"order_id": "O-7", "amount": 12}}' in expected[1]
    # TRL's Qwen2.5 training template opens the generation span before the newline that ends the
    # `<|im_start|>assistant` header, so that one prompt-side "\n" per turn also carries loss
    # (harmless: it is always the same token); Qwen3's span starts after it.
    lead = "\n" if family == "tiny-qwen2.5" else ""
    assert _loss_text(tokenizer, model, tmp_path) == "".join(lead + turn for turn in expected)
