"""Base model and tokenizer loading: device/dtype choice, quantization, chat template, tool parsing.

Every stage (train, eval, serve) loads the base through here, so they cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from replica.bases import provide_base
from replica.config import ModelConfig
from replica.errors import UserError
from replica.precision import autocast_losses, cpu_has_bf16, losses_agree
from replica.templates import add_response_parser, read_chat_template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    """Where and in which precision the model runs."""

    device: str  # "cuda" or "cpu"
    dtype: torch.dtype  # of the weights
    autocast: bool = False  # bf16 autocast over fp32 weights (CPU with bf16 instructions)

    @property
    def bf16(self) -> bool:
        """Trainers run bf16: bf16 weights, or bf16 autocast over fp32 weights."""
        return self.dtype == torch.bfloat16 or self.autocast

    @property
    def precision(self) -> str:
        """What replica.json records: `float32`, `bfloat16`, `float16` or `bf16-autocast`."""
        return "bf16-autocast" if self.autocast else str(self.dtype).removeprefix("torch.")

    @property
    def fp16(self) -> bool:
        return self.dtype == torch.float16


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(config: ModelConfig) -> DeviceChoice:
    """`auto`: CUDA when available (bf16 where supported, else fp16), else CPU: fp32 weights, with
    bf16 autocast where the CPU has bf16 instructions (`confirm_precision` then checks the loss).

    Asking for CUDA without one is a UserError; the choice is logged.
    """
    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        raise UserError("model.device: cuda was requested but no CUDA device is available (use auto or cpu)")
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and has_cuda) else "cpu"
    if config.dtype != "auto":
        dtype = _DTYPES[config.dtype]
        if device == "cpu" and dtype == torch.float16:
            raise UserError("model.dtype: float16 is not supported for training on CPU (use float32 or auto)")
    elif device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    choice = DeviceChoice(
        device, dtype, autocast=device == "cpu" and config.dtype == "auto" and cpu_has_bf16()
    )
    log.info("device: %s, precision: %s (model.device=%s)", device, choice.precision, config.device)
    return choice


def confirm_precision(model: PreTrainedModel, choice: DeviceChoice) -> DeviceChoice:
    """Keep bf16 autocast only if the model's loss on a fixed batch agrees with fp32; else fp32."""
    if not choice.autocast:
        return choice
    fp32, bf16 = autocast_losses(model)
    if losses_agree(fp32, bf16):
        log.info("precision: bf16 autocast (fixed-batch loss %.4f, fp32 %.4f)", bf16, fp32)
        return choice
    log.warning("precision: float32; bf16 autocast moved the fixed-batch loss from %.4f to %.4f", fp32, bf16)
    return replace(choice, autocast=False)


def load_tokenizer(
    name_or_path: str, revision: str | None = None, chat_template: str | None = None
) -> PreTrainedTokenizerBase:
    """Load a tokenizer and make it ready for training and tool use (pad token, response parser).

    `chat_template` (the `model.chat_template` key: a TRL family or a .jinja file) replaces the
    model's own template before anything renders with it.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except OSError as err:
        raise UserError(f"model.name_or_path: cannot load tokenizer from {name_or_path!r} ({err})") from None
    if chat_template:
        tokenizer.chat_template = read_chat_template(chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    add_response_parser(tokenizer)
    return tokenizer


def load_base_model(
    config: ModelConfig, choice: DeviceChoice, name_or_path: str | None = None
) -> PreTrainedModel:
    """Load the base causal LM on the chosen device, optionally 4-bit quantized (QLoRA)."""
    path = name_or_path or provide_base(config)
    kwargs: dict = {"dtype": choice.dtype, "revision": config.revision}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.quantization == "4bit":
        kwargs["quantization_config"] = _four_bit_config(choice)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        raise UserError(f"model.name_or_path: cannot load {path!r} ({err})") from None
    return model.to(choice.device) if config.quantization == "none" else model


def _four_bit_config(choice: DeviceChoice):
    """QLoRA needs CUDA and bitsandbytes: fail clearly before any weights load."""
    if choice.device != "cuda":
        raise UserError("model.quantization: 4bit needs a CUDA device; none is in use")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            "model.quantization: 4bit needs the bitsandbytes package (pip install bitsandbytes)"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=choice.dtype,
    )
