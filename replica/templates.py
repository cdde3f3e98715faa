"""Chat templates: the one a base renders with, its training variant for the loss mask, its hash.

Kept apart from `model.py` so that base providers (`replica.bases`) can render and train with a
template without importing the loader that calls them.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from transformers import PreTrainedTokenizerBase
from trl import chat_template_utils
from trl.chat_template_utils import (
    add_response_schema,
    get_training_chat_template,
    has_generation_markers,
    supports_tool_calling,
)

from replica.artifacts import sha256_text
from replica.errors import UserError

log = logging.getLogger(__name__)

# TRL ships each template family as `<family>.jinja`, its training variant as `<family>_training.jinja`.
TRL_TEMPLATES = Path(chat_template_utils.__file__).parent / "chat_templates"


def template_families() -> list[str]:
    """TRL's template families that have a training variant (generation markers for the loss mask)."""
    return sorted(
        p.stem
        for p in TRL_TEMPLATES.glob("*.jinja")
        if (TRL_TEMPLATES / f"{p.stem}_training.jinja").is_file()
    )


@functools.cache
def tool_families() -> tuple[str, ...]:
    """The families of `template_families()` that render a whole tool-calling exchange: the choices
    an error offers when a model's own template cannot."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    renderer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    found = []
    for family in template_families():
        renderer.chat_template = read_chat_template(family)
        try:
            renders_tools = supports_tool_calling(renderer)
        except Exception:  # a template that needs special tokens this empty renderer lacks: not a choice
            renders_tools = False
        if renders_tools:
            found.append(family)
    return tuple(found)


def read_chat_template(key: str) -> str:
    """The text of `model.chat_template`: a .jinja file, or a TRL family's template."""
    if key.endswith(".jinja"):
        path = Path(key)
        if not path.is_file():
            raise UserError(
                f"model.chat_template: {key} not found (a .jinja file, relative to the config file)"
            )
        return path.read_text(encoding="utf-8")
    if key not in template_families():
        raise UserError(
            f"model.chat_template: unknown template {key!r}; expected a .jinja file or a TRL family: "
            + ", ".join(template_families())
        )
    return (TRL_TEMPLATES / f"{key}.jinja").read_text(encoding="utf-8")


def has_response_parser(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tool calls can be read back from the tokenizer's output (TRL's parse_response)."""
    return bool(getattr(tokenizer, "response_template", None) or getattr(tokenizer, "response_schema", None))


def add_response_parser(tokenizer: PreTrainedTokenizerBase) -> None:
    """Attach TRL's tool-call response parser when the template family is known."""
    if has_response_parser(tokenizer):
        return
    try:
        add_response_schema(tokenizer)
    except ValueError:
        log.info("no known response parser for this chat template; tool calls will not be parsed")


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """The chat template used for training: the model's own if it marks assistant turns for loss
    masking (`{% generation %}`), else TRL's training template for that family."""
    template = tokenizer.chat_template
    if template is None:
        raise UserError(f"the tokenizer has no chat template; {_CHOOSE}" + ", ".join(tool_families()))
    if not supports_tool_calling(tokenizer):
        raise UserError(
            f"the model's chat template cannot render tool calls; {_CHOOSE}" + ", ".join(tool_families())
        )
    if has_generation_markers(template):
        return template
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:
        raise UserError(
            f"the chat template has no generation markers and TRL has no training version of it; {_CHOOSE}"
            + ", ".join(tool_families())
        ) from None
    return patched or template


_CHOOSE = (
    "set model.chat_template to a .jinja file with tool support and {% generation %} markers, or to one of: "
)


def template_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Content hash of the chat template, recorded in replica.json and checked at load."""
    return sha256_text(tokenizer.chat_template or "")
