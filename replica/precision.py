"""bf16 on CPU: whether this CPU has it, and whether a model's loss agrees with fp32 under it.

Measured on a 2-core machine with AVX512-BF16 and AMX, a LoRA step of SmolLM2-135M at batch 8 x 384
did 1.74x the tokens per CPU-second with bf16 autocast over fp32 weights as in fp32
(scripts/bench_precision.py, docs/benchmarks.md). A CPU without bf16 instructions emulates it
slowly, so `model.dtype: auto` uses it only where the instructions exist and only after the loss
of a fixed batch agrees with fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute bf16 natively
# bf16 keeps 8 bits of mantissa (~0.4% per value); a mean loss over a batch that moves more than
# this under autocast means the model does not tolerate it.
LOSS_TOLERANCE = 0.02
PROBE_SHAPE = (2, 64)  # sequences x tokens of the fixed probe batch


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU flags list native bf16 instructions (False where /proc/cpuinfo is absent)."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8").split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def autocast_losses(model: torch.nn.Module, seed: int = 0) -> tuple[float, float]:
    """The loss of a fixed batch (seeded random token ids) in fp32 and under bf16 autocast."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, PROBE_SHAPE, generator=generator).to(model.device)
    with torch.no_grad():
        fp32 = model(input_ids=ids, labels=ids).loss.item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(input_ids=ids, labels=ids).loss.item()
    return fp32, bf16


def losses_agree(fp32: float, bf16: float, tolerance: float = LOSS_TOLERANCE) -> bool:
    """Relative difference of the two losses within `tolerance`."""
    return abs(bf16 - fp32) <= tolerance * max(abs(fp32), 1e-6)
