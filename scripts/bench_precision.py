"""CPU training precision: LoRA steps on a real base in fp32, bf16 autocast over fp32 weights
(what `model.dtype: auto` picks on a CPU with bf16 instructions) and pure bf16, side by side.

    # SmolLM2-135M-Instruct (packaged base, converted on first use), batch 8 x 384 tokens
    python scripts/bench_precision.py
    python scripts/bench_precision.py --base packaged:smollm2-135m-instruct --steps 3 --rounds 2
    # on a shared machine: one thread, and read tokens per CPU-second (wall time follows the load)
    OMP_NUM_THREADS=1 python scripts/bench_precision.py --threads 1 --steps 2 --rounds 1

Each side trains the same LoRA (r 16, all linear layers, AdamW) on the same fixed batch; sides
run interleaved for `--rounds` rounds after one untimed warm-up step each, and the median
tokens/s per side (wall clock, and per CPU-second of this process) is reported with its ratio to fp32. The fixed-batch losses that decide
`model.dtype: auto` (replica/precision.py) are printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from replica.bases import provide_base  # noqa: E402
from replica.config import ModelConfig  # noqa: E402
from replica.precision import autocast_losses, cpu_has_bf16, losses_agree  # noqa: E402

SIDES = ("fp32", "bf16-autocast", "bf16")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="packaged:smollm2-135m-instruct", help="model.name_or_path")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=384, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per side and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args()


def lora_model(path: str, side: str):
    """The base with a fresh LoRA; pure bf16 casts the weights, the other sides keep fp32."""
    dtype = torch.bfloat16 if side == "bf16" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(base, config)


def tokens_per_second(model, batch: torch.Tensor, side: str, steps: int) -> tuple[float, float]:
    """Real optimizer steps (forward, backward, AdamW) on `batch`, one untimed step first: tokens
    per wall-clock second and per CPU-second of this process."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if side == "bf16-autocast" else nullcontext()

    def step() -> None:
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    tokens = steps * batch.numel()
    return tokens / (time.perf_counter() - started), tokens / (time.process_time() - cpu_started)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    path = provide_base(ModelConfig(name_or_path=args.base))
    print(f"base: {path}; torch threads: {torch.get_num_threads()}; CPU bf16 instructions: {cpu_has_bf16()}")
    base = AutoModelForCausalLM.from_pretrained(path)
    fp32, bf16 = autocast_losses(base)
    print(f"fixed-batch loss: fp32 {fp32:.4f}, bf16 autocast {bf16:.4f}, agree: {losses_agree(fp32, bf16)}")
    vocab = base.get_input_embeddings().num_embeddings
    batch = torch.randint(
        0, vocab, (args.batch_size, args.length), generator=torch.Generator().manual_seed(0)
    )
    del base
    wall: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for round_ in range(args.rounds):
        for side in sides:
            torch.manual_seed(0)
            per_second, per_cpu_second = tokens_per_second(lora_model(path, side), batch, side, args.steps)
            wall[side].append(per_second)
            cpu[side].append(per_cpu_second)
            print(
                f"round {round_ + 1} {side:>14}: {per_second:7.1f} tokens/s, "
                f"{per_cpu_second:7.1f} tokens/CPU-s",
                flush=True,
            )
    print(f"\nbatch {args.batch_size} x {args.length}, {args.steps} steps x {args.rounds} rounds (median)")
    for side in sides:
        line = f"{side:>14}: {statistics.median(wall[side]):7.1f} tokens/s, {statistics.median(cpu[side]):7.1f} tokens/CPU-s"
        if "fp32" in sides and side != "fp32":
            line += (
                f"  ({statistics.median(wall[side]) / statistics.median(wall['fp32']):.2f}x fp32 wall, "
                f"{statistics.median(cpu[side]) / statistics.median(cpu['fp32']):.2f}x per CPU-s)"
            )
        print(line)


if __name__ == "__main__":
    main()
