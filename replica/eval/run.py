"""`replica eval CONFIG`: every contributor's held-out evaluation, base vs SFT vs DPO, in one run.

Reads config → loads the base once and attaches every replica's adapter → rolls all targets out
together (mixed-adapter batches) → scores likelihood metrics and the fidelity matrix → writes
`<run_dir>/eval/` (report.json, report.md, results.csv, PNGs) and prints the leaderboard.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from replica.agents.adapters import adapter_name, load_adapters
from replica.agents.loop import GenerationSettings
from replica.artifacts import library_versions, sha256_text
from replica.bases import provide_base
from replica.config import RunConfig, dump_config
from replica.errors import UserError
from replica.eval import inputs
from replica.eval.fidelity import attribution, fidelity_matrix, preference_accuracy, preference_logprobs
from replica.eval.likelihood import demonstration_rows, mean_nll, score_rows
from replica.eval.plots import plot_cross_success, plot_fidelity, plot_success
from replica.eval.report import print_leaderboard, write_report
from replica.eval.rollout import Target, build_episodes, roll_out
from replica.eval.summary import cross_success, summarize_episodes
from replica.model import load_base_model, load_tokenizer, resolve_device
from replica.templates import training_chat_template
from replica.verbosity import apply_to_libraries

log = logging.getLogger(__name__)
STAGES = ("base", "sft", "dpo")


@dataclass
class EvalPlan:
    """Which contributors and stages are evaluated, and the adapters that back them."""

    contributors: list[str]
    stages: list[str]
    adapters: dict[tuple[str, str], Path] = field(default_factory=dict)  # (contributor, stage) -> dir

    def targets(self) -> list[Target]:
        """Every (contributor, stage) that can run: base always, sft/dpo when published."""
        return [
            Target(c, s, None if s == "base" else adapter_name(c, s))
            for c in self.contributors
            for s in self.stages
            if s == "base" or (c, s) in self.adapters
        ]

    def final_stages(self) -> dict[str, str]:
        """Each contributor's latest evaluated replica stage (dpo over sft); none for base-only."""
        finals = {}
        for c in self.contributors:
            stage = next((s for s in ("dpo", "sft") if (c, s) in self.adapters), None)
            if stage:
                finals[c] = stage
        return finals

    def cross_targets(self) -> list[Target]:
        """Every final replica on every other contributor's tasks (the off-diagonal of cross success)."""
        return [
            Target(owner, stage, adapter_name(r, stage), replica=r)
            for owner in self.contributors
            for r, stage in self.final_stages().items()
            if r != owner
        ]


