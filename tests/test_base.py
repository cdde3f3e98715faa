"""The tiny offline base: tokenizer trained locally, Qwen2 built from config, cached."""

import gzip
import json
from pathlib import Path

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


def test_interrupted_base_build_resumes_from_its_checkpoint(tmp_path, monkeypatch, caplog):
    """A build stopped after training (here: while writing its manifest) leaves its checkpoints
    outside the unfinished directory; the rerun resumes from the last one instead of retraining,
    and a finished build removes them. The untied setting reaches the model."""
    import logging

    import pytest
    import yaml
    from transformers import AutoModelForCausalLM

    import replica.bases.tiny as base

    raw = _tiny_build_raw(tmp_path)
    raw |= {"tie_word_embeddings": False, "name": "resume"}
    raw["pretrain"] |= {"steps": 4, "save_steps": 2}
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(raw))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(base, "atomic_write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            base.ensure_base(config)
    target = base.built_base_dir(config)
    work = target.with_name(f".work-{target.name}")
    assert not target.exists()
    assert (work / "checkpoint-4" / "model.safetensors").is_file()

    with caplog.at_level(logging.INFO, logger="replica.bases.tiny"):
        built = base.ensure_base(config)
    assert f"resuming from {work / 'checkpoint-4'}" in caplog.text
    assert (built / "build.json").is_file() and not work.exists()
    model = AutoModelForCausalLM.from_pretrained(built)
    assert model.config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()


def test_settings_added_later_count_in_the_build_key_only_when_set():
    """A setting added to base builds leaves every earlier build's key as it was while it keeps its
    default (a committed or cached base stays valid); any other value gives another key."""
    from replica.bases.tiny import _LATER_SETTINGS, build_key, load_build_config

    config = load_build_config(Path(__file__).parent / "fixtures" / "tiny_base.yaml")
    at_defaults = config.model_copy(
        update={key: default for section, key, default in _LATER_SETTINGS if section is None}
        | {
            "pretrain": config.pretrain.model_copy(
                update={key: default for section, key, default in _LATER_SETTINGS if section == "pretrain"}
            )
        }
    )
    # This fixture's key since before any of these settings existed.
    assert build_key(at_defaults) == "d59d81fff831"
    # init_from is keyed by the start base's content (test_a_continued_base_... below).
    top = [
        {"tie_word_embeddings": False},
        {"spell_capitalized": True},
        {"isolate_spaces": True},
        {"isolate_spaces": "lowercase"},
        {"fixed_digit_embeddings": True},
    ]
    pretrain = [{"copy_weight": 10.0}, {"group_by_length": True}, {"copy_kinds": ["id", "suffix"]}]
    variants = [at_defaults.model_copy(update=u) for u in top] + [
        at_defaults.model_copy(update={"pretrain": at_defaults.pretrain.model_copy(update=u)})
        for u in pretrain
    ]
    keys = {build_key(at_defaults)} | {build_key(v) for v in variants}
    assert len(keys) == 1 + len(variants)


def _tiny_build_raw(tmp_path: Path) -> dict:
    """tests/fixtures/tiny_base.yaml as a dict, its corpus made absolute and its cache in `tmp_path`."""
    import yaml

    fixtures = Path(__file__).parent / "fixtures"
    raw = yaml.safe_load((fixtures / "tiny_base.yaml").read_text())
    return raw | {"corpus": [str(fixtures / c) for c in raw["corpus"]], "cache_dir": str(tmp_path / "bases")}


def _corpus_rows(n: int) -> list[dict]:
    """The first `n` conversations of the committed base corpus."""
    corpus = Path(__file__).resolve().parents[1] / "data" / "demo" / "base_corpus.jsonl.gz"
    return [json.loads(line) for line in gzip.decompress(corpus.read_bytes()).decode().splitlines()[:n]]


def test_spelled_capitalized_words_are_the_same_letters_in_prose_and_in_json():
    """`spell_capitalized`: a street name is spelled from letters, like an id from digits, in a
    user's message and in a tool call's JSON alike; lowercase words stay whole."""

    from replica.bases.tiny import train_tokenizer

    rows = _corpus_rows(50)
    tokenizer = train_tokenizer(rows, 600, spell_capitalized=True)

    def street_tokens(text: str) -> list[str]:
        start = text.index("Oak")
        encoded = tokenizer(text, return_offsets_mapping=True)
        chosen = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < start + 8 and b > start]
        return tokenizer.convert_ids_to_tokens([encoded["input_ids"][i] for i in chosen])

    in_text = street_tokens("change my address to 53 Oak Road.")
    in_json = street_tokens('{"address": "53 Oak Road"}')
    assert in_text == in_json, (in_text, in_json)
    assert all(len(token.lstrip("Ġ")) <= 1 for token in in_text), in_text  # letter by letter
    assert "Ġaddress" in tokenizer.tokenize("change my address")  # lowercase words stay whole
    assert tokenizer.decode(tokenizer('{"address": "53 Oak Road"}').input_ids) == '{"address": "53 Oak Road"}'


