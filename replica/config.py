"""Typed run configuration: YAML files validated by pydantic at load time.

Precedence is defaults < YAML (with `extends:` chains, parent first) < `--set a.b=c` overrides.
Every error names the file the offending key came from, the key path, what was expected and
what was found, and is raised before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from replica.errors import UserError

SLUG_PATTERN = r"^[a-z0-9_-]{1,64}$"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """The shared base causal LM every replica adapts."""

    name_or_path: str = Field(
        "",
        description="HF hub id, local directory, or `packaged:<name>` (a base shipped in a wheel, e.g. "
        "packaged:smollm2-135m-instruct; see replica/bases/packaged.py).",
    )
    revision: str | None = Field(None, description="Hub revision (commit, tag) to pin the base to.")
    build: str | None = Field(
        None,
        description="Path to a base-build YAML (see configs/demo_base.yaml): build the tiny offline base "
        "from it instead of loading `name_or_path`. Relative paths are resolved against the config file.",
    )
    chat_template: str | None = Field(
        None,
        description="The chat template to render with instead of the model's own: a TRL template family "
        "(qwen2_5, qwen3, llama3, ...; `replica.templates.template_families()`) or a .jinja file (relative to the "
        "config file). Needed when the model's own template cannot render tools or has no training variant.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    quantization: Literal["none", "4bit"] = Field("none", description="4bit = QLoRA (CUDA + bitsandbytes).")
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if not self.name_or_path and not self.build:
            raise ValueError("set model.name_or_path (hub id or local path) or model.build (base-build YAML)")
        return self


class InputConfig(Section):
    """One raw input file or directory."""

    path: str
    format: Literal[
        "auto",
        "replica",
        "openai",
        "sharegpt",
        "llamafactory_pref",
        "trl_pref",
        "ultrafeedback",
        "hh",
        "hf_disk",
    ] = "auto"
    contributor: str | None = Field(
        None,
        pattern=SLUG_PATTERN,
        description="Contributor to attribute records to when the file does not say.",
    )


class SplitConfig(Section):
    heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    by: Literal["task", "time"] = "task"
    seed: int = 0


class FeedbackConfig(Section):
    min_chosen_score: float = Field(4.0, ge=1, le=5)
    min_margin: float = Field(1.0, ge=0)
    strategy: Literal["best_vs_worst", "best_vs_random", "all_pairs"] = "best_vs_worst"


class DataConfig(Section):
    inputs: list[InputConfig] = Field(default_factory=list)
    contributors_file: str | None = Field(None, description="JSONL of Contributor records (consent).")
    contributors: list[str] | None = Field(None, description="Only these contributors (default: all).")
    split: SplitConfig = Field(default_factory=SplitConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    max_length: int = Field(1024, gt=0, description="Longest record, in tokens after templating.")
    too_long: Literal["reject", "truncate"] = Field(
        "reject",
        description="A record over max_length is rejected, or (truncate) a demonstration is cut after "
        "the last assistant turn that fits; feedback records are always rejected.",
    )
    prepared_dir: str | None = Field(None, description="Default: <output_dir>/prepared.")

    @field_validator("contributors")
    @classmethod
    def _slugs(cls, value: list[str] | None) -> list[str] | None:
        import re

        for item in value or []:
            if not re.match(SLUG_PATTERN, item):
                raise ValueError(
                    f"contributor id {item!r} is not a slug (lowercase letters, digits, - and _)"
                )
        return value


class LoraConfig(Section):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    use_rslora: bool = False


class SftConfig(Section):
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(
        -1, description="-1: run `epochs`; otherwise stop after this many optimizer steps."
    )
    batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(1024, gt=0)
    packing: bool = False
    padding_free: bool = False
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler_type: str = "linear"
    logging_steps: int = Field(10, gt=0)
    eval_steps: int | None = Field(
        None, description="Evaluate held-out loss every N steps (default: per epoch)."
    )
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps (resume after a crash).")
    report_to: Literal["none", "tensorboard", "wandb", "mlflow"] = "none"


class DpoConfig(Section):
    enabled: bool = True
    beta: float = Field(0.1, gt=0)
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust", "apo_zero", "sigmoid_norm", "simpo"] = Field(
        "sigmoid",
        description="simpo = reference-free SimPO (TRL's CPOTrainer); the others are DPOTrainer losses.",
    )
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO target reward margin (loss_type: simpo only).")
    sft_loss_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of an NLL term on the chosen answers added to the preference loss (RPO; "
        "TRL's 'sft' loss type): keeps DPO from lowering what SFT taught. 0: plain DPO.",
    )
    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(4, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(1024, gt=0)
    precompute_ref_log_probs: bool = False
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    trim_shared_suffix: bool = Field(
        False,
        description="Cut the tokens a pair's two answers end with in common, so that a pair differing in one "
        "value compares that value only (replica/train/shared_suffix.py; DPOTrainer losses).",
    )
    eval_heldout: bool = Field(
        True,
        description="TRL's held-out rewards at the end of training (off saves a forward pass of policy and "
        "reference over every held-out pair; `replica eval` still scores them).",
    )
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(50, gt=0)
    report_to: Literal["none", "tensorboard", "wandb", "mlflow"] = "none"

    @model_validator(mode="after")
    def _sft_term_needs_dpo_trainer(self) -> DpoConfig:
        for key in ("sft_loss_weight", "trim_shared_suffix"):
            if self.loss_type == "simpo" and getattr(self, key):
                raise ValueError(f"dpo.{key} applies to DPOTrainer losses, not loss_type: simpo")
        return self


class EvalConfig(Section):
    stages: list[Literal["base", "sft", "dpo"]] = Field(default_factory=lambda: ["base", "sft", "dpo"])
    env: str | None = Field(None, description="Registered environment name for agentic tasks.")
    max_new_tokens: int = Field(128, gt=0)
    max_turns: int = Field(8, gt=0, description="Step limit per episode.")
    k: int = Field(1, ge=1, description="Samples per task for pass^k (k > 1 samples with temperature).")
    temperature: float = Field(0.0, ge=0)
    batch_size: int = Field(16, gt=0)
    turn_cache: bool = Field(
        True, description="Carry each episode's KV cache from one turn to the next (off: prefill every turn)."
    )
    prefix_cache: bool = Field(
        True,
        description="Prefill each adapter's system prompt + tool schemas once for all episodes that start with it.",
    )
    cache_mb: int = Field(
        2048, gt=0, description="Memory for both caches between turns (least recently used dropped first)."
    )
    cross: bool = Field(
        False,
        description="Also run each contributor's final replica on every other contributor's held-out "
        "tasks: a replicas x task-owners success matrix (own tasks should score highest).",
    )
    copy_gate: str | None = Field(
        None,
        description="JSONL(.gz) of fresh support-desk conversations ({messages, tools}) the base never "
        "trained on: `replica demo` measures how well the base copies ids, streets, statuses and "
        "amounts on them (replica/eval/copy_gate.py) and prints it next to the base. Relative to the config file.",
    )


class RunConfig(Section):
    """A whole run: what `replica prepare/train/eval/demo` read."""

    run_name: str = Field("run", pattern=SLUG_PATTERN)
    output_dir: str = Field("runs", description="Runs go to <output_dir>/<run_name>/.")
    seed: int = 42
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    source: str | None = Field(None, description="File this config was loaded from (set by the loader).")
    # Not part of the dump (and so of no hash): the resolved values are; this says how they came.
    overrides: list[str] = Field(
        default_factory=list, exclude=True, description="The --set overrides applied (set by the loader)."
    )

    @model_validator(mode="after")
    def _combinations(self) -> RunConfig:
        if self.model.quantization == "4bit" and self.model.device == "cpu":
            raise ValueError("model.quantization: 4bit (QLoRA) needs CUDA, but model.device is cpu")
        if self.model.quantization == "4bit" and self.model.build:
            raise ValueError("model.quantization: 4bit is for real hub models, not the tiny model.build base")
        if self.sft.packing and self.sft.group_by_length:
            # Packing already fills every row; grouping by length would only reorder packed blocks.
            self.sft.group_by_length = False
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def prepared_dir(self) -> Path:
        return Path(self.data.prepared_dir) if self.data.prepared_dir else self.run_dir / "prepared"


class ConfigError(UserError):
    """A config that cannot be used, with file, key path, expectation and finding."""


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config: resolve `extends:`, apply `--set` overrides, validate.

    Raises ConfigError naming the file and key path on any problem.
    """
    path = Path(path)
    raw, origin = _load_with_extends(path, seen=())
    for item in overrides or []:
        key, value = parse_override(item)
        _set_path(raw, key.split("."), value)
        origin[key] = "--set"
    raw["source"] = str(path)
    raw["overrides"] = list(overrides or [])
    _resolve_relative_paths(raw, path.parent)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise _explain(err, origin, path) from None


