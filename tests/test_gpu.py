"""CUDA paths the CPU suite cannot reach: bf16 chosen automatically, and QLoRA (4-bit base).

Marked `gpu` (deselected by default): `pytest -m gpu tests/test_gpu.py`. Each test skips, with
the reason, where CUDA or bitsandbytes is absent. scripts/gpu_checks.sh runs them on a lent GPU.

The base is a small random Qwen2 (hidden 128: 4-bit blocks of 64 divide every weight) with the
tiny test tokenizer, saved to a local directory: `model.quantization: 4bit` is for real
`name_or_path` bases, not `model.build` ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import write_config, write_prepared

from replica.artifacts import read_manifest
from replica.config import load_config
from replica.model import load_tokenizer
from replica.train.context import build_context
from replica.train.sft import sft_args, train_sft

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # ImportError, or a library that fails to load its CUDA binary
        return False
    return True


@pytest.fixture(scope="module")
def random_qwen2_dir(tmp_path_factory, tiny_base_dir) -> Path:
    """A random-weight Qwen2 (2 layers, hidden 128) with the tiny base's tokenizer, saved locally."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer(str(tiny_base_dir))
    torch.manual_seed(0)
    shape = dict(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
    )  # fmt: skip
    target = tmp_path_factory.mktemp("random-qwen2")
    Qwen2ForCausalLM(Qwen2Config(**shape)).save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.mark.parametrize(
    "quantization",
    [
        "none",
        pytest.param(
            "4bit",
            marks=pytest.mark.skipif(not has_bitsandbytes(), reason="QLoRA needs the bitsandbytes package"),
        ),
    ],
)
def test_sft_on_cuda_picks_bf16_and_moves_the_adapter(tmp_path, random_qwen2_dir, quantization):
    prepared = write_prepared(tmp_path / "prepared", {"alice": {"sft": 8}})
    path = write_config(
        tmp_path,
        random_qwen2_dir,
        prepared,
        model={"device": "auto", "dtype": "auto", "quantization": quantization},
        sft={"max_steps": 2, "learning_rate": 1e-2},
    )
    ctx = build_context(load_config(path))

    # bf16 auto on CUDA: chosen from `model.dtype: auto`, and handed to the trainer.
    assert ctx.choice.device == "cuda"
    assert ctx.choice.dtype == torch.bfloat16, (
        f"auto picked {ctx.choice.dtype} on {torch.cuda.get_device_name()}"
    )
    args = sft_args(ctx, "alice", has_eval=True)
    assert args.bf16 and not args.fp16 and not args.use_cpu

    base = ctx.base_model()
    assert base.device.type == "cuda"
    if quantization == "4bit":
        import bitsandbytes as bnb

        assert getattr(base, "is_loaded_in_4bit", False)
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in base.modules()), "no 4-bit linear layer"
    else:
        assert base.dtype == torch.bfloat16

    published = train_sft(ctx, "alice")  # the pipeline's own path: train, publish, release the base

    manifest = read_manifest(published)
    assert manifest["metrics"]["global_step"] == 2.0
    weights = load_file(str(published / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # PEFT initialises B to zero: any non-zero B means two optimizer steps moved the adapter.
    assert lora_b and any(torch.count_nonzero(t) > 0 for t in lora_b)
    assert all(torch.isfinite(t.float()).all() for t in weights.values()), "non-finite adapter weights"
    # The published adapter stays plain: no quantization state leaks into it.
    assert not any("quant" in name or "absmax" in name for name in weights)
