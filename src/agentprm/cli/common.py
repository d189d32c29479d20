"""Small shared pieces of the CLI: consoles, tables, summary files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentprm.evaluation import table_rows, write_json_atomic

console = Console()
console_err = Console(stderr=True)


def success_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("task", "success %", "won", "#actions"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in table_rows(summary):
        table.add_row(*row)
    return table


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    write_json_atomic(path, summary)
    return path


def parse_int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        from agentprm.errors import ConfigError

        raise ConfigError(f"expected a comma-separated list of integers, got {text!r}") from e