def parse_override(item: str) -> tuple[str, Any]:
    """Split `a.b=value`; the value is parsed as YAML so `2e-4`, `true`, `[a, b]` get their types."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    key, text = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        return key.strip(), yaml.safe_load(text) if text.strip() else ""
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}: the value is nested too deeply") from None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)})"
        ) from None


def _load_with_extends(path: Path, seen: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """Read a YAML file and merge it over the file it `extends:` (recursively)."""
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: extends: cycle through {' -> '.join(str(p) for p in seen)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except RecursionError:
        raise ConfigError(f"{path}: not a usable config: lists or mappings nested too deeply") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, found {type(data).__name__}")
    parent_name = data.pop("extends", None)
    if parent_name is not None and not isinstance(parent_name, str):
        raise ConfigError(f"{path}: extends: expected the path of a config file, found {parent_name!r}")
    merged: dict = {}
    origin: dict[str, str] = {}
    if parent_name:
        parent_path = (path.parent / parent_name).resolve()
        merged, origin = _load_with_extends(parent_path, seen + (path.resolve(),))
        _resolve_relative_paths(merged, parent_path.parent)
    _deep_merge(merged, data)
    for key in _leaf_paths(data):
        origin[key] = str(path)
    return merged, origin


def _deep_merge(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _leaf_paths(data: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in data.items():
        full = f"{prefix}{key}"
        paths.append(full)
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, full + "."))
    return paths


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = data.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {key} is a value, not a section")
        data = child
    data[keys[-1]] = value


# Relative file paths in a config are relative to that config file, so `extends:` chains and
# configs run from any working directory find the same files.
_PATH_KEYS = (
    ("model", "build"),
    ("model", "chat_template"),
    ("data", "contributors_file"),
    ("eval", "copy_gate"),
)


def _resolve_relative_paths(raw: dict, base_dir: Path) -> None:
    # A section that is not a mapping is left for validation to name (`eval: Input should be a
    # valid dictionary`), not failed on here.
    sections = {name: value for name, value in raw.items() if isinstance(value, dict)}
    for section, key in _PATH_KEYS:
        value = sections.get(section, {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and not value.startswith("./"):
            candidate = base_dir / value
            if candidate.exists():
                raw[section][key] = str(candidate)
    inputs = sections.get("data", {}).get("inputs")
    for item in inputs if isinstance(inputs, list) else []:
        if isinstance(item, dict) and isinstance(item.get("path"), str) and not Path(item["path"]).exists():
            candidate = base_dir / item["path"]
            if candidate.exists():
                item["path"] = str(candidate)


def _explain(err: ValidationError, origin: dict[str, str], path: Path) -> ConfigError:
    """Turn pydantic's report into one line per problem: file: key: expected ..., found ..."""
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"])
        source = _origin_of(key, origin) or str(path)
        found = problem.get("input")
        if problem["type"] == "extra_forbidden":
            expected = "a known key; allowed here: " + ", ".join(_allowed_keys(problem["loc"][:-1]))
            lines.append(f"{source}: {key}: unknown key (expected {expected})")
        elif problem["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {key or '(top level)'}: {message}; found {found!r}")
    return ConfigError("\n".join(lines))


def _origin_of(key: str, origin: dict[str, str]) -> str | None:
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in origin:
            return origin[".".join(parts[:cut])]
    return None


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            break
    return sorted(name for name in model.model_fields if name not in ("source", "overrides"))


def dump_config(config: RunConfig) -> str:
    """The fully resolved config as YAML, written into every run directory."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
