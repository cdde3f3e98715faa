"""Helpers shared by the studio tests: a run the studio can serve, with real (random) adapters.

`studio_run` lays out what `replica studio --run DIR` expects: `<run>/config.yaml` (a run config
over the tiny base whose data.inputs hold one JSONL file per contributor), `data/contributors.jsonl`
(prepare's consent file), `<run>/prepared/contributors.jsonl` (the server's), and published
replicas of alice and bob (random LoRA adapters, test_serve_fixtures.write_adapter).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_serve_fixtures import consent_record, write_adapter

from replica.agents.envs.support_desk import TOOL_SCHEMAS

CONTRIBUTORS = ("alice", "bob")
# Two tools only: the tiny base's context (1,024 positions, 400-token vocabulary) must hold the
# rendered prompt with its tool schemas and still leave room for the reply.
TOOLS = [t for t in TOOL_SCHEMAS if t["function"]["name"] in ("get_order", "issue_refund")]
STATE = {
    "customers": {"C-1": {"name": "Ann", "email": "a@x.io", "address": "1 Road", "verified": True}},
    "orders": {"O-7": {"customer_id": "C-1", "product_id": "P-1", "total": 30, "status": "delivered"}},
    "products": {"P-1": {"name": "lamp", "category": "home", "price": 30}},
    "tickets": {},
}


def task_line(task_id: str, instruction: str) -> str:
    task = {
        "kind": "task",
        "id": task_id,
        "instruction": instruction,
        "system": "Help.",
        "tools": TOOLS,
        "env": "support_desk",
        "initial_state": STATE,
    }
    return json.dumps(task)


def make_studio_run(base_dir: Path, root: Path) -> Path:
    """The layout above under `root`; returns the run directory."""
    run = root / "run"
    data = root / "data"
    data.mkdir(parents=True)
    records = [consent_record(c) for c in CONTRIBUTORS]
    text = "".join(json.dumps(r) + "\n" for r in records)
    (data / "contributors.jsonl").write_text(text)
    (run / "prepared").mkdir(parents=True)
    (run / "prepared" / "contributors.jsonl").write_text(text)
    for contributor in CONTRIBUTORS:
        line = task_line(f"{contributor}-refund", "Refund order O-7, the lamp broke.")
        (data / f"{contributor}.jsonl").write_text(line + "\n")
    for seed, contributor in enumerate(CONTRIBUTORS, 1):
        write_adapter(base_dir, run / "replicas" / contributor / "sft", contributor, "sft", seed)
    config = {
        "run_name": "run",
        "output_dir": str(root),
        "seed": 0,
        "model": {"name_or_path": str(base_dir), "device": "cpu"},
        "data": {
            "inputs": [{"path": str(data / f"{c}.jsonl"), "format": "replica"} for c in CONTRIBUTORS],
            "contributors_file": str(data / "contributors.jsonl"),
            "max_length": 4096,
        },
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def csrf_of(html: str) -> str:
    """The CSRF token a studio page carries in its forms."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def studio_run(tiny_base_dir, tmp_path_factory) -> Path:
    return make_studio_run(tiny_base_dir, tmp_path_factory.mktemp("studio"))