def test_spelled_letters_are_cut_as_their_lookbehind_definition_says():
    """The fast spelling pattern (`\\K`/`\\G`) cuts every text exactly as the readable lookbehind
    that defines it: the demo's corpus rows, its contributors' records and the awkward cases."""
    from tokenizers import Regex, pre_tokenizers

    from replica.bases.tiny import SPELLED_LETTER, SPELLED_LETTER_DEFINITION

    patterns = (SPELLED_LETTER, SPELLED_LETTER_DEFINITION)
    fast, definition = (pre_tokenizers.Split(Regex(p), behavior="isolated") for p in patterns)
    records = Path(__file__).resolve().parents[1] / "data" / "demo" / "alice.jsonl"
    texts = [json.dumps(row) for row in _corpus_rows(200)] + records.read_text().splitlines()[:50]
    texts += ["Maple", "ello World", "McDonald iPhone", "ABC Abc aBc", "Élan Über", "_Foo Foo_bar", "Aa b"]
    texts += ['"Name": "Bob"', "A"]
    for text in texts:
        assert fast.pre_tokenize_str(text) == definition.pre_tokenize_str(text), text[:80]
    pieces = [piece for piece, _ in fast.pre_tokenize_str("to Oak Road")]
    assert pieces == ["to O", "a", "k", " R", "o", "a", "d"]


def test_isolated_spaces_make_a_status_the_same_token_in_prose_and_in_json():
    """`isolate_spaces`: ` delayed` in a reply and `"delayed"` in a tool result share the word's
    token (without the key they are two tokens with nothing in common), and text round-trips."""

    from replica.bases.tiny import train_tokenizer

    rows = _corpus_rows(600)
    prose, in_json = "your order is delayed.", '{"status": "delayed"}'
    plain = train_tokenizer(rows, 2048)
    assert "Ġdelayed" in plain.tokenize(prose) and "Ġdelayed" not in plain.tokenize(in_json)
    isolated = train_tokenizer(rows, 2048, isolate_spaces=True)
    assert "delayed" in isolated.tokenize(prose) and "delayed" in isolated.tokenize(in_json)
    assert not any(t.startswith("Ġ") and len(t) > 1 and t[1:].isalpha() for t in isolated.tokenize(prose))
    for text in (prose, in_json, "change my address to 53 Oak Road."):
        assert isolated.decode(isolated(text).input_ids) == text


def test_spaces_isolated_before_lowercase_words_only_keep_a_spelled_streets_first_letter_whole():
    """`isolate_spaces: lowercase` with `spell_capitalized`: a status is one token in prose and in
    JSON (as with `true`), and a street starts with `ĠO` after its house number in both (with `true`
    it starts with a bare space token, which follows every word)."""

    from replica.bases.tiny import train_tokenizer

    rows = _corpus_rows(300)
    tokenizer = train_tokenizer(rows, 1024, spell_capitalized=True, isolate_spaces="lowercase")
    prose, in_json = (
        "your order is delayed, sent to 53 Oak Road.",
        '{"status": "delayed", "address": "53 Oak Road"}',
    )
    for text in (prose, in_json):
        tokens = tokenizer.tokenize(text)
        assert "delayed" in tokens and "Ġdelayed" not in tokens, tokens
        street = tokens.index("3") + 1
        assert tokens[street : street + 5] == ["ĠO", "a", "k", "ĠR", "o"], tokens
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    everywhere = train_tokenizer(rows, 1024, spell_capitalized=True, isolate_spaces=True).tokenize(prose)
    assert everywhere[everywhere.index("3") + 1 : everywhere.index("3") + 3] == ["Ġ", "O"], everywhere


