"""Device and dtype choice."""

import pytest
import torch

from replica.config import ModelConfig
from replica.errors import UserError
from replica.model import resolve_device


def test_auto_on_cpu_is_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choice = resolve_device(ModelConfig(name_or_path="x/y"))
    assert (choice.device, choice.dtype) == ("cpu", torch.float32)


def test_auto_with_cuda_prefers_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_device(ModelConfig(name_or_path="x/y")).dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_device(ModelConfig(name_or_path="x/y")).dtype == torch.float16


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device(ModelConfig(name_or_path="x/y", device="cuda"))


def test_base_path_is_absolute_so_adapters_load_from_any_directory(tmp_path, tiny_base_dir, monkeypatch):
    from replica.bases import provide_base
    from replica.config import ModelConfig

    monkeypatch.chdir(tiny_base_dir.parent)
    relative = ModelConfig(name_or_path=tiny_base_dir.name)
    assert provide_base(relative) == str(tiny_base_dir.resolve())
