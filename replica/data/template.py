"""Records rendered with the training chat template: what `data.max_length` is checked against.

A record's conversations are turned into plain dicts once (`plain_parts`); the length check
renders those and `prepare` stores the same dicts in its rows, so nothing is dumped twice.
Rendering is the largest cost of `prepare` per record, hence the faster sandbox lookup below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from replica.data.feedback import chat, tools_json
from replica.data.records import Demonstration, PreferencePair, Rating, Rewrite
from replica.templates import training_chat_template

# The message lists of each feedback kind after its prompt: each one, appended to the prompt,
# is one training example.
RESPONSES: dict[type, tuple[str, ...]] = {
    PreferencePair: ("chosen", "rejected"),
    Rating: ("response",),
    Rewrite: ("original", "rewritten"),
}
Measure = Callable[[BaseModel, list | None], tuple[int, dict[str, Any]]]


def plain_parts(record: BaseModel, tools: list | None) -> dict[str, Any]:
    """The record's message lists as plain dicts, and `tools` (the record's or its task's) as recorded.

    Demonstrations give `messages`; feedback gives `prompt` plus its response lists (`RESPONSES`).
    """
    if isinstance(record, Demonstration):
        return {"messages": chat(record.messages), "tools": tools_json(tools)}
    parts = {"prompt": chat(record.prompt), "tools": tools_json(tools)}  # type: ignore[attr-defined]
    for name in RESPONSES[type(record)]:
        parts[name] = chat(getattr(record, name))
    return parts


def examples(parts: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The conversations of `plain_parts` that train: the demonstration, or prompt + each response."""
    if "messages" in parts:
        return [parts["messages"]]
    return [parts["prompt"] + parts[name] for name in parts if name not in ("prompt", "tools")]


def token_counter(tokenizer: Any, max_length: int | None = None) -> Measure:
    """`measure(record, tools) -> (tokens, plain_parts)`: the length in tokens of the record's
    longest training example rendered with the training template, and the parts it rendered.

    With `max_length`, a text of at most `max_length - 8` UTF-8 bytes is known to fit without
    tokenizing it: byte-level BPE and SentencePiece (with byte fallback) never make more tokens
    than bytes (8 spare for a prefix marker), so the count returned then is that bound, not exact.
    Longer texts are tokenized one at a time (`token_count`).
    """
    render = template_renderer(tokenizer)
    tokens = token_count(tokenizer)
    bound = (max_length - 8) if max_length else -1

    def count(messages: list[dict], tools: list | None) -> int:
        text = render(messages, tools)
        size = len(text.encode("utf-8"))
        return size if size <= bound else tokens(text)

    def measure(record: BaseModel, tools: list | None) -> tuple[int, dict[str, Any]]:
        parts = plain_parts(record, tools)
        return max(count(messages, parts["tools"]) for messages in examples(parts)), parts

    return measure


def token_count(tokenizer: Any) -> Callable[[str], int]:
    """`f(text) -> len(tokenizer(text, add_special_tokens=False)["input_ids"])`, faster.

    A fast tokenizer's `__call__` spends about 100 us per text around its Rust backend (a
    fifth of the tokenizing time of a 1.4 KB record); batching the texts saved as much but
    would need the length check to wait for a batch. So the count comes from the backend
    directly, once one `__call__` has set it up as `__call__` does (no truncation or padding,
    `split_special_tokens`). tests/test_data_prepare.py checks both counts agree.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    tokenizer("", add_special_tokens=False)
    return lambda text: len(backend.encode(text, add_special_tokens=False).ids)


def template_renderer(tokenizer: Any) -> Callable[[list[dict], list | None], str]:
    """`f(messages, tools) -> text` rendered with the training chat template, as
    `tokenizer.apply_chat_template(..., tokenize=False)` renders it.

    Records here are plain JSON (pydantic dumps), so the compiled template is called directly:
    `apply_chat_template` first deep-copies every input into plain types for its sandbox, which
    was half of `prepare`'s templating time. tests/test_data_prepare.py checks both give the same text.
    """
    template = training_chat_template(tokenizer)
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        compiled = _fast_lookups(_compile_jinja_template(template).environment).from_string(template)
    except (ImportError, AttributeError):  # a transformers without it: take the public path
        return lambda messages, tools: tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=template, tokenize=False
        )
    context = dict(tokenizer.special_tokens_map)

    def render(messages: list[dict], tools: list | None) -> str:
        return compiled.render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=False, **context
        )

    return render


_DICT_ATTRIBUTES = frozenset(dir(dict))
_LOOP_ATTRIBUTES = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"}
)


def _fast_lookups(environment: Any) -> Any:
    """A copy of transformers' sandboxed template environment whose `a.b` lookups skip work the
    sandbox's answer does not depend on; every other lookup takes the sandbox's own path.

    - `message.role` on a plain dict: the sandbox first tries the attribute, which a dict has
      only for names in `dir(dict)`, then falls back to the key. For other names it does the
      key lookup directly, with the sandbox's result (the value, or undefined).
    - `loop.first`, `loop.index0`...: plain values of Jinja's own loop object, which the sandbox
      always allows after its safety checks.

    Half of all rendering time went to these two lookups (the failed attribute access raising,
    the safety checks). Unsafe access (`__class__`, methods, anything on other types) is still
    decided by the sandbox: tests/test_data_prepare.py checks it still refuses.
    """
    from jinja2.runtime import LoopContext

    fast = environment.overlay()  # same class, options, filters and extensions; its own instance
    sandboxed = fast.getattr

    def getattr_(obj: Any, attribute: Any) -> Any:
        kind = type(obj)
        if kind is dict and type(attribute) is str and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return fast.undefined(obj=obj, name=attribute)
        if kind is LoopContext and attribute in _LOOP_ATTRIBUTES:
            return getattr(obj, attribute)
        return sandboxed(obj, attribute)

    fast.getattr = getattr_
    return fast