def test_isolate_spaces_takes_true_false_or_lowercase_and_names_the_key_otherwise(tmp_path):
    import pytest
    import yaml

    from replica.bases.tiny import load_build_config
    from replica.errors import UserError

    raw = {"kind": "base_build", "name": "b", "corpus": ["c.jsonl"]}
    for value in (True, False, "lowercase"):
        (tmp_path / "b.yaml").write_text(yaml.safe_dump(raw | {"isolate_spaces": value}))
        assert load_build_config(tmp_path / "b.yaml").isolate_spaces == value
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(raw | {"isolate_spaces": "upper"}))
    with pytest.raises(UserError, match="isolate_spaces"):
        load_build_config(tmp_path / "b.yaml")


def test_a_continued_base_keeps_its_start_vocabulary_and_weights_and_cuts_text_anew(tiny_base_dir, tmp_path):
    """`init_from`: a build continues from a built base (weights and vocabulary kept, every token
    id meaning what it meant) with this config's pre-tokenizer; its key follows the start's
    content; other sizes or a folder that is not a base are clear errors."""

    import pytest
    import torch
    import yaml
    from safetensors.torch import load_file

    from replica.bases.tiny import build_key, ensure_base, load_build_config
    from replica.errors import UserError

    raw = _tiny_build_raw(tmp_path)
    raw |= {"name": "continued", "init_from": str(tiny_base_dir), "spell_capitalized": True}
    raw["pretrain"] |= {"steps": 0}
    path = tmp_path / "continued.yaml"
    path.write_text(yaml.safe_dump(raw))

    built = ensure_base(path)
    start, continued = load_tokenizer(str(tiny_base_dir)), load_tokenizer(str(built))
    assert continued.get_vocab() == start.get_vocab()
    assert start.tokenize(" Please") != continued.tokenize(" Please")[-5:] == list("lease")  # spelled now
    weights = load_file(built / "model.safetensors")
    for name, tensor in load_file(tiny_base_dir / "model.safetensors").items():
        assert torch.equal(weights[name], tensor), name  # 0 steps: the start, unchanged

    key = build_key(load_build_config(path))
    (tmp_path / "copy").mkdir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (tmp_path / "copy" / name).write_bytes((tiny_base_dir / name).read_bytes())
    other = raw | {"init_from": str(tmp_path / "copy")}
    path.write_text(yaml.safe_dump(other))
    assert build_key(load_build_config(path)) == key  # the same content wherever it lies
    (tmp_path / "copy" / "tokenizer.json").write_text("{}")
    assert build_key(load_build_config(path)) != key

    path.write_text(yaml.safe_dump(raw | {"hidden_size": raw["hidden_size"] * 2, "name": "wider"}))
    with pytest.raises(UserError, match="hidden_size"):
        ensure_base(path)
    path.write_text(yaml.safe_dump(raw | {"init_from": str(tmp_path)}))
    with pytest.raises(UserError, match="init_from: .* not a built base"):
        build_key(load_build_config(path))


def test_fixed_digit_embeddings_stay_orthogonal_while_the_rest_trains(tiny_base_dir, tmp_path):
    """`fixed_digit_embeddings`: continued from a built base for two steps, the ten digits' rows
    are orthogonal vectors of norm 1 afterwards, untouched by training, while other rows moved."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from replica.bases.tiny import ensure_base

    raw = _tiny_build_raw(tmp_path)
    raw |= {"name": "digits", "init_from": str(tiny_base_dir), "fixed_digit_embeddings": True}
    raw["pretrain"] |= {"steps": 2, "batch_size": 2, "learning_rate": 1e-2}
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(raw))

    built = ensure_base(path)
    tokenizer = load_tokenizer(str(built))
    digits = [tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    (name,) = [k for k in load_file(built / "model.safetensors") if k.endswith("embed_tokens.weight")]
    before, after = (load_file(d / "model.safetensors")[name] for d in (tiny_base_dir, built))
    rows = after[digits]
    assert torch.allclose(rows @ rows.T, torch.eye(10), atol=1e-5)  # orthogonal, norm 1
    others = [i for i in range(after.shape[0]) if i not in digits]
    assert not torch.equal(before[others], after[others])  # the other tokens trained
