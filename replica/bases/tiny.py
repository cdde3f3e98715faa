"""Builds the tiny offline base model: a locally trained tokenizer plus a small Qwen2 model.

Nothing is downloaded. The tokenizer is byte-level BPE with digits split one per token (so a
small model can copy ids), the special tokens and chat template of Qwen2.5 (a real family with
tool calling, so TRL's training template and response parser apply unchanged). The model is
built from a config and, when `pretrain.steps > 0`, trained from scratch with TRL's SFTTrainer
on contributor-neutral conversations. The result is cached under a key of the build config.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from replica.artifacts import (
    atomic_directory,
    atomic_write_json,
    canonical_json,
    read_json,
    sha256_file,
    sha256_text,
    utc_now,
)
from replica.bases.fixed_digits import fix_digit_embeddings
from replica.config import ModelConfig
from replica.copy_values import DEFAULT_COPY_KINDS, VALUE_PATTERNS
from replica.errors import UserError

log = logging.getLogger(__name__)

# Qwen2.5's special tokens; `<tool_call>` and friends are plain added tokens as in Qwen's own vocab.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# JSON keys with their quotes and colon (short prompts); id prefixes alone; words with their
# leading space; punctuation runs with theirs; whitespace.
COPY_FRIENDLY_PIECES = (
    r'[{ ]*"[A-Za-z_]+":|[A-Z]-| ?[A-Za-z_]+(?![A-Za-z_-])| ?[^\sA-Za-z0-9]+|\s+|[A-Za-z_]+'
)
# The same pieces with a word's leading space split off: `delayed` is then one token after a space
# (prose) and after a quote (a JSON string) alike.
SPACE_APART_PIECES = COPY_FRIENDLY_PIECES.replace(" ?[A-Za-z_]+(?!", "[A-Za-z_]+(?!")
# The space split off lowercase words only: a capitalized word keeps it, so a spelled street starts
# with `ĠB`, the token after a house number's last digit, instead of a bare space token (which
# follows every word). Measured: a continued base still did not copy streets with it (docs/demo.md).
LOWERCASE_APART_PIECES = COPY_FRIENDLY_PIECES.replace(
    " ?[A-Za-z_]+(?!", " ?[A-Z][A-Za-z_]*(?![A-Za-z_-])|[A-Za-z_]+(?!"
)
# A letter inside a capitalized word (street names, names): isolated, so `Oak` is spelled `O a k`.
# Read as: a lowercase letter after a word's first capital and only lowercase letters since.
SPELLED_LETTER_DEFINITION = r"(?<=\b[A-Z][a-z]*)[a-z]"
# The same cut, found 100-150x faster: Oniguruma tries a variable-length lookbehind from every
# earlier start, so the definition cost about 20 ms per corpus row (tokenizing was most of
# `replica data prepare` on a spelled base). Here a letter is either the one right after a word's
# capital (`\K` keeps the capital out of the match) or the one right where the previous match
# ended (`\G`, after a lowercase letter): equal cuts are tested on the demo's data.
SPELLED_LETTER = r"(?:\b[A-Z]\K|(?<=[a-z])\G)[a-z]"
# `isolate_spaces`: off, before every word, or before lowercase words only.
Spaces = bool | Literal["lowercase"]
ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(0, ge=0, description="0 = random initialization only.")
    learning_rate: float = Field(3e-3, gt=0)
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(512, gt=0)
    save_steps: int = Field(
        100,
        gt=0,
        description="Checkpoint every this many steps (in <cache_dir>/.work-<name>-<hash>/); an "
        "interrupted build resumes from the last checkpoint. Not part of the build key.",
    )
    group_by_length: bool = Field(
        False,
        description="Batch rows of similar length together, so short rows (no tool schemas, copy "
        "drills) are not padded to the longest row of a random batch.",
    )
    loss: Literal["assistant", "all"] = Field(
        "assistant",
        description="Which tokens train the base: the assistant turns only, or every token (then the "
        "tool results, which repeat the ids of their calls, also teach copying).",
    )
    copy_weight: float = Field(
        1.0,
        ge=1.0,
        description="Loss weight of each token of a value the conversation already gave (ids, street "
        "names, statuses, amounts: replica/copy_values.py) against 1 for every other token: the few "
        "tokens only the context predicts, so copying is taught on purpose (replica/bases/copy_loss.py).",
    )
    copy_kinds: list[str] = Field(
        list(DEFAULT_COPY_KINDS),
        min_length=1,
        description="The kinds of value `copy_weight` weights: any of replica/copy_values.py's "
        "VALUE_PATTERNS (ids, house numbers, street names, a street's suffix, statuses, amounts).",
    )

    @field_validator("copy_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        # The patterns are the one list of kinds: a kind added there is weightable here too.
        unknown = [kind for kind in kinds if kind not in VALUE_PATTERNS]
        if unknown:
            raise ValueError(f"unknown kind(s) {unknown}: expected some of {sorted(VALUE_PATTERNS)}")
        return kinds


class BaseBuildConfig(BaseModel):
    """configs/demo_base.yaml: how to build the tiny base (its hash keys the cache)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["base_build"] = "base_build"
    name: str = Field("tiny-qwen2", pattern=r"^[a-z0-9_.-]{1,64}$")
    corpus: list[str] = Field(
        description="JSONL files of contributor-neutral conversations ({messages, tools})."
    )
    architecture: Literal["llama", "qwen2"] = Field(
        "llama",
        description="Model architecture. llama by default: transformers loads a qwen2 checkpoint's "
        "tokenizer as Qwen2Tokenizer, which replaces this tokenizer's own pre-tokenizer, while a "
        "llama checkpoint's tokenizer loads exactly as trained.",
    )
    vocab_size: int = Field(1024, ge=300)
    hidden_size: int = Field(64, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    max_position_embeddings: int = Field(2048, gt=0)
    tie_word_embeddings: bool = Field(
        True,
        description="Share the input and output embeddings. Untied, a value word that was rarely "
        "predictable in training keeps an input embedding of its own instead of collapsing toward "
        "its kind's average (measured: tied street names at cosine 0.93), so it can still be copied.",
    )
    spell_capitalized: bool = Field(
        False,
        description="Tokenize capitalized words (street names, proper names) letter by letter, as digits "
        "are: a value the model must copy is then spelled from a few frequent tokens whose embeddings "
        "stay apart, like the digits it already copies, instead of one rare word token (issue 12).",
    )
    isolate_spaces: Spaces = Field(
        False,
        description="Make the space before a word a token of its own, so a word is the same token in "
        'prose (` delayed`) and inside a JSON string (`"delayed"`): an order status read from a tool '
        "result is then copied into a reply as ids are, not translated (issue 12). About 15% more "
        'tokens per conversation. "lowercase": only before lowercase words; a capitalized word keeps '
        "its space, so a spelled street's first letter (`ĠB`) follows the house number directly.",
    )
    fixed_digit_embeddings: bool = Field(
        False,
        description="Hold the input embeddings of the digits 0-9 at orthogonal vectors and never train "
        "them (replica/bases/fixed_digits.py): in spelled builds the trained digits collapsed together "
        "and no id was copied; held apart, a copying head can form. With init_from, the continued "
        "base's digit rows are replaced.",
    )
    init_from: str | None = Field(
        None,
        description="A built base folder to continue from (relative to this file) instead of a random "
        "model: its weights and its vocabulary are kept, the pre-tokenizer follows spell_capitalized "
        "and isolate_spaces, and `pretrain` trains on from there. A tokenizer change then costs no "
        "relearning of what the base already does (copying digits); the size keys must match it.",
    )
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    seed: int = 0
    cache_dir: str = Field(".cache/bases", description="Built bases go to <cache_dir>/<name>-<hash>/.")
    prebuilt: str | None = Field(
        None,
        description="Directory of a committed build of this very config (see scripts/build_demo_base.py): "
        "used instead of training when its manifest's key matches; relative to the config file.",
    )


def load_build_config(path: str | Path) -> BaseBuildConfig:
    """Read and validate a base-build YAML; corpus paths are relative to the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: base-build config not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw["corpus"] = [str(_relative_to(path, item)) for item in raw.get("corpus") or []]
    for key in ("prebuilt", "init_from"):
        if raw.get(key):
            raw[key] = str(_relative_to(path, raw[key]))
    try:
        return BaseBuildConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: {key}: {first['msg']}; found {first.get('input')!r}") from None


def _relative_to(config_path: Path, item: str) -> Path:
    candidate = Path(item)
    return candidate if candidate.is_absolute() or candidate.exists() else config_path.parent / item


_LATER_SETTINGS = [
    (None, "tie_word_embeddings", True),
    ("pretrain", "group_by_length", False),
    (None, "spell_capitalized", False),
    (None, "isolate_spaces", False),
    (None, "init_from", None),
    ("pretrain", "copy_weight", 1.0),
    ("pretrain", "copy_kinds", list(DEFAULT_COPY_KINDS)),
    (None, "fixed_digit_embeddings", False),
]


def build_key(config: BaseBuildConfig) -> str:
    """Hash of the build config and the corpus contents: same inputs, same cached base."""
    corpus_hashes = [sha256_file(Path(p)) for p in config.corpus]
    payload = config.model_dump(
        mode="json", exclude={"cache_dir": True, "prebuilt": True, "pretrain": {"save_steps"}}
    )
    payload["corpus"] = corpus_hashes
    if config.init_from:  # the base continued from, by content: a rebuilt one is another start
        payload["init_from"] = _base_content(Path(config.init_from))
    # Settings added later count only when set, so the keys of earlier builds stay valid.
    for section, key, default in _LATER_SETTINGS:
        where = payload[section] if section else payload
        if where[key] == default:
            del where[key]
    return sha256_text(canonical_json(payload))[:12]


def _base_content(base: Path) -> str:
    """sha256 of a base's weights and tokenizer, the two things a continued build starts from."""
    files = sorted(base.glob("*.safetensors")) + [base / "tokenizer.json"]
    if not all(path.is_file() for path in files) or len(files) < 2:
        raise UserError(f"init_from: {base} is not a built base (expected *.safetensors and tokenizer.json)")
    return sha256_text(",".join(sha256_file(path) for path in files))


def built_base_dir(build_path: str | Path) -> Path:
    config = load_build_config(build_path)
    return Path(config.cache_dir) / f"{config.name}-{build_key(config)}"


def ensure_base(build_path: str | Path, rebuild: bool = False) -> Path:
    """Return the built base directory, building it first if missing (or if `rebuild`)."""
    config = load_build_config(build_path)
    target = Path(config.cache_dir) / f"{config.name}-{build_key(config)}"
    if (target / "build.json").exists() and not rebuild:
        log.info("base: reusing %s", target)
        return target
    if config.prebuilt and not rebuild and install_prebuilt(Path(config.prebuilt), target, build_key(config)):
        return target
    log.info("base: building %s", target)
    # Checkpoints live outside the atomic directory, so an interrupted build resumes from them.
    work = target.with_name(f".work-{target.name}")
    with atomic_directory(target) as tmp:
        conversations = read_corpus(config.corpus)
        if config.init_from:
            tokenizer, model = continued_model(config)
        else:
            tokenizer = train_tokenizer(
                conversations, config.vocab_size, config.spell_capitalized, config.isolate_spaces
            )
            model = init_model(config, tokenizer)
        if config.fixed_digit_embeddings:
            fix_digit_embeddings(model, tokenizer, config.seed)
        if config.pretrain.steps:
            model = pretrain(model, tokenizer, conversations, config, work)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(
            tmp / "build.json", {"config": config.model_dump(mode="json"), "built_at": utc_now()}
        )
    shutil.rmtree(work, ignore_errors=True)
    return target


PREBUILT_MANIFEST = "manifest.json"


def export_prebuilt(built: Path, out: Path, key: str) -> Path:
    """Copy a built base to `out` (to be committed) with a manifest: build key, config, file sha256s."""
    files = sorted(p.name for p in built.iterdir() if p.is_file())
    with atomic_directory(out) as tmp:
        for name in files:
            shutil.copy2(built / name, tmp / name)
        manifest = {"key": key, "files": {name: sha256_file(tmp / name) for name in files}}
        manifest |= {"build": read_json(built / "build.json"), "exported_at": utc_now()}
        atomic_write_json(tmp / PREBUILT_MANIFEST, manifest)
    return out


def install_prebuilt(prebuilt: Path, target: Path, key: str) -> bool:
    """Install a committed build into the cache if it was built from this config; False otherwise.

    Every file is checked against the manifest's sha256, so a damaged or edited copy never loads.
    """
    manifest_path = prebuilt / PREBUILT_MANIFEST
    if not manifest_path.is_file():
        log.info("base: no prebuilt base at %s", prebuilt)
        return False
    manifest = read_json(manifest_path)
    if manifest.get("key") != key:
        log.info(
            "base: prebuilt %s is of another config (key %s, need %s)", prebuilt, manifest.get("key"), key
        )
        return False
    with atomic_directory(target) as tmp:
        for name, digest in manifest["files"].items():
            shutil.copy2(prebuilt / name, tmp / name)
            if sha256_file(tmp / name) != digest:
                raise UserError(
                    f"{prebuilt / name}: sha256 differs from {manifest_path}; rebuild with --rebuild-base"
                )
    log.info("base: installed prebuilt %s into %s", prebuilt, target)
    return True


def read_corpus(paths: list[str]) -> list[dict]:
    """Conversations ({messages, tools?}) from JSONL files (gzip-compressed when named `*.gz`)."""
    rows = []
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{number}: corpus line is not JSON ({err.msg})") from None
                if "messages" not in row:
                    raise UserError(f"{path}:{number}: corpus row needs a 'messages' list")
                rows.append({"messages": row["messages"], "tools": row.get("tools")})
    if not rows:
        raise UserError(f"base corpus {paths} holds no conversations")
    return rows


def _corpus_text(conversations: list[dict]):
    """Each conversation as the chat template renders it, so the vocabulary also covers the
    template's own words (roles, the tool-use preamble) that the model reads in every prompt."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    renderer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    renderer.chat_template = qwen2_5_chat_template
    for row in conversations:
        yield renderer.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=False)


def train_tokenizer(
    conversations: list[dict],
    vocab_size: int,
    spell_capitalized: bool = False,
    isolate_spaces: Spaces = False,
):
    """Byte-level BPE trained locally; digits stay one per token, as in Qwen and Llama (and the
    letters of capitalized words too, with `spell_capitalized`; a word's leading space is a token of
    its own with `isolate_spaces`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = copy_pre_tokenizer(spell_capitalized, isolate_spaces)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus_text(conversations), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.add_tokens(ADDED_TOKENS)
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def copy_pre_tokenizer(spell_capitalized: bool, isolate_spaces: Spaces):
    """How text is cut before BPE, designed for copying: digits are one token each, an id prefix
    (`O-` of `O-482`) is its own token, and words are split from punctuation, so an id, amount or
    street name is the same tokens in the user's message, a tool result and a tool call's JSON."""
    from tokenizers import Regex, pre_tokenizers

    spelling = [pre_tokenizers.Split(Regex(SPELLED_LETTER), behavior="isolated")] if spell_capitalized else []
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            *spelling,
            pre_tokenizers.Split(Regex(_pieces(isolate_spaces)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _pieces(isolate_spaces: Spaces) -> str:
    if isolate_spaces == "lowercase":
        return LOWERCASE_APART_PIECES
    return SPACE_APART_PIECES if isolate_spaces else COPY_FRIENDLY_PIECES


def continued_model(config: BaseBuildConfig):
    """(tokenizer, model) of the base in `init_from`, its text cut by this config's pre-tokenizer.

    The vocabulary and merges stay, so every token id keeps its meaning and embedding; a word
    that is now cut differently is spelled from tokens the base already has (byte-level BPE has
    every byte), and the pretraining that follows teaches the base to read it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(config.init_from)
    if not (source / "config.json").is_file():
        raise UserError(f"init_from: {source} is not a built base (no config.json)")
    # The base's own saved tokenizer (pad token and template included); pretraining needs no
    # response parser, and providers do not import replica.model (ARCHITECTURE.md).
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tokenizer.backend_tokenizer.pre_tokenizer = copy_pre_tokenizer(
        config.spell_capitalized, config.isolate_spaces
    )
    model = AutoModelForCausalLM.from_pretrained(str(source))
    sizes = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
    )
    differ = [
        f"{k}: {getattr(config, k)} here, {getattr(model.config, k)} in {source}"
        for k in sizes
        if getattr(config, k) != getattr(model.config, k)
    ]
    if model.config.model_type != config.architecture:
        differ.append(f"architecture: {config.architecture} here, {model.config.model_type} in {source}")
    if differ:
        raise UserError("init_from: the base to continue from has other sizes (" + "; ".join(differ) + ")")
    return tokenizer, model


def init_model(config: BaseBuildConfig, tokenizer):
    """A randomly initialized causal LM (Llama or Qwen2 architecture) of the configured size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[config.architecture]
    model_config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return model_class(model_config)


def pretrain(model, tokenizer, conversations: list[dict], config: BaseBuildConfig, work_dir: Path):
    """Full-parameter SFT of the fresh model on neutral conversations (TRL's SFTTrainer)."""
    from datasets import Dataset, Features, Json, List
    from trl import SFTConfig, SFTTrainer

    from replica.bases.copy_loss import copy_weighted_trainer
    from replica.templates import training_chat_template

    features = Features({"messages": List(Json()), "tools": Json()})
    dataset = Dataset.from_list(conversations, features=features)
    args = SFTConfig(
        output_dir=str(work_dir),
        max_steps=config.pretrain.steps,
        learning_rate=config.pretrain.learning_rate,
        per_device_train_batch_size=config.pretrain.batch_size,
        max_length=config.pretrain.max_length,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, config.pretrain.steps // 20),
        logging_steps=max(1, config.pretrain.steps // 10),
        save_strategy="steps",
        save_steps=config.pretrain.save_steps,
        save_total_limit=2,
        # Resume restores weights and optimizer; a resumed epoch may see other batches (the sampler
        # draws from the global RNG), which a pretraining run tolerates.
        train_sampling_strategy="group_by_length" if config.pretrain.group_by_length else "random",
        report_to="none",
        seed=config.seed,
        assistant_only_loss=config.pretrain.loss == "assistant",
        chat_template_path=None,
        use_cpu=not _cuda(),
        bf16=_cuda(),  # mixed precision on a GPU (fp32 master weights); fp32 on CPU
        dataloader_num_workers=0,
    )
    tokenizer.chat_template = training_chat_template(tokenizer)
    parts = {"model": model, "args": args, "train_dataset": dataset, "processing_class": tokenizer}
    if config.pretrain.copy_weight != 1.0:
        trainer = copy_weighted_trainer(config.pretrain.copy_weight, config.pretrain.copy_kinds, **parts)
    else:
        trainer = SFTTrainer(**parts)
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if checkpoints:
        log.info("base: resuming from %s", checkpoints[-1])
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer.chat_template = qwen2_5_chat_template  # ship the model's own template, not the training one
    return trainer.model


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- provider


def claims(config: ModelConfig) -> bool:
    """`model.build: <base-build YAML>` names the tiny base."""
    return bool(config.build)


def provide(config: ModelConfig) -> str:
    """The built base's absolute directory, built (or installed from its committed copy) first if missing."""
    return str(ensure_base(config.build).resolve())
