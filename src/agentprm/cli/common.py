"""Small shared pieces of the CLI: consoles, tables, summary files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from agentprm.atomic import write_json

console = Console()
console_err = Console(stderr=True)


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    write_json(path, summary)
    return path


def parse_int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        from agentprm.errors import ConfigError

        raise ConfigError(f"expected a comma-separated list of integers, got {text!r}") from e


def history_arg(history: int) -> int | None:
    """A `--history` option's value as a history window: -1 means the whole history (None)."""
    return None if history < 0 else history


def build_config(cls: type, values: dict[str, Any], overrides: list[str] | None = None, drop_none: bool = True) -> Any:
    """A config dataclass from explicit CLI values plus `--set field=value` overrides, validated by
    pydantic so a bad value gives one line naming the field (the CLI mirrors the Python API: every
    field of the dataclass is reachable from the command line). `drop_none`: a None value means "not
    given" (CLI options); the run loop passes False, since its None values are settings (e.g. the
    whole history)."""
    import dataclasses

    import yaml
    from pydantic import TypeAdapter, ValidationError

    from agentprm.errors import ConfigError

    fields = {f.name for f in dataclasses.fields(cls)}
    merged = {k: v for k, v in values.items() if v is not None or not drop_none}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        merged[key] = yaml.safe_load(raw)
    try:
        return TypeAdapter(cls).validate_python(merged)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{cls.__name__}.{where}: {err['msg']}") from e
