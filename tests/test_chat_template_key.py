"""`model.chat_template`: a base whose own template cannot render tools trains, evaluates and serves
with a TRL family's template (or a .jinja file) named in the config, and the adapter carries it."""

from __future__ import annotations

import shutil

import pytest
from train_fixtures import write_config, write_prepared

from replica.agents.replica import load_replica
from replica.artifacts import read_manifest
from replica.config import load_config
from replica.errors import UserError
from replica.model import load_tokenizer
from replica.templates import TRL_TEMPLATES, read_chat_template, training_chat_template
from replica.train.context import build_context
from replica.train.sft import train_sft

# SmolLM2-Instruct's own template, in short: the same <|im_start|> tokens as Qwen2.5, no tools.
NO_TOOLS = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def no_tools_base(tiny_base_dir, tmp_path_factory):
    """The tiny base with a chat template TRL does not know and that drops tool calls."""
    path = tmp_path_factory.mktemp("no_tools_base") / "base"
    shutil.copytree(tiny_base_dir, path)
    tokenizer = load_tokenizer(str(path))
    tokenizer.chat_template = NO_TOOLS
    tokenizer.save_pretrained(str(path))
    return path


def test_a_template_without_tools_is_an_error_that_lists_the_choices(no_tools_base):
    with pytest.raises(UserError) as err:
        training_chat_template(load_tokenizer(str(no_tools_base)))
    assert "cannot render tool calls" in str(err.value) and "model.chat_template" in str(err.value)
    assert "qwen2_5" in str(err.value) and "llama3," not in str(err.value)  # llama3 drops tool calls


def test_an_unknown_template_name_lists_the_families():
    with pytest.raises(UserError, match="unknown template 'qwen9'.*qwen2_5"):
        read_chat_template("qwen9")
    with pytest.raises(UserError, match="missing.jinja not found"):
        read_chat_template("missing.jinja")


def test_a_jinja_file_key_is_read_relative_to_the_config(tmp_path, no_tools_base):
    (tmp_path / "mine.jinja").write_text((TRL_TEMPLATES / "qwen2_5_training.jinja").read_text())
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 4}})
    config = load_config(
        write_config(tmp_path, no_tools_base, prepared, model={"chat_template": "mine.jinja"})
    )
    tokenizer = load_tokenizer(str(no_tools_base), None, config.model.chat_template)
    # A file that already marks assistant turns is its own training template.
    assert training_chat_template(tokenizer) == (tmp_path / "mine.jinja").read_text()


def test_the_key_trains_with_the_family_training_template_and_ships_it_with_the_adapter(
    tmp_path, no_tools_base
):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8}})
    config = load_config(write_config(tmp_path, no_tools_base, prepared, model={"chat_template": "qwen2_5"}))
    ctx = build_context(config)
    assert ctx.tokenizer.chat_template == (TRL_TEMPLATES / "qwen2_5_training.jinja").read_text()

    path = train_sft(ctx, "alice")

    assert read_manifest(path)["base_model"]["chat_template"] == "qwen2_5"
    replica = load_replica(path, device="cpu")  # the template hash recorded at training is checked here
    assert replica.tokenizer.chat_template == ctx.tokenizer.chat_template
    # The adapter's template renders tool calls, which the model's own template dropped.
    call = {"type": "function", "function": {"name": "lookup_order", "arguments": {"order_id": "O-1"}}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    assert "lookup_order" in replica.tokenizer.apply_chat_template(messages, tokenize=False)
