"""Small shared pieces of the CLI: consoles, tables, summary files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentprm.atomic import write_json

console = Console()
console_err = Console(stderr=True)

BackendOpt = Annotated[str, typer.Option(
    "--backend", help="what runs env workers: process (this machine) or ray (Ray actors, anywhere in a Ray cluster)")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", envvar="RAY_ADDRESS", show_envvar=True,
    help="Ray cluster to place env workers on (--backend ray; default: a local Ray instance)")]


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    write_json(path, summary)
    return path


def main_process() -> bool:
    """False in the other processes of a data-parallel launch (`torchrun`/`accelerate launch` set
    RANK), so that a training command prints its summary once."""
    return os.environ.get("RANK", "0") == "0"


def parse_int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        from agentprm.errors import ConfigError

        raise ConfigError(f"expected a comma-separated list of integers, got {text!r}") from e


def history_arg(history: int) -> int | None:
    """A `--history` option's value as a history window: -1 means the whole history (None)."""
    return None if history < 0 else history


def parse_set_value(raw: str) -> Any:
    """The value of a `--set KEY=VALUE` as YAML (numbers, lists, null), except that a `#` stays text:
    YAML would read ` #...` as a comment and silently drop the rest of the value."""
    import yaml

    if "#" in raw:
        return raw.strip()
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw.strip()


def _nearest(key: str, valid: list[str]) -> str:
    """The valid keys closest to a mistyped one, as "a or b" ("" when none is close)."""
    import difflib

    return " or ".join(difflib.get_close_matches(key, valid, n=3, cutoff=0.5))


def validation_line(err: dict[str, Any], valid_keys: list[str] | None = None) -> str:
    """One pydantic error as `field = value: what is wrong` (plus the nearest valid keys for an
    unknown one), so a user sees the field, the value and the allowed range in one line."""

    where = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        hint = f"; did you mean {nearest}?" if (nearest := _nearest(where, valid_keys or [])) else ""
        return f"unknown key {where!r}{hint}"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) or len(repr(value)) < 60 else type(value).__name__
    return f"{where} = {shown}: {err['msg']}"


def build_config(cls: type, values: dict[str, Any], overrides: list[str] | None = None, drop_none: bool = True) -> Any:
    """A config dataclass from explicit CLI values plus `--set field=value` overrides, validated by
    pydantic so a bad value gives one line naming the field, the value and the allowed range (the CLI
    mirrors the Python API: every field of the dataclass is reachable from the command line).
    `drop_none`: a None value means "not given" (CLI options); the run loop passes False, since its
    None values are settings (e.g. the whole history)."""
    import dataclasses

    from pydantic import TypeAdapter, ValidationError

    from agentprm.errors import ConfigError

    fields = sorted(f.name for f in dataclasses.fields(cls))
    merged = {k: v for k, v in values.items() if v is not None or not drop_none}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            hint = f"did you mean {nearest}? " if sep and (nearest := _nearest(key, fields)) else ""
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE; {hint}fields: {', '.join(fields)}")
        merged[key] = parse_set_value(raw)
    unknown = sorted(set(merged) - set(fields))
    if unknown:  # a dataclass would silently ignore them (a typo in a run config's `extra` section)
        nearest = _nearest(unknown[0], fields)
        hint = f"; did you mean {nearest}?" if nearest else f"; fields: {', '.join(fields)}"
        raise ConfigError(f"{cls.__name__}: unknown field {unknown[0]!r}{hint}")
    try:
        return TypeAdapter(cls).validate_python(merged)
    except ValidationError as e:
        raise ConfigError(f"{cls.__name__}: {validation_line(e.errors()[0], fields)}") from e
