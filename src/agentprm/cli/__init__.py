"""The `agentprm` command line; each command mirrors a Python entry point (see README)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from agentprm.cli import bench, data, episodes, play, train
from agentprm.cli.common import console_err
from agentprm.errors import AgentPRMError

app = typer.Typer(
    help="Train LLM agents with process reward models (AgentPRM) on ALFWorld.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # help renders as written: "[…]" in a docstring is text (rich markup ate it)
)
app.add_typer(data.app, name="data")
app.add_typer(bench.app, name="bench")
app.command("expert")(episodes.expert)
app.command("play")(play.play)
app.command("rollout")(episodes.rollout)
app.command("eval")(episodes.evaluate)
app.command("build-model")(train.build_model)
app.command("sft")(train.sft)
app.command("targets")(train.targets)
app.command("train-prm")(train.train_prm)
app.command("train-inverse-prm")(train.train_inverse_prm)
app.command("eval-prm")(train.eval_prm)
app.command("train-policy")(train.train_policy)
app.command("train")(train.train)


def _line(message: str, tag: str = "") -> None:
    """One plain line on stderr (the message escaped, so "[...]" in a path is text, not rich markup)."""
    from rich.markup import escape

    console_err.print(f"{tag}{escape(message)}", highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    _line(message, "[red]error:[/red] ")
    sys.exit(2)


WARNING_TAG = "[yellow]warning:[/yellow] "


def _plain_warnings() -> None:
    """Our own warnings (a skipped game, a cut-off record) as one plain line, not Python's two-line
    "file:line: UserWarning" with a source line; warnings from libraries keep the default format."""
    import warnings

    default = warnings.showwarning
    package = str(Path(__file__).resolve().parents[1])

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if str(Path(filename).resolve()).startswith(package):
            _line(str(message), WARNING_TAG)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _plain_logging() -> None:
    """The package's log lines (a trainer's per-epoch metrics, "resuming from ...") on stderr as one plain
    line each: without a handler Python drops INFO, so a PRM's validation figures were only in its files."""
    import logging

    class Line(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _line(record.getMessage(), "" if record.levelno < logging.WARNING else WARNING_TAG)

    package = logging.getLogger("agentprm")
    if not any(h.get_name() == "agentprm-cli" for h in package.handlers):  # main() may run twice in one process
        handler = Line()
        handler.set_name("agentprm-cli")
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def main() -> None:
    """Entry point: known errors become one line on stderr and exit code 2."""
    # the Hub/transformers bars ("Loading weights", "Writing model shards" at every checkpoint) would
    # interleave with our own stage bars; set before transformers is imported, inherited by workers
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _plain_warnings()
    _plain_logging()
    try:
        app()
    except AgentPRMError as e:
        _fail(str(e))
    except (PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        # A path the user gave (or a folder under it) cannot be written or is the wrong kind of
        # thing: the user can fix that, so one line, not a traceback. Other OSErrors stay bugs.
        what = {PermissionError: "permission denied", FileExistsError: "exists and is not a folder",
                NotADirectoryError: "a file is in the way of a folder", IsADirectoryError: "is a folder"}
        why = next(text for kind, text in what.items() if isinstance(e, kind))
        _fail(f"{e.filename}: {why}" + (f" (while writing {e.filename2})" if e.filename2 else ""))
    except KeyboardInterrupt:
        console_err.print("interrupted; finished work is saved, rerun the same command to resume")
        sys.exit(130)
