"""Reading a checkpoint tensor by tensor, without building the model.

A safetensors file is an 8-byte header length, a JSON header (name -> dtype, shape, byte range)
and the raw bytes. We parse the header ourselves and read byte ranges with plain `readinto` calls
(no mmap), so a block of a tensor is in memory only while we work on it and the process's resident
memory says what we really hold. That is what bounds `hala quantize` and `hala merge` by a chunk,
not the checkpoint. `TensorRef.readinto` fills a buffer the caller owns (and reuses), for loops
over many chunks; `read_bytes`, `read_rows` and `read` allocate their result.

Pickle checkpoints (`.bin`, `.pt`) can run code when they are loaded, so they are refused unless
the caller allows them; then each file is opened with `torch.load(weights_only=True, mmap=True)`,
which holds at most that one shard.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
MAX_HEADER_BYTES = 100 << 20

# safetensors dtype names (the strings in the header) and their torch dtypes
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint hala won't read, with what was wrong and what to do."""


class PickleRefusedError(CheckpointError):
    """A pickle checkpoint without `allow_pickle`."""


def itemsize(dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype]).element_size()


@dataclass
class TensorRef:
    """One tensor of a checkpoint: where it is and how to read blocks of it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int = 0  # byte offset of its data in `file` (safetensors)
    tensor: torch.Tensor | None = field(default=None, repr=False)  # pickle shards: the (mmapped) tensor

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * itemsize(self.dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def readinto(self, begin: int, out: torch.Tensor) -> None:
        """This tensor's data from byte `begin` on, into `out` (a contiguous tensor of any dtype).

        Into the caller's buffer, not a new one per call: a new 32 MB buffer per chunk lets glibc's
        heap grow in ways the resident set shows (we saw 5 GB on a 1B merge), a reused one does not."""
        raw = out.view(torch.uint8).reshape(-1)
        if self.tensor is not None:
            flat = self.tensor.contiguous().reshape(-1).view(torch.uint8)
            raw.copy_(flat[begin : begin + raw.numel()])
            return
        view = memoryview(raw.numpy())
        with open(self.file, "rb", buffering=0) as handle:
            handle.seek(self.start + begin)
            done = 0
            while done < len(view):
                got = handle.readinto(view[done:])
                if not got:
                    raise CheckpointError(f"{self.file}: truncated while reading {self.name}")
                done += got

    def read_bytes(self, begin: int, end: int) -> torch.Tensor:
        """Bytes [begin, end) of this tensor's data, as a new uint8 tensor."""
        buf = torch.empty(end - begin, dtype=torch.uint8)
        self.readinto(begin, buf)
        return buf

    def read_rows(self, first: int, stop: int) -> torch.Tensor:
        """Rows [first, stop) of a tensor of 1 or more dims, in its own dtype."""
        row_bytes = self.nbytes // self.shape[0]
        raw = self.read_bytes(first * row_bytes, stop * row_bytes)
        return raw.view(self.torch_dtype).reshape(stop - first, *self.shape[1:])

    def read(self) -> torch.Tensor:
        """The whole tensor, in its own dtype and shape."""
        return self.read_bytes(0, self.nbytes).view(self.torch_dtype).reshape(self.shape)


def read_safetensors_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(tensor name -> {dtype, shape, data_offsets}, metadata) of a safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise CheckpointError(f"{path}: not a safetensors file (header length {length} for a {size}-byte file)")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + length
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has dtype {info['dtype']}, which hala does not handle")
        if data_start + end > size or end - begin != math.prod(info["shape"]) * itemsize(info["dtype"]):
            raise CheckpointError(
                f"{path}: tensor {name} has a byte range that does not match its shape (truncated file?)"
            )
        info["start"] = data_start + begin
    return header, metadata


def resolve_model(ref: str, allow_pickle: bool = False) -> Path:
    """A local folder as is; a hub id (`org/name`) through the Hugging Face cache (downloading what a
    quantization reads: weights, configs, tokenizer and chat template; offline, the cache only)."""
    path = Path(ref)
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    patterns = ["*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "tokenizer*"]
    if allow_pickle:
        patterns += [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
    return Path(snapshot_download(repo_id=ref, allow_patterns=patterns))


def weight_files(folder: str | Path, allow_pickle: bool = False) -> list[Path]:
    """The checkpoint's weight files, safetensors preferred; pickle ones only when allowed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    found = _indexed(folder, SAFETENSORS_INDEX) or sorted(folder.glob("*.safetensors"))
    if found:
        return found
    pickles = _indexed(folder, PICKLE_INDEX) or sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        names = ", ".join(p.name for p in pickles[:3])
        raise PickleRefusedError(
            f"{folder} holds pickle weights ({names}), which can run code when loaded. Convert them to "
            "safetensors, or pass --allow-pickle (allow_pickle=true) if you trust where they came from."
        )
    if not pickles:
        raise FileNotFoundError(f"{folder}: no weights found (*.safetensors, or *.bin with --allow-pickle)")
    return pickles


def _indexed(folder: Path, index_name: str) -> list[Path]:
    index = folder / index_name
    if not index.exists():
        return []
    weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    files = [folder / name for name in dict.fromkeys(sorted(weight_map.values()))]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise CheckpointError(f"{index}: lists shards that are missing: {', '.join(missing)}")
    return files


def tensor_refs(files: list[Path]) -> list[TensorRef]:
    """Every tensor of the checkpoint, file by file, in on-disk order (so reads are sequential)."""
    refs: list[TensorRef] = []
    seen: dict[str, Path] = {}
    for path in files:
        refs_of_file = _pickle_refs(path) if path.suffix in PICKLE_SUFFIXES else _safetensors_refs(path)
        for ref in refs_of_file:
            if ref.name in seen:
                raise CheckpointError(f"tensor {ref.name} is in both {seen[ref.name].name} and {path.name}")
            seen[ref.name] = path
            refs.append(ref)
    return refs


def _safetensors_refs(path: Path) -> list[TensorRef]:
    header, _ = read_safetensors_header(path)
    refs = [TensorRef(name, info["dtype"], tuple(info["shape"]), path, info["start"]) for name, info in header.items()]
    return sorted(refs, key=lambda r: r.start)


def _pickle_refs(path: Path) -> list[TensorRef]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) pickles can't be mmapped: the whole shard is loaded
        state = torch.load(path, map_location="cpu", weights_only=True)
    refs = []
    for name, tensor in state.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise CheckpointError(f"{path}: tensor {name} has dtype {tensor.dtype}, which hala does not handle")
        refs.append(TensorRef(name, DTYPE_NAMES[tensor.dtype], tuple(tensor.shape), path, tensor=tensor))
    return refs
