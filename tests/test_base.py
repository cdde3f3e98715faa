"""The tiny offline base: tokenizer trained locally, Qwen2 built from config, cached."""

from replica.model import load_tokenizer
from replica.templates import training_chat_template


def test_tiny_base_tokenizer_splits_digits_and_parses_tool_calls(tiny_base_dir):
    tokenizer = load_tokenizer(str(tiny_base_dir))
    pieces = tokenizer.tokenize("order O-4821")
    assert [p for p in pieces if p.isdigit()] == ["4", "8", "2", "1"]
    assert "{% generation %}" in training_chat_template(tokenizer)
    text = '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "O-1"}}\n</tool_call><|im_end|>'
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    from trl.chat_template_utils import parse_response

    parsed = parse_response(tokenizer, tokenizer(text)["input_ids"], prefix=list(prefix["input_ids"]))
    assert parsed["tool_calls"][0]["function"] == {"name": "get_order", "arguments": {"order_id": "O-1"}}


def test_base_is_cached_by_config(tiny_base_dir):
    from replica.bases.tiny import built_base_dir

    assert (tiny_base_dir / "model.safetensors").exists()
    assert (tiny_base_dir / "build.json").exists()
    assert tiny_base_dir.name.startswith("test-tiny-")
    assert built_base_dir is not None
