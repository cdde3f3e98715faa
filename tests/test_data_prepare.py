"""`prepare` end to end on the fixture corpus, with the tiny tokenizer: layout, counts, consent, fingerprint."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from replica.config import load_config
from replica.data.prepare import prepare
from replica.data.prepared import SPLITS, list_contributors, load_split, read_contributors
from replica.model import load_tokenizer
from replica.templates import training_chat_template

DATA = Path(__file__).parent / "fixtures" / "data"
INPUTS = ["tasks.jsonl", "alice.jsonl", "bob.jsonl", "no_consent.jsonl"]


def _config(tmp_path, base_dir, **data):
    raw = {
        "run_name": "t",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name_or_path": str(base_dir)},
        "data": {
            "contributors_file": str(DATA / "contributors.jsonl"),
            "inputs": [{"path": str(DATA / name)} for name in INPUTS],
            "split": {"heldout_fraction": 0.34},
            **data,
        },
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    return load_tokenizer(str(tiny_base_dir))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_base_dir, tokenizer):
    tmp = tmp_path_factory.mktemp("prepared")
    return prepare(load_config(_config(tmp, tiny_base_dir)), tokenizer)


def test_layout_columns_and_splits(prepared):
    root = prepared.prepared_dir
    assert {p.name for p in root.iterdir()} == {
        "alice",
        "bob",
        "manifest.json",
        "rejected.jsonl",
        "contributors.jsonl",
    }
    assert list_contributors(root) == ["alice", "bob"]
    sft = load_split(root, "alice", "sft/train")
    assert sft.column_names == ["id", "contributor_id", "task_id", "messages", "tools", "record_hash"]
    pref = load_split(root, "alice", "pref/train")
    assert pref.column_names == [
        "id",
        "contributor_id",
        "task_id",
        "prompt",
        "chosen",
        "rejected",
        "tools",
        "source",
        "record_hash",
    ]
    tasks = load_split(root, "alice", "tasks/heldout")
    heldout = load_split(root, "alice", "sft/heldout")
    assert sorted(tasks["id"]) == sorted(set(heldout["task_id"]))
    assert not set(sft["task_id"]) & set(heldout["task_id"])
    task = tasks[0]
    assert task["check"]["answer_contains"] == ["refund"] and task["env"] == "support_desk"
    assert task["reference_messages"][-1]["role"] == "assistant" and task["initial_state"]["orders"]
    info = prepared.manifest["contributors"]["alice"]
    assert info["splits"]["sft/train"] + info["splits"]["sft/heldout"] == 6  # 7 demos, one near-duplicate
    assert info["pairs"] == {"pairwise": 2, "rating": 1, "rewrite": 1}
    assert info["ratings_dropped"] == {"single_response": 1, "tie": 1}
    assert set(read_contributors(root)) == {"alice", "bob", "carol", "dave"}


def test_counts_reconcile_and_consent_excludes(prepared):
    counts = prepared.manifest["counts"]
    total = counts["total"]
    assert total["read"] == 34 == sum(v for k, v in total.items() if k != "read")
    assert (total["accepted"], total["duplicate"], total["consent_excluded"], total["rejected"]) == (
        31,
        1,
        2,
        0,
    )
    per = counts["per_contributor"]
    assert per["carol"]["demonstration"]["consent_excluded"] == 1
    assert per["dave"]["demonstration"]["consent_excluded"] == 1
    assert per["alice"]["demonstration"]["duplicate"] == 1
    manifest = prepared.manifest["contributors"]
    assert manifest["carol"]["train_excluded"].startswith("no consent to train")
    assert manifest["dave"]["train_excluded"].startswith("consent revoked")
    assert not (prepared.prepared_dir / "carol").exists() and not (prepared.prepared_dir / "dave").exists()
    assert (prepared.prepared_dir / "rejected.jsonl").read_text() == ""  # excluded records are copied nowhere


def test_recorded_tool_arguments_survive_to_the_rendered_training_text(prepared, tokenizer):
    rows = load_split(prepared.prepared_dir, "alice", "sft/train")
    rows = rows.to_list() + load_split(prepared.prepared_dir, "alice", "sft/heldout").to_list()
    for row in rows:
        text = tokenizer.apply_chat_template(
            row["messages"],
            tools=row["tools"],
            chat_template=training_chat_template(tokenizer),
            tokenize=False,
        )
        for message in row["messages"]:
            for call in message.get("tool_calls") or []:
                recorded = json.dumps(
                    {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
                )
                assert recorded in text
        get_order = next(m for m in row["messages"] if m.get("tool_calls"))["tool_calls"][0]["function"]
        assert get_order["arguments"].keys() == {"order_id"}  # no `amount: null` merged in from refund calls


def test_fingerprint_is_deterministic_and_tracks_config(tmp_path, tiny_base_dir, tokenizer):
    first = prepare(load_config(_config(tmp_path / "a", tiny_base_dir)), tokenizer)
    second = prepare(load_config(_config(tmp_path / "b", tiny_base_dir)), tokenizer)
    assert first.fingerprint == second.fingerprint
    # Same inputs and config: the whole manifest is the same, byte for byte.
    assert (first.prepared_dir / "manifest.json").read_bytes() == (
        second.prepared_dir / "manifest.json"
    ).read_bytes()
    for split in SPLITS:
        assert (
            load_split(first.prepared_dir, "alice", split).to_list()
            == load_split(second.prepared_dir, "alice", split).to_list()
        )
    other_seed = prepare(
        load_config(_config(tmp_path / "c", tiny_base_dir), ["data.split.seed=7"]), tokenizer
    )
    assert other_seed.fingerprint != first.fingerprint


def test_records_longer_than_max_length_are_rejected_with_position(tmp_path, tiny_base_dir, tokenizer):
    result = prepare(load_config(_config(tmp_path, tiny_base_dir, max_length=200)), tokenizer)
    rejected = [
        json.loads(line) for line in (result.prepared_dir / "rejected.jsonl").read_text().splitlines()
    ]
    assert rejected and all(
        "tokens after templating, longer than data.max_length=200" in r["reason"] for r in rejected
    )
    first = rejected[0]
    assert (
        first["file"].endswith("alice.jsonl")
        and first["line"] == 1
        and json.loads(first["record"])["id"] == "alice-d1"
    )
    total = result.manifest["counts"]["total"]
    assert total["rejected"] == len(rejected) and total["read"] == 34
    assert total["read"] == sum(v for k, v in total.items() if k != "read")


def test_strict_prepare_stops_and_leaves_no_prepared_dir(tmp_path, tiny_base_dir, tokenizer):
    config = load_config(_config(tmp_path, tiny_base_dir, max_length=200))
    from replica.errors import UserError

    with pytest.raises(UserError, match=r"alice.jsonl:1: \$: \d+ tokens after templating"):
        prepare(config, tokenizer, strict=True)
    assert not config.prepared_dir.exists()


def test_cli_validate_and_prepare(tmp_path, tiny_base_dir):
    from replica.cli import app

    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    shutil.copy(DATA / "contributors.jsonl", bad)
    with open(bad, "a") as handle:
        handle.write(
            '{"kind": "rating", "id": "r", "contributor_id": "alice", "prompt": "q", "response": "a", "score": 9}\n'
        )
    result = runner.invoke(app, ["data", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:5: score: Input should be less than or equal to 5" in result.output
    result = runner.invoke(app, ["data", "prepare", str(_config(tmp_path, tiny_base_dir))])
    assert result.exit_code == 0, result.output
    assert "read 34 = accepted 31 + rejected 0 + duplicates 1 + consent-excluded 2" in result.output
    assert (tmp_path / "runs" / "t" / "prepared" / "manifest.json").exists()


def test_only_selected_contributors_are_prepared_and_the_rest_counted(tmp_path, tiny_base_dir, tokenizer):
    config = load_config(_config(tmp_path, tiny_base_dir), ["data.contributors=[bob]", "data.split.by=time"])
    result = prepare(config, tokenizer)
    assert list_contributors(result.prepared_dir) == ["bob"]
    total = result.manifest["counts"]["total"]
    assert total["not_selected"] == 16 + 2 and total["read"] == sum(
        v for k, v in total.items() if k != "read"
    )
    # (alice's 16 records, carol's and dave's); by time: bob's latest task (refund-9, recorded last) is the held-out one
    assert load_split(result.prepared_dir, "bob", "tasks/heldout")["id"] == ["refund-9"]


def test_fast_renderer_matches_apply_chat_template(prepared, tokenizer):
    from replica.data.template import template_renderer

    render = template_renderer(tokenizer)
    template = training_chat_template(tokenizer)
    rows = load_split(prepared.prepared_dir, "alice", "sft/train").to_list()
    rows += [
        {"messages": r["prompt"] + r["chosen"], "tools": r["tools"]}
        for r in load_split(prepared.prepared_dir, "alice", "pref/train").to_list()
    ]
    assert any(r["tools"] for r in rows) and any(not r["tools"] for r in rows)
    for row in rows:
        expected = tokenizer.apply_chat_template(
            row["messages"], tools=row["tools"], chat_template=template, tokenize=False
        )
        assert render(row["messages"], row["tools"]) == expected


def test_file_order_does_not_change_the_prepared_rows(tmp_path, tiny_base_dir, tokenizer):
    """Rows are spooled in input order and written sorted by id: reversed files give the same splits.

    (The near-duplicate is left out: of two duplicates the first read is kept, so order matters there.)
    """
    results = []
    for order in ("forward", "reversed"):
        folder = tmp_path / order
        folder.mkdir()
        for name in INPUTS:
            lines = [
                line for line in (DATA / name).read_text().splitlines(keepends=True) if "-again" not in line
            ]
            (folder / name).write_text("".join(reversed(lines) if order == "reversed" else lines))
        raw = yaml.safe_load(_config(folder, tiny_base_dir).read_text())
        raw["data"]["inputs"] = [{"path": str(folder / name)} for name in INPUTS]
        (folder / "run.yaml").write_text(yaml.safe_dump(raw))
        results.append(prepare(load_config(folder / "run.yaml"), tokenizer))
    forward, backward = results
    assert forward.manifest["record_hashes"] == backward.manifest["record_hashes"]
    assert forward.manifest["counts"] == backward.manifest["counts"]
    for cid in ("alice", "bob"):
        for split in SPLITS:
            rows = load_split(backward.prepared_dir, cid, split).to_list()
            assert rows == load_split(forward.prepared_dir, cid, split).to_list()


def test_streamed_split_is_what_save_to_disk_writes(tmp_path, prepared):
    """`write_split` (one batch at a time) against `build_dataset(...).save_to_disk`: same state,
    info and rows; an empty split is loadable (datasets' own empty save is not)."""
    import datasets

    from replica.data.prepared import build_dataset, write_split

    rows = load_split(prepared.prepared_dir, "alice", "pref/train").to_list()
    streamed, saved = tmp_path / "streamed", tmp_path / "saved"
    assert write_split(iter(rows), "pref/train", streamed, batch_size=3) == len(rows)
    build_dataset(rows, "pref/train").save_to_disk(str(saved))
    for name in ("state.json", "dataset_info.json"):
        assert (streamed / name).read_text() == (saved / name).read_text()
    loaded = datasets.load_from_disk(str(streamed))
    assert loaded.to_list() == rows and loaded.features == build_dataset([], "pref/train").features
    write_split([], "sft/heldout", tmp_path / "empty")
    empty = datasets.load_from_disk(str(tmp_path / "empty"))
    assert len(empty) == 0 and empty.column_names == list(build_dataset([], "sft/heldout").features)


def test_rows_are_encoded_as_datasets_encodes_them(prepared):
    """`build_dataset` builds its Arrow columns itself: the same table as datasets' own encoding."""
    from datasets import Dataset

    from replica.data.prepared import build_dataset, features_for

    for cid in ("alice", "bob"):
        for split in SPLITS:
            rows = load_split(prepared.prepared_dir, cid, split).to_list()
            if not rows:  # datasets' own from_list cannot build an empty typed dataset
                continue
            if split == "sft/train":
                rows[0] = {**rows[0], "tools": None, "messages": []}  # a null and an empty list too
            reference = Dataset.from_list(rows, features=features_for(split))
            assert build_dataset(rows, split).data.table.equals(reference.data.table), (cid, split)


def test_fast_renderer_keeps_the_sandbox(tokenizer):
    """The renderer's shortcut for `dict.key` lookups must not open what the sandbox closes."""
    from jinja2.exceptions import SecurityError, UndefinedError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    from replica.data.template import _fast_lookups

    env = _fast_lookups(_compile_jinja_template("{{ x }}").environment)
    render = lambda source, **values: env.from_string(source).render(**values)  # noqa: E731
    message = {"role": "user", "items": "a key named like a dict method"}
    assert render("{{ m.role }}|{{ m.missing is defined }}", m=message) == "user|False"
    assert render("{{ m['items'] }}", m=message) == "a key named like a dict method"
    assert render("{{ m.items is defined }}", m=message) == "True"  # the method, as the sandbox gives it
    assert (
        render("{% for x in xs %}{{ loop.index0 }}{{ loop.last }} {% endfor %}", xs="ab") == "0False 1True "
    )
    with pytest.raises(SecurityError):
        render("{{ m.__class__.__subclasses__() }}", m=message)
    with pytest.raises(SecurityError):
        render("{{ m.update({'role': 'x'}) }}", m=message)  # immutable sandbox: no mutation
    with pytest.raises(UndefinedError):
        render("{{ m.missing.deeper }}", m=message)


def test_token_count_is_the_tokenizers_own(prepared, tokenizer):
    from replica.data.template import template_renderer, token_count

    render, count = template_renderer(tokenizer), token_count(tokenizer)
    rows = load_split(prepared.prepared_dir, "alice", "sft/train").to_list()
    texts = [render(row["messages"], row["tools"]) for row in rows] + ["", "<|im_start|>user\nhi<|im_end|>\n"]
    for text in texts:
        assert count(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_float_arguments_round_trip_exactly_through_a_written_split(tmp_path, tokenizer):
    """datasets' Json() used ujson: 2.5e-12 came back 0.0 and 0.3 as 0.30000000000000004."""
    from replica.data.prepared import features_for, write_split

    arguments = {"order_id": "O-1", "amount": 0.3, "rate": 2.5e-12, "tiny": 1e-20, "big": 12345678901234567}
    call = {"id": "c1", "type": "function", "function": {"name": "refund", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "refund O-1"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
        {"role": "assistant", "content": "done"},
    ]
    row = dict.fromkeys(features_for("sft/train"), None) | {"messages": messages}
    write_split([row], "sft/train", tmp_path / "c" / "sft" / "train")
    stored = load_split(tmp_path, "c", "sft/train")[0]
    assert stored["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments
    text = tokenizer.apply_chat_template(stored["messages"], tokenize=False)
    assert '"amount": 0.3,' in text and '"rate": 2.5e-12' in text and '"tiny": 1e-20' in text
