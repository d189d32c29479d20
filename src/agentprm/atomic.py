"""Atomic writes: every long stage leaves either the old complete file/folder or the new one, never
half of either, so a kill at any moment loses at most the work in progress."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Text to a temp file beside `path`, then `os.replace` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """JSON, written atomically (`write_text`)."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def replace_dir(tmp: Path, path: Path) -> None:
    """Move a finished folder into place. The old one is renamed aside first and deleted after, so at
    every moment either the old or the new complete folder exists."""
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def temp_dir_for(path: Path) -> Path:
    """A fresh, empty sibling folder to build `path` in before `replace_dir`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def save_model(model: Any, tokenizer: Any, path: Path) -> None:
    """save_pretrained of a model and its tokenizer into `path`, atomically."""
    tmp = temp_dir_for(path)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, path)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as PNG at `path`, atomically, and closed (plots are written in loops)."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
