"""`prepare` at its limits: nothing accepted (non-zero exit, reasons with counts), records over
`data.max_length` truncated at a turn boundary when `data.too_long: truncate` says so."""

import json

from test_data_prepare import DATA, _config, tokenizer  # noqa: F401
from typer.testing import CliRunner

from replica.config import load_config
from replica.data.prepare import prepare
from replica.data.prepared import load_split
from replica.data.records import parse_record
from replica.data.template import token_counter


def test_prepare_that_accepts_nothing_exits_1_and_names_the_reasons(tmp_path, tiny_base_dir):
    from replica.cli import app

    strangers = tmp_path / "strangers.jsonl"
    lines = (DATA / "alice.jsonl").read_text().splitlines()
    strangers.write_text(
        "".join(line.replace('"alice"', f'"stranger-{n}"') + "\n" for n, line in enumerate(lines))
    )
    config = _config(tmp_path, tiny_base_dir, inputs=[{"path": str(strangers)}])
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 1, result.output
    assert f"read {len(lines) + 4} = accepted 4 + rejected {len(lines)}" in result.output  # 4 contributors
    assert "most common rejections" in result.output
    assert (
        f"{len(lines):>6} x contributor_id: unknown contributor '…': add a contributor record with consent"
        in result.output
    )
    assert f"(first: {strangers}:1)" in result.output
    assert "error: no demonstration or feedback record was accepted" in result.output
    manifest = json.loads((tmp_path / "runs/t/prepared/manifest.json").read_text())
    assert manifest["rejections"][0]["count"] == len(lines)


def test_the_summary_names_the_most_common_reasons_first(tmp_path, tiny_base_dir, tokenizer):  # noqa: F811
    result = prepare(load_config(_config(tmp_path, tiny_base_dir, max_length=200)), tokenizer)
    total = result.manifest["counts"]["total"]["rejected"]
    [top] = result.manifest["rejections"]  # one kind of reason: too long
    assert top["count"] == total and top["reason"].startswith("$: N tokens after templating, longer than")
    assert f"{total:>6} x $: N tokens after templating" in result.summary()


def _alice_first(tmp_path):
    line = (DATA / "alice.jsonl").read_text().splitlines()[0]
    path = tmp_path / "one.jsonl"
    path.write_text(line + "\n")
    return parse_record(json.loads(line)), path


def test_too_long_demonstrations_are_cut_at_a_turn_boundary_when_asked(tmp_path, tiny_base_dir, tokenizer):  # noqa: F811
    record, path = _alice_first(tmp_path)
    tasks = [json.loads(t) for t in (DATA / "tasks.jsonl").read_text().splitlines()]
    tools = next(t["tools"] for t in tasks if t["id"] == record.task_id)
    from replica.data.records import ToolSchema

    measure = token_counter(tokenizer)
    tool_schemas = [ToolSchema.model_validate(t) for t in tools]
    ends = [i + 1 for i, m in enumerate(record.messages) if m.role == "assistant"]
    assert len(ends) >= 3
    first_cut = record.model_copy(update={"messages": record.messages[: ends[1]]})
    fits = measure(first_cut, tool_schemas)[0]
    assert measure(record, tool_schemas)[0] > fits
    inputs = [{"path": str(DATA / "tasks.jsonl")}, {"path": str(path)}]
    settings = {"inputs": inputs, "max_length": fits, "split": {"heldout_fraction": 0.0}}

    rejected = prepare(load_config(_config(tmp_path / "r", tiny_base_dir, **settings)), tokenizer)
    assert rejected.accepted_records == 0 and "longer than data.max_length" in rejected.summary()

    config = _config(tmp_path / "t", tiny_base_dir, too_long="truncate", **settings)
    result = prepare(load_config(config), tokenizer)
    assert result.accepted_records == 1 and result.manifest["truncated"] == 1
    assert "truncated 1 demonstration(s) at a turn boundary" in result.summary()
    [row] = load_split(result.prepared_dir, "alice", "sft/train")
    assert len(row["messages"]) == ends[1] and row["messages"][-1]["role"] == "assistant"
    assert [m["content"] for m in row["messages"]] == [m.content or "" for m in first_cut.messages]

    tiny = _config(tmp_path / "x", tiny_base_dir, too_long="truncate", **{**settings, "max_length": 20})
    none_fit = prepare(load_config(tiny), tokenizer)
    assert none_fit.accepted_records == 0
    assert "truncate found no turn boundary that fits" in none_fit.manifest["rejections"][0]["reason"]


def test_large_inputs_show_records_read(tmp_path, tiny_base_dir, tokenizer, capsys, monkeypatch):  # noqa: F811
    from replica.data import prepare as prepare_module

    monkeypatch.setattr(prepare_module, "PROGRESS_BYTES", 0)  # the fixture counts as large
    prepare(load_config(_config(tmp_path, tiny_base_dir)), tokenizer)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prepare:")]
    assert lines and lines[-1].startswith("prepare: 34 records  0 rejected  elapsed ")
