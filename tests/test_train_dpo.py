"""DPO stage: starts from the SFT adapter, which is also the reference policy (not the bare base)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from train_fixtures import write_config, write_prepared

from replica.artifacts import final_stage, read_manifest, replica_dir
from replica.config import load_config
from replica.train.context import build_context
from replica.train.dpo import build_dpo_trainer, train_dpo
from replica.train.sft import train_sft


def _sequence_logps(model, batch) -> torch.Tensor:
    """Summed log-probs of the completion tokens, computed independently of TRL."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return (logps * batch["completion_mask"][:, 1:]).sum(-1)


def test_dpo_trains_from_sft_with_the_sft_adapter_as_reference(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8, "pref": 8}})
    # A high SFT learning rate so the SFT adapter is far from the base: the two references differ.
    # fp32: the trainer's reference pass runs under its mixed precision, the check below does not.
    config = load_config(
        write_config(
            tmp_path, tiny_base_dir, prepared, sft={"learning_rate": 3e-2}, model={"dtype": "float32"}
        )
    )
    ctx = build_context(config)
    sft_path = train_sft(ctx, "alice")

    trainer, _ = build_dpo_trainer(ctx, "alice")
    batch = next(iter(trainer.get_train_dataloader()))
    ref_logps = trainer.compute_ref_log_probs(trainer.model, batch)
    ref = torch.cat([ref_logps[0], ref_logps[1]]) if isinstance(ref_logps, tuple) else ref_logps
    model = trainer.accelerator.unwrap_model(trainer.model)
    with model.disable_adapter():
        base = _sequence_logps(model, batch)
    model.set_adapter("default")  # the SFT adapter as loaded, before any DPO step
    sft = _sequence_logps(model, batch)
    assert torch.allclose(ref, sft, atol=1e-3), (ref, sft)
    assert not torch.allclose(ref, base, atol=1e-2), "reference equals the bare base"
    from replica.train.stage import release_base

    release_base(ctx, trainer)

    path = train_dpo(ctx, "alice")
    assert path == replica_dir(config.run_dir, "alice", "dpo")
    sft_w = load_file(str(sft_path / "adapter_model.safetensors"))
    dpo_w = load_file(str(path / "adapter_model.safetensors"))
    assert sft_w.keys() == dpo_w.keys()
    assert any(not torch.equal(sft_w[k], dpo_w[k]) for k in sft_w), "DPO did not move the adapter"
    assert not (path / "ref").exists()
    manifest = read_manifest(path)
    assert manifest["stage"] == "dpo" and manifest["parent"]["stage"] == "sft"
    assert manifest["hyperparameters"]["dpo"]["loss_type"] == "sigmoid"
    assert len(manifest["records"]["train"]) == 6
    assert "eval_loss" in manifest["metrics"]
    assert final_stage(config.run_dir, "alice") == "dpo"
    from matplotlib.image import imread

    curves = imread(path / "training_curves.png")  # loss, reward margin and preference accuracy
    assert curves.shape[1] == 3 * 420 and imread(sft_path / "training_curves.png").shape[1] == 420


def test_reference_free_simpo_trains_the_sft_adapter_without_a_reference(tmp_path, tiny_base_dir):
    prepared = write_prepared(tmp_path / "prepared", {"erin": {"sft": 6, "pref": 6}})
    config = load_config(write_config(tmp_path, tiny_base_dir, prepared, dpo={"loss_type": "simpo"}))
    ctx = build_context(config)
    sft_path = train_sft(ctx, "erin")

    path = train_dpo(ctx, "erin")
    sft_w = load_file(str(sft_path / "adapter_model.safetensors"))
    dpo_w = load_file(str(path / "adapter_model.safetensors"))
    assert sft_w.keys() == dpo_w.keys()
    assert any(not torch.equal(sft_w[k], dpo_w[k]) for k in sft_w), "SimPO did not move the adapter"
    manifest = read_manifest(path)
    assert manifest["hyperparameters"]["reference"].startswith("none")
    assert manifest["hyperparameters"]["dpo"]["loss_type"] == "simpo"
    assert manifest["metrics"]["global_step"] == 2.0


def test_sft_loss_weight_adds_the_chosen_answers_nll_to_the_dpo_loss(tmp_path, tiny_base_dir):
    """RPO: at the first step the policy is its reference, so the DPO term is exactly log 2 and the
    rest of the loss is the weighted per-token NLL of the chosen completions."""
    import math

    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 6, "pref": 6}})
    config = load_config(
        write_config(
            tmp_path,
            tiny_base_dir,
            prepared,
            model={"dtype": "float32"},
            dpo={"sft_loss_weight": 0.5, "eval_heldout": False},
        )
    )
    ctx = build_context(config)
    train_sft(ctx, "alice")
    trainer, record = build_dpo_trainer(ctx, "alice")
    assert trainer.args.loss_type == ["sigmoid", "sft"] and trainer.args.loss_weights == [1.0, 0.5]
    assert trainer.eval_dataset is None  # eval_heldout: false
    assert record.hyperparameters["dpo"]["sft_loss_weight"] == 0.5

    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    chosen = batch["completion_mask"][:, 1:].bool()
    chosen[len(chosen) // 2 :] = False  # the batch is chosen rows, then rejected rows
    nll = float(-logps[chosen].mean())
    assert nll > 0.1
    assert math.isclose(loss, math.log(2) + 0.5 * nll, rel_tol=1e-3), (loss, nll)


def test_sft_loss_weight_is_refused_with_simpo(tmp_path, tiny_base_dir):
    import pytest

    from replica.errors import UserError

    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 2, "pref": 2}})
    path = write_config(tmp_path, tiny_base_dir, prepared, dpo={"loss_type": "simpo", "sft_loss_weight": 1.0})
    with pytest.raises(UserError, match="sft_loss_weight"):
        load_config(path)
