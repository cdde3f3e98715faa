"""Benchmark the evaluation's agent loop: one episode and one adapter at a time vs mixed-adapter batches.

    python scripts/bench_eval.py configs/demo.yaml                      # demo suite, trained adapters if any
    python scripts/bench_eval.py configs/demo.yaml --synthetic --limit 8  # random adapters, 8 tasks each
    python scripts/bench_eval.py configs/demo.yaml --set model.device=cuda --batch-size 64

Reads the run's prepared held-out tasks (run `replica data prepare CONFIG` first) and, per
contributor and stage, the published adapter; with --synthetic (or when none is published) it
attaches small random LoRA adapters instead, which exercise the same code path. Both modes run the
same episodes greedily; the script prints both wall times, the ratio, and how many episodes came out
identical (messages and end state), and writes bench_eval.json under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from replica.agents.adapters import adapter_name, load_adapters
from replica.agents.loop import Episode, GenerationSettings, run_episodes
from replica.bases import provide_base
from replica.config import load_config
from replica.eval import inputs
from replica.eval.rollout import Target, build_episodes
from replica.model import load_base_model, load_tokenizer, resolve_device

# --------------------------------------------------------------------------- arguments

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("config", type=Path)
parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
parser.add_argument("--stages", default="base,sft,dpo", help="targets per contributor")
parser.add_argument("--limit", type=int, default=0, help="first N held-out tasks per contributor (0: all)")
parser.add_argument(
    "--batch-size", type=int, default=0, help="batched mode's batch size (0: eval.batch_size)"
)
parser.add_argument(
    "--synthetic", action="store_true", help="random LoRA adapters even if trained ones exist"
)
parser.add_argument(
    "--out", type=Path, default=None, help="where bench_eval.json goes (default <run_dir>/eval)"
)
args = parser.parse_args()

config = load_config(args.config, args.overrides)
stages = [s for s in args.stages.split(",") if s]
contributors = inputs.discover_contributors(config.prepared_dir)
tasks = {c: inputs.load_rows(config.prepared_dir, c, "tasks/heldout") for c in contributors}
if args.limit:
    tasks = {c: rows[: args.limit] for c, rows in tasks.items()}

# --------------------------------------------------------------------------- model and adapters

base_path = provide_base(config.model)
tokenizer = load_tokenizer(base_path, config.model.revision, config.model.chat_template)
choice = resolve_device(config.model)
base = load_base_model(config.model, choice, base_path)
adapters: dict[str, Path] = {}
synthetic_dir = (args.out or config.run_dir / "eval") / "synthetic_adapters"
synthetic = args.synthetic
for contributor in contributors:
    for stage in (s for s in stages if s != "base"):
        found = None if args.synthetic else inputs.published_adapter(config.run_dir, contributor, stage)
        if found is None:
            # Small random LoRA (alpha/r = 1/8): outputs differ per adapter but stay near the base's.
            from peft import LoraConfig, get_peft_model

            synthetic = True
            torch.manual_seed(len(adapters))
            lora = LoraConfig(r=8, lora_alpha=1, target_modules="all-linear", init_lora_weights=False)
            found = synthetic_dir / contributor / stage
            with_lora = get_peft_model(base, lora)
            with_lora.save_pretrained(found)
            base = with_lora.unload()  # the bare base again: adapters are attached below, by name
        adapters[adapter_name(contributor, stage)] = found
model = load_adapters(base, adapters)
targets = [Target(c, s, None if s == "base" else adapter_name(c, s)) for c in contributors for s in stages]
settings = GenerationSettings(max_new_tokens=config.eval.max_new_tokens, seed=config.seed)
batch_size = args.batch_size or config.eval.batch_size


def episodes() -> list[Episode]:
    """The whole suite, fresh: every target on its contributor's held-out tasks."""
    suite = []
    for target in targets:
        suite += build_episodes(tasks[target.contributor], target, 1, config.eval.max_turns, config.eval.env)
    return suite


def timed(run) -> tuple[list[Episode], float]:
    if choice.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if choice.device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


# --------------------------------------------------------------------------- warm-up (kernels, caches)

run_episodes(model, tokenizer, episodes()[:2], GenerationSettings(max_new_tokens=4), batch_size=2)

# --------------------------------------------------------------------------- (a) one episode, one adapter at a time


def sequential() -> list[Episode]:
    suite = episodes()
    for episode in suite:
        run_episodes(model, tokenizer, [episode], settings, batch_size=1)
    return suite


one_by_one, seconds_a = timed(sequential)

# --------------------------------------------------------------------------- (b) mixed-adapter batches on one base

batched, seconds_b = timed(
    lambda: run_episodes(model, tokenizer, episodes(), settings, batch_size=batch_size)
)

# --------------------------------------------------------------------------- compare and report

same = sum(
    a.messages == b.messages and a.sandbox.env.state == b.sandbox.env.state
    if a.sandbox
    else a.messages == b.messages
    for a, b in zip(one_by_one, batched, strict=True)
)
result = {
    "config": str(args.config),
    "data": "demo" if "demo" in str(args.config) else str(config.prepared_dir),
    "adapters": "synthetic (random LoRA)" if synthetic else "trained",
    "device": choice.device if choice.device == "cpu" else torch.cuda.get_device_name(),
    "dtype": str(choice.dtype).removeprefix("torch."),
    "contributors": len(contributors),
    "targets": len(targets),
    "episodes": len(batched),
    "batch_size": batch_size,
    "max_new_tokens": settings.max_new_tokens,
    "max_turns": config.eval.max_turns,
    "generated_tokens": sum(e.generated_tokens for e in batched),
    "sequential_s": round(seconds_a, 2),
    "batched_s": round(seconds_b, 2),
    "speedup": round(seconds_a / seconds_b, 2),
    "identical_episodes": same,
}
out = args.out or config.run_dir / "eval"
out.mkdir(parents=True, exist_ok=True)
(out / "bench_eval.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
print(
    f"sequential {seconds_a:.1f} s | batched {seconds_b:.1f} s | speedup {seconds_a / seconds_b:.1f}x | "
    f"identical {same}/{len(batched)} episodes"
)
