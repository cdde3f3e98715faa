"""Chat templates: the one a base renders with, its training variant for the loss mask, its hash.

Kept apart from `model.py` so that base providers (`replica.bases`) can render and train with a
template without importing the loader that calls them.
"""

from __future__ import annotations

import logging

from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import add_response_schema, get_training_chat_template, has_generation_markers

from replica.artifacts import sha256_text
from replica.errors import UserError

log = logging.getLogger(__name__)


def add_response_parser(tokenizer: PreTrainedTokenizerBase) -> None:
    """Attach TRL's tool-call response parser when the template family is known."""
    if getattr(tokenizer, "response_template", None) or getattr(tokenizer, "response_schema", None):
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
        raise UserError("the tokenizer has no chat template; replica trains on chat-formatted data")
    if has_generation_markers(template):
        return template
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError as err:
        raise UserError(
            f"chat template has no generation markers and TRL has no training version: {err}"
        ) from None
    return patched or template


def template_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Content hash of the chat template, recorded in replica.json and checked at load."""
    return sha256_text(tokenizer.chat_template or "")
