"""`model.dtype: auto` on CPU: bf16 autocast where the CPU has bf16 instructions and the loss of a
fixed batch agrees with fp32, fp32 otherwise; the choice is recorded in replica.json."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import write_config, write_prepared
from transformers import AutoModelForCausalLM

from replica import model as model_module
from replica.artifacts import read_manifest
from replica.config import ModelConfig, load_config
from replica.model import confirm_precision, resolve_device
from replica.precision import autocast_losses, cpu_has_bf16, losses_agree
from replica.train.context import build_context
from replica.train.sft import build_sft_trainer, train_sft


def test_bf16_instructions_are_read_from_the_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("flags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    (tmp_path / "without").write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_bf16(tmp_path / "with") and not cpu_has_bf16(tmp_path / "without")
    assert not cpu_has_bf16(tmp_path / "absent")  # not Linux: fp32


@pytest.mark.parametrize(
    ("has_bf16", "dtype", "autocast"),
    [(True, "auto", True), (False, "auto", False), (True, "float32", False)],
)
def test_auto_on_cpu_picks_autocast_only_with_bf16_instructions(monkeypatch, has_bf16, dtype, autocast):
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: has_bf16)
    choice = resolve_device(ModelConfig(name_or_path="x/y", device="cpu", dtype=dtype))
    assert choice.dtype == torch.float32 and choice.autocast is autocast and choice.bf16 is autocast
    assert choice.precision == ("bf16-autocast" if autocast else "float32")


def test_the_tiny_base_loss_under_autocast_agrees_with_fp32(tiny_base_dir):
    fp32, bf16 = autocast_losses(AutoModelForCausalLM.from_pretrained(tiny_base_dir))
    assert fp32 != bf16  # autocast really ran in bf16
    assert losses_agree(fp32, bf16)
    assert not losses_agree(fp32, fp32 * 1.05)


def test_a_disagreeing_loss_falls_back_to_fp32(monkeypatch, tiny_base_dir):
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(model_module, "autocast_losses", lambda model: (2.0, 2.5))
    choice = resolve_device(ModelConfig(name_or_path="x/y", device="cpu"))
    kept = confirm_precision(AutoModelForCausalLM.from_pretrained(tiny_base_dir), choice)
    assert kept.autocast is False and kept.precision == "float32"


def test_training_runs_under_autocast_and_records_it(monkeypatch, tmp_path, tiny_base_dir):
    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: True)
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 4}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared, sft={"max_steps": 1}))
    ctx = build_context(config)
    assert ctx.choice.autocast
    trainer, _ = build_sft_trainer(ctx, "alice")
    # fp32 master weights; the Trainer's bf16 flag runs forward and backward under CPU autocast.
    assert trainer.args.bf16 and next(trainer.model.parameters()).dtype == torch.float32

    path = train_sft(build_context(config), "alice")
    assert read_manifest(path)["device"]["precision"] == "bf16-autocast"
