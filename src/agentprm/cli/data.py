"""`agentprm data check`: is the ALFWorld data where we look, and how many games of each kind."""

from __future__ import annotations

import typer
from rich.table import Table

from agentprm.cli.common import console
from agentprm.envs.games import SPLITS, TASK_TYPES, count_by_task_type, data_root, find_games, split_dir
from agentprm.errors import DataNotFoundError

app = typer.Typer(help="Inspect the ALFWorld game data.", no_args_is_help=True)


@app.command("check")
def check() -> None:
    """Count games per split and task type under $ALFWORLD_DATA (default ~/.cache/alfworld)."""
    root = data_root()
    present = [s for s in SPLITS if split_dir(s, root).is_dir()]
    if not present:
        raise DataNotFoundError(
            f"no ALFWorld games under {root}: unpack the data there (see README: `alfworld-download` or "
            "`tar -xJf train.tar.xz -C ...`) or set ALFWORLD_DATA to the folder holding json_2.1.1/"
        )
    counts = {s: count_by_task_type(find_games(s, root=root)) for s in present}
    table = Table(title=f"ALFWorld games in {root}")
    table.add_column("task type")
    for s in present:
        table.add_column(s, justify="right")
    for t in TASK_TYPES:
        table.add_row(t, *(str(counts[s][t]) for s in present))
    table.add_row("[bold]total", *(f"[bold]{sum(counts[s].values())}" for s in present))
    console.print(table)
    missing = [s for s in SPLITS if s not in present]
    if missing:
        console.print(f"not present: {', '.join(missing)} (fine unless you evaluate on it)")
