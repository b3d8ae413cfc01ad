"""The low-level file module: atomic writes and canonical, byte-identical safetensors."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from layerwise.errors import ArtifactError, UnsafeArtifactError
from layerwise.files import load_safetensors, safetensors_bytes, save_safetensors

SCRIPT = """
import sys, torch
from layerwise.files import save_safetensors
g = torch.Generator().manual_seed(0)
t = {n: torch.randn(3, 5, generator=g) for n in ("b", "a", "c.weight")}
t["i"] = torch.arange(4)
save_safetensors(sys.argv[1], t, {"format": "pt", "library": "layerwise", "z": "1", "m": "2"})
"""


def test_weights_written_by_separate_processes_are_byte_identical(tmp_path: Path) -> None:
    # safetensors writes its metadata map in a hash order that differs per process
    digests = set()
    for i in range(4):
        path = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_header_is_canonical_and_readable(tmp_path: Path) -> None:
    t = {"w": torch.ones(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    a = safetensors_bytes(t, {"x": "1", "a": "2"})
    assert a == safetensors_bytes(dict(reversed(t.items())), {"a": "2", "x": "1"})
    (n,) = struct.unpack("<Q", a[:8])
    assert n % 8 == 0
    header = a[8:8 + n].rstrip(b" ")
    assert header == json.dumps(json.loads(header), sort_keys=True,
                                separators=(",", ":")).encode()
    save_safetensors(tmp_path / "w.safetensors", t)
    back = load_safetensors(tmp_path / "w.safetensors")
    assert all(torch.equal(back[k], t[k]) for k in t)


def test_loading_refuses_pickles_and_names_damage(tmp_path: Path) -> None:
    bad = tmp_path / "m.safetensors"
    torch.save({"w": torch.ones(1)}, bad)
    with pytest.raises(UnsafeArtifactError, match="zip"):
        load_safetensors(bad)
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00[1,2,3] ")
    with pytest.raises(ArtifactError, match="not a JSON object"):
        load_safetensors(bad)
    with pytest.raises(ArtifactError, match="no missing.safetensors"):
        load_safetensors(tmp_path / "missing.safetensors")
