"""Exact JSON for `datasets.Json()` values, so tool-call arguments round-trip exactly.

`datasets` encodes and decodes `Json()` values with pandas' bundled ujson, which writes floats
with 10 decimals and parses them imprecisely: `{"amount": 2.5e-12}` came back as `0.0` and `0.3`
as `0.30000000000000004` (the known ujson precision issue, ultrajson#268 / #126). A prepared
conversation would then train on arguments nobody recorded. `install()` points those functions
at the standard library's `json`, whose float text is the shortest exact repr.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    """Compact JSON with exact floats (what `datasets` stores for a `Json()` value)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return json.loads(text)


def install() -> None:
    """Make `datasets`' Json() encoding and decoding exact (idempotent)."""
    from datasets import arrow_writer
    from datasets.features import features
    from datasets.utils import json as datasets_json

    for module in (features, datasets_json):
        module.ujson_dumps, module.ujson_loads = dumps, loads
    arrow_writer.ujson_dumps = dumps
