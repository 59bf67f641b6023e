"""Fixtures shared by every test folder (keep this small)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

WriteTree = Callable[..., Path]


@pytest.fixture
def write_tree(tmp_path: Path) -> WriteTree:
    """``write_tree({"a/b.txt": "text", "c.bin": b"..."}, root="x")`` writes the files under
    ``tmp_path/root`` (str → UTF-8 with ``\\n`` kept as is, bytes verbatim) and returns that folder."""

    def write(files: dict[str, str | bytes], root: str = "data") -> Path:
        base = tmp_path / root
        base.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_bytes(content.encode("utf-8"))
        return base

    return write
