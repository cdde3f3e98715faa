"""Benchmark the evaluation's agent loop: one at a time vs batched, without and with the rollout caches.

    python scripts/bench_eval.py configs/demo.yaml --limit 12 --synthetic  # the documented run (docs/eval.md)
    python scripts/bench_eval.py configs/demo.yaml                         # whole suite, trained adapters if any
    python scripts/bench_eval.py configs/demo.yaml --sides a,d --set model.device=cuda --batch-size 128

Reads the run's prepared held-out tasks (run `replica data prepare CONFIG` first) and, per
contributor and stage, the published adapter; with --synthetic (or when none is published) it
attaches random LoRA adapters of the config's rank and target modules instead, which exercise the
same code path. Four sides run the same episodes greedily, one after the other: (a) one episode at a
time without cache, (b) mixed-adapter batches without cache, (c) batches + turn cache, (d) batches +
turn cache + shared prefix (what `replica eval` does). It prints, per side, wall and CPU seconds,
episodes/s, generated and prefilled tokens, how many episodes equal side a's (messages, end state,
stop reason) and the ratios to side a, and writes bench_eval.json under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from replica.agents.adapters import adapter_name, load_adapters
from replica.agents.loop import Episode, GenerationSettings, cache_store, run_episodes
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
parser.add_argument(
    "--sides", default="a,b,c,d", help="which sides to run (a is the baseline the others are compared to)"
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
            # Random LoRA of the run's rank and target modules (the cost per step a trained adapter
            # has), scaled small (alpha/r = 1/8): outputs differ per adapter but stay near the base's.
            from peft import LoraConfig, get_peft_model

            synthetic = True
            torch.manual_seed(len(adapters))
            lora = LoraConfig(
                r=config.lora.r,
                lora_alpha=max(1, config.lora.r // 8),
                target_modules=config.lora.target_modules,
                init_lora_weights=False,
            )
            found = synthetic_dir / contributor / stage
            with_lora = get_peft_model(base, lora)
            with_lora.save_pretrained(found)
            base = with_lora.unload()  # the bare base again: adapters are attached below, by name
        adapters[adapter_name(contributor, stage)] = found
model = load_adapters(base, adapters)
targets = [Target(c, s, None if s == "base" else adapter_name(c, s)) for c in contributors for s in stages]
settings = GenerationSettings(
    max_new_tokens=config.eval.max_new_tokens, seed=config.seed, cache_mb=config.eval.cache_mb
)
batch_size = args.batch_size or config.eval.batch_size


def episodes() -> list[Episode]:
    """The whole suite, fresh: every target on its contributor's held-out tasks."""
    suite = []
    for target in targets:
        suite += build_episodes(tasks[target.contributor], target, 1, config.eval.max_turns, config.eval.env)
    return suite


# --------------------------------------------------------------------------- warm-up (kernels, caches)

run_episodes(model, tokenizer, episodes()[:2], GenerationSettings(max_new_tokens=4), batch_size=2)

# --------------------------------------------------------------------------- the four sides, one after the other

NO_CACHE = replace(settings, turn_cache=False, prefix_cache=False)
SIDES = {  # name: (settings, batch size)
    "a. one at a time, no cache": (NO_CACHE, 1),
    "b. batched, no cache": (NO_CACHE, batch_size),
    "c. batched + turn cache": (replace(settings, turn_cache=True, prefix_cache=False), batch_size),
    "d. batched + turn cache + shared prefix": (
        replace(settings, turn_cache=True, prefix_cache=True),
        batch_size,
    ),
}


def run_side(side_settings: GenerationSettings, size: int) -> tuple[list[Episode], float, float, int]:
    """Every episode of the suite; the wall and CPU seconds, and the tokens shared prefixes computed."""
    suite = episodes()
    groups = [[e] for e in suite] if size == 1 else [suite]  # one at a time: one call per episode
    if choice.device == "cuda":
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    prefix_tokens = 0
    for group in groups:
        store = cache_store(model, side_settings)
        run_episodes(model, tokenizer, group, side_settings, batch_size=size, caches=store)
        prefix_tokens += store.prefix_tokens if store else 0
    if choice.device == "cuda":
        torch.cuda.synchronize()
    return suite, time.perf_counter() - start, time.process_time() - cpu_start, prefix_tokens


def same(a: Episode, b: Episode) -> bool:
    """Messages, end state and stop reason all equal."""
    state = a.sandbox.env.state == b.sandbox.env.state if a.sandbox else True
    return a.messages == b.messages and state and a.stop_reason == b.stop_reason


rows = []
baseline: list[Episode] = []
for name, (side_settings, size) in SIDES.items():
    if name[0] not in args.sides.split(","):
        continue
    suite, seconds, cpu_seconds, prefix_tokens = run_side(side_settings, size)
    baseline = baseline or suite
    rows.append(
        {
            "side": name,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),
            "episodes_per_s": round(len(suite) / seconds, 3),
            "generated_tokens": sum(e.generated_tokens for e in suite),
            "prefilled_tokens": sum(e.prefilled_tokens for e in suite) + prefix_tokens,
            "identical_episodes": sum(same(a, b) for a, b in zip(suite, baseline, strict=True)),
        }
    )
    print(f"{name}: {seconds:.1f} s ({cpu_seconds:.1f} CPU-s)", flush=True)
for row in rows:  # against the first side run (a, unless --sides leaves it out)
    row["speedup"] = round(rows[0]["seconds"] / row["seconds"], 2)
    row["cpu_speedup"] = round(rows[0]["cpu_seconds"] / row["cpu_seconds"], 2)

# --------------------------------------------------------------------------- report

result = {
    "config": str(args.config),
    "data": "demo" if "demo" in str(args.config) else str(config.prepared_dir),
    "adapters": "synthetic (random LoRA)" if synthetic else "trained",
    "device": choice.device if choice.device == "cpu" else torch.cuda.get_device_name(),
    "dtype": str(choice.dtype).removeprefix("torch."),
    "threads": torch.get_num_threads(),
    "contributors": len(contributors),
    "targets": len(targets),
    "episodes": len(baseline),
    "turns": sum(e.turns for e in baseline),
    "batch_size": batch_size,
    "max_new_tokens": settings.max_new_tokens,
    "max_turns": config.eval.max_turns,
    "sides": rows,
}
out = args.out or config.run_dir / "eval"
out.mkdir(parents=True, exist_ok=True)
(out / "bench_eval.json").write_text(json.dumps(result, indent=2) + "\n")
print(
    f"\n{len(baseline)} episodes ({result['turns']} turns), {len(targets)} targets, batch {batch_size}, "
    f"{result['device']} {result['dtype']}, {result['threads']} thread(s)"
)
print(
    f"{'side':<40} {'wall s':>7} {'CPU s':>7} {'episodes/s':>10} {'generated':>9} {'prefilled':>9} "
    f"{'identical':>9} {'speedup':>7} {'(CPU)':>6}"
)
for row in rows:
    print(
        f"{row['side']:<40} {row['seconds']:>7.1f} {row['cpu_seconds']:>7.1f} {row['episodes_per_s']:>10.2f} "
        f"{row['generated_tokens']:>9} {row['prefilled_tokens']:>9} "
        f"{row['identical_episodes']:>5}/{len(baseline):<3} {row['speedup']:>6.1f}x {row['cpu_speedup']:>5.1f}x"
    )
print(f"wrote {out / 'bench_eval.json'}")