def run_eval(
    config: RunConfig, contributor: str | None = None, stages: list[str] | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Evaluate, write `<run_dir>/eval/`, print the leaderboard; returns the report dict."""
    started = time.perf_counter()
    plan = make_plan(config, contributor, stages)
    apply_to_libraries()  # quiet unless -v (replica/verbosity.py)
    torch.manual_seed(config.seed)
    base_path = provide_base(config.model)
    tokenizer = load_tokenizer(base_path, config.model.revision, config.model.chat_template)
    choice = resolve_device(config.model)
    base = load_base_model(config.model, choice, base_path)
    model = load_adapters(base, {adapter_name(c, s): path for (c, s), path in plan.adapters.items()})
    data = {
        c: {s: inputs.load_rows(config.prepared_dir, c, s) for s in inputs.SPLITS} for c in plan.contributors
    }
    rows = evaluate_tasks(model, tokenizer, config, plan, data)
    summaries = summarize_episodes(rows, config.eval.k)
    results = [
        {"contributor": t.contributor, "stage": t.stage, **summaries.get((t.contributor, t.stage), {})}
        for t in plan.targets()
    ]
    template = training_chat_template(tokenizer)
    add_likelihood_metrics(model, tokenizer, plan, data, results, template)
    report = build_report(config, plan, base_path, results, rows)
    report["fidelity"] = fidelity_section(model, tokenizer, plan, data, template)
    if config.eval.cross:
        report["cross_success"] = cross_success(rows, plan.final_stages())
    out_dir = write_outputs(config.run_dir / "eval", report, rows)
    if not quiet:
        print_leaderboard(report)
    log.info("eval written to %s in %.1f s", out_dir, time.perf_counter() - started)
    return report


def make_plan(config: RunConfig, contributor: str | None, stages: list[str] | None) -> EvalPlan:
    """Resolve contributors and stages; a requested but missing contributor or stage is a UserError."""
    stages = list(stages or config.eval.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(
            f"--stages: unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGES)}"
        )
    everyone = inputs.discover_contributors(config.prepared_dir)
    if contributor is not None and contributor not in everyone:
        raise UserError(
            f"--contributor {contributor}: no held-out data under {config.prepared_dir} "
            f"(found: {', '.join(everyone) or 'none'})"
        )
    contributors = [contributor] if contributor else everyone
    if not contributors:
        raise UserError(f"{config.prepared_dir}: no contributor has held-out data")
    plan = EvalPlan(contributors=contributors, stages=stages)
    for c in contributors:
        for s in stages:
            path = inputs.published_adapter(config.run_dir, c, s) if s != "base" else None
            if path is not None:
                plan.adapters[(c, s)] = path
            elif s != "base":
                log.warning(
                    "%s has no published %s adapter under %s; skipped", c, s, config.run_dir / "replicas"
                )
    return plan


def evaluate_tasks(model, tokenizer, config: RunConfig, plan: EvalPlan, data: dict) -> list[dict[str, Any]]:
    """Roll every target out on its contributor's held-out tasks, all in shared batches."""
    settings = GenerationSettings(
        max_new_tokens=config.eval.max_new_tokens,
        temperature=config.eval.temperature,
        seed=config.seed,
        turn_cache=config.eval.turn_cache,
        prefix_cache=config.eval.prefix_cache,
        cache_mb=config.eval.cache_mb,
    )
    if config.eval.k > 1 and config.eval.temperature == 0:
        log.warning("eval.k=%d with temperature 0: the k samples are identical (greedy)", config.eval.k)
    episodes = []
    for target in plan.targets() + (plan.cross_targets() if config.eval.cross else []):
        tasks = data[target.contributor]["tasks/heldout"]
        episodes += build_episodes(tasks, target, config.eval.k, config.eval.max_turns, config.eval.env)
    return roll_out(model, tokenizer, episodes, settings, config.eval.batch_size) if episodes else []


def add_likelihood_metrics(
    model, tokenizer, plan: EvalPlan, data: dict, results: list[dict], template: str
) -> None:
    """Held-out NLL / perplexity of demonstrations and held-out preference accuracy, per entry."""
    for entry in results:
        c, stage = entry["contributor"], entry["stage"]
        adapter = None if stage == "base" else adapter_name(c, stage)
        demos = data[c]["sft/heldout"]
        if demos:
            scores = score_rows(
                model, demonstration_rows(tokenizer, demos, template), adapter, tokenizer.pad_token_id
            )
            entry["nll"] = mean_nll(scores)
            entry["perplexity"] = math.exp(entry["nll"]) if math.isfinite(entry["nll"]) else None
        pairs = data[c]["pref/heldout"]
        reference = _reference_of(plan, c, stage)
        if pairs and stage != "base":
            policy = preference_logprobs(model, tokenizer, pairs, adapter)
            ref = preference_logprobs(model, tokenizer, pairs, reference)
            accuracy = preference_accuracy(policy, ref)
            entry.update(
                pref_accuracy=accuracy["accuracy"],
                pref_margin=accuracy["margin"],
                pref_pairs=accuracy["pairs"],
            )
            entry["pref_reference"] = "base" if reference is None else reference


def _reference_of(plan: EvalPlan, contributor: str, stage: str) -> str | None:
    """DPO's reference policy is the contributor's SFT adapter; SFT's is the base."""
    if stage == "dpo" and (contributor, "sft") in plan.adapters:
        return adapter_name(contributor, "sft")
    return None


def fidelity_section(model, tokenizer, plan: EvalPlan, data: dict, template: str) -> dict[str, Any]:
    """Contributors × replicas NLL matrix (each replica at its latest evaluated stage) + attribution."""
    replicas: dict[str, str | None] = {c: adapter_name(c, s) for c, s in plan.final_stages().items()}
    demos = {c: data[c]["sft/heldout"] for c in plan.contributors if data[c]["sft/heldout"]}
    if not replicas or not demos:
        return {}
    columns = {**replicas, "base": None}
    matrix = fidelity_matrix(model, tokenizer, demos, columns, template)
    replica_only = {c: {r: v for r, v in row.items() if r != "base"} for c, row in matrix.items()}
    return {
        "replicas": list(columns),
        "stages": replicas,
        "matrix": matrix,
        "attribution": attribution(replica_only),
    }


def build_report(
    config: RunConfig, plan: EvalPlan, base_path: str, results: list[dict], rows: list[dict]
) -> dict:
    """Every number with the config and adapter hashes it came from (no timestamps: reruns match)."""
    resolved = dump_config(config)
    return {
        "run_name": config.run_name,
        "config_source": config.source,
        "config_overrides": config.overrides,
        "config_hash": sha256_text(resolved),
        "config": config.model_dump(mode="json"),
        "base": {"path": base_path, "revision": config.model.revision},
        "adapters": {
            f"{c}/{s}": {"path": str(p), "sha256": inputs.adapter_fingerprint(p)}
            for (c, s), p in plan.adapters.items()
        },
        "settings": {
            "k": config.eval.k,
            "temperature": config.eval.temperature,
            "seed": config.seed,
            "max_turns": config.eval.max_turns,
            "max_new_tokens": config.eval.max_new_tokens,
        },
        "results": results,
        "episodes": len(rows),
        "versions": library_versions(),
    }


def write_outputs(out_dir: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """report.json, report.md, results.csv, success.png, fidelity.png (and cross_success.png)."""
    write_report(out_dir, report, rows)
    if report["results"]:
        plot_success(report, out_dir / "success.png")
    plot_fidelity(report, out_dir / "fidelity.png")
    plot_cross_success(report, out_dir / "cross_success.png")
    return out_dir
