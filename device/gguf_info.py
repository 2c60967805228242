"""What a GGUF file's header says about memory, read without loading the model (no llama.cpp).

Used by ``doctor`` to size the KV cache before the agent allocates it: llama.cpp keeps keys and values
in f16 for every layer and every one of the ``n_ctx`` cells, so one token costs
``n_layer × n_head_kv × (key_length + value_length) × 2`` bytes (SmolLM2-135M: 30 × 3 × 128 × 2 =
23,040 bytes; 45 MiB at ``n_ctx`` 2048, as llama.cpp itself reports).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

__all__ = ["GgufError", "kv_bytes_per_token", "read_metadata"]

_MAGIC: Final = b"GGUF"
#: GGUF value type → struct format of one scalar (8 = string, 9 = array are handled apart).
_SCALARS: Final = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING: Final = 8
_ARRAY: Final = 9
#: Bytes per K or V element in llama.cpp's default (f16) KV cache.
_KV_ELEMENT_BYTES: Final = 2

Value = int | float | bool | str | list[int | float | bool]


class GgufError(ValueError):
    """The file is not a GGUF file this reader understands, or lacks a key it needs."""


def read_metadata(path: Path, wanted: Callable[[str], bool] = lambda _key: True) -> dict[str, Value]:
    """The header's key/value pairs for which ``wanted(key)`` is true (string arrays are skipped)."""
    with path.open("rb") as f:
        if f.read(4) != _MAGIC:
            raise GgufError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = _unpack(f, "<IQQ")
        if version < 2:
            raise GgufError(f"{path}: GGUF version {version} is too old")
        found: dict[str, Value] = {}
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = _unpack(f, "<I")
            value = _value(f, kind, keep=wanted(key))
            if value is not None:
                found[key] = value
        return found


def kv_bytes_per_token(path: Path) -> int:
    """Bytes of f16 keys and values one context cell takes for this model."""
    meta = read_metadata(path, lambda key: not key.startswith("tokenizer."))
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufError(f"{path}: no general.architecture")
    n_layer = _int(meta, f"{arch}.block_count", path)
    n_head = _int(meta, f"{arch}.attention.head_count", path)
    n_embd = _int(meta, f"{arch}.embedding_length", path)
    head_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    key_length = meta.get(f"{arch}.attention.key_length", n_embd // n_head)
    value_length = meta.get(f"{arch}.attention.value_length", n_embd // n_head)
    if not isinstance(key_length, int) or not isinstance(value_length, int):
        raise GgufError(f"{path}: unexpected attention key/value lengths")
    per_layer = head_kv if isinstance(head_kv, list) else [head_kv] * n_layer  # some models vary per layer
    heads = sum(int(h) for h in per_layer)
    return heads * (key_length + value_length) * _KV_ELEMENT_BYTES


def _int(meta: dict[str, Value], key: str, path: Path) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or value <= 0:
        raise GgufError(f"{path}: no {key}")
    return value


def _unpack(f: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GgufError("truncated GGUF header")
    return struct.unpack(fmt, data)


def _string(f: BinaryIO) -> str:
    (length,) = _unpack(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise GgufError("truncated GGUF header")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int, *, keep: bool) -> Value | None:
    if kind in _SCALARS:
        (value,) = _unpack(f, "<" + _SCALARS[kind])
        return value if keep else None
    if kind == _STRING:
        text = _string(f)
        return text if keep else None
    if kind == _ARRAY:
        item, count = _unpack(f, "<IQ")
        if item in _SCALARS:
            size = struct.calcsize(_SCALARS[item])
            if not keep:
                f.seek(size * count, 1)
                return None
            return list(_unpack(f, f"<{count}{_SCALARS[item]}"))
        for _ in range(count):
            _value(f, item, keep=False)
        return None
    raise GgufError(f"unknown GGUF value type {kind}")
