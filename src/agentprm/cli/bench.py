"""`agentprm bench ...`: speed figures (env throughput, generation and training tokens/s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentprm.cli.common import BackendOpt, RayAddressOpt, console, history_arg, parse_int_list, write_summary

app = typer.Typer(help="Benchmarks (speed goals live here, not in timed tests).", no_args_is_help=True)


@app.command("env")
def env(
    workers: Annotated[str, typer.Option("--workers", help="comma-separated worker counts")] = "1,2",
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="episodes in flight per worker count")] = 8,
    rounds: Annotated[int, typer.Option("--rounds", min=2, help="plays of each game: the first resets "
                                        "cold, the others warm")] = 3,
    split: Annotated[str, typer.Option("--split")] = "valid_seen",
    backend: BackendOpt = "process",
    ray_address: RayAddressOpt = None,
    out: Annotated[Path, typer.Option("--out")] = Path("runs/bench-env"),
) -> None:
    """Cold and warm resets/s and steps/s of the env pool (walkthrough replay), and the speed-ups over
    1 worker."""
    from agentprm.bench.env import bench_env

    result = bench_env(parse_int_list(workers), episodes, split, rounds=rounds, backend=backend,
                       ray_address=ray_address)
    table = Table(title=f"{backend} env pool on {split}: {episodes} episodes in flight, each played {rounds}x",
                  caption="(Nx): speed-up over 1 worker (else the first count)")
    for col in ("workers", "cold resets/s", "warm resets/s", "steps/s", "warm/cold", "wall s"):
        table.add_column(col, justify="right")
    speedup = result["speedup"]
    for r in result["results"]:
        n = r["workers"]
        table.add_row(
            str(n), f"{r['cold_resets_per_s']:.2f} ({speedup['cold_resets'][n]:.2f}x)",
            f"{r['warm_resets_per_s']:.1f} ({speedup['warm_resets'][n]:.2f}x)",
            f"{r['steps_per_s']:.1f} ({speedup['steps'][n]:.2f}x)", f"{r['warm_over_cold']:.1f}x", f"{r['wall_s']:.1f}",
        )
    console.print(table)
    if any(r["failures"] or r["restarts"] for r in result["results"]):
        console.print("[yellow]warning: episodes failed or workers were replaced (see summary.json)", highlight=False)
    write_summary(out, result)


CACHES = {"auto": None, "dynamic": False, "static": True}


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


@app.command("generate")
def generate(
    model: Annotated[str, typer.Option("--model", help="tiny, smollm2 or a model folder")] = "tiny",
    batch: Annotated[str, typer.Option("--batch", help="batch sizes; the first is the baseline")] = "1,8",
    new_tokens: Annotated[int, typer.Option("--new-tokens")] = 32,
    device: Annotated[str | None, typer.Option("--device")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="timed repeats (best is kept)")] = 1,
    cache: Annotated[str, typer.Option("--cache", help="KV cache: auto (static on CUDA), dynamic or static")] = "auto",
    sft_batch: Annotated[int, typer.Option("--sft-batch", help="batch of the SFT steps timed after")] = 4,
    sft_steps: Annotated[int, typer.Option("--sft-steps", help="timed SFT steps after one untimed (0: none)")] = 3,
    out: Annotated[Path, typer.Option("--out")] = Path("runs/bench-generate"),
) -> None:
    """Generation tokens/s batched vs one at a time (warm), and SFT training tokens/s, with MFU on a known GPU."""
    from agentprm.bench.generate import bench_generate
    from agentprm.bench.throughput import GENERATE_FLOPS_PER_PARAM, TRAIN_FLOPS_PER_PARAM, mfu, peak_bf16_flops
    from agentprm.errors import ConfigError

    if cache not in CACHES:
        raise ConfigError(f"--cache {cache!r}: choose one of {', '.join(CACHES)}")
    result = bench_generate(model, parse_int_list(batch), new_tokens, device, sft_batch_size=sft_batch,
                            sft_steps=sft_steps, repeats=repeats, static_cache=CACHES[cache])
    gen, peak, params = result["generate"], peak_bf16_flops(result["device_name"]), result["params"]
    table = Table(title=f"generate: {model} on {result['device']} (static cache: {result['static_cache']})")
    for col in ("batch", "tokens/s", "wall s", "speed-up", "MFU"):
        table.add_column(col, justify="right")
    base = gen["results"][0]["tokens_per_s"]
    for r in gen["results"]:
        table.add_row(str(r["batch_size"]), f"{r['tokens_per_s']:.1f}", f"{r['wall_s']:.2f}",
                      f"{r['tokens_per_s'] / base:.2f}x",
                      _percent(mfu(params, r["tokens_per_s"], peak, GENERATE_FLOPS_PER_PARAM)))
    console.print(table)
    sft = result["sft"]
    if sft is not None:
        console.print(f"SFT: batch {sft['batch_size']}, {sft['step_s']:.2f} s/step, {sft['tokens_per_s']:.0f} "
                      f"tokens/s, MFU {_percent(mfu(params, sft['tokens_per_s'], peak, TRAIN_FLOPS_PER_PARAM))}")
    write_summary(out, result)


@app.command("throughput")
def throughput(
    run: Annotated[Path, typer.Argument(help="folder whose stage subfolders hold summary.json files")],
) -> None:
    """Tokens/s and MFU of every stage under RUN (bench generate, SFT, PRM; policy step and eval timings)."""
    from agentprm.atomic import write_json
    from agentprm.bench.throughput import device_name, peak_bf16_flops, stage_rows, with_mfu
    from agentprm.errors import ConfigError

    rows = stage_rows(run)
    if not rows:
        raise ConfigError(f"no stage summaries under {run} (expected {run}/<stage>/summary.json)")
    name = device_name()
    peak = peak_bf16_flops(name)
    rows = with_mfu(rows, peak)
    params = next(r["params"] for r in rows if "params" in r) if any("params" in r for r in rows) else 0
    peak_text = f"peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else "peak bf16 not in our table: MFU n/a"
    console.print(f"{name}, {peak_text}; N = {params / 1e6:.1f} M parameters; MFU = 6·N·tokens/s ÷ peak "
                  "(2·N when generating)", highlight=False)
    table = Table()
    for col, justify in (("stage", "left"), ("tokens/s", "right"), ("MFU", "right"), ("note", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        rate = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else ""
        table.add_row(r["what"], rate, _percent(r["mfu"]) if "kind" in r else "", r.get("note", ""))
    console.print(table)
    write_json(run / "throughput.json", {"device_name": name, "peak_bf16_flops": peak, "rows": rows})


@app.command("bon")
def bon(
    policy: Annotated[str, typer.Option("--policy", help="model spec or folder")],
    prm: Annotated[Path, typer.Option("--prm", help="PRM folder")],
    n: Annotated[str, typer.Option("--n", help="comma-separated N values")] = "1,2,4,8,16",
    split: Annotated[str, typer.Option("--split")] = "valid_seen",
    games: Annotated[int | None, typer.Option("--games", help="balanced sample of N games (default: all)")] = None,
    temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
    max_steps: Annotated[int, typer.Option("--max-steps")] = 30,
    history_window: Annotated[int, typer.Option("--history", help="turns of history (-1: all)")] = 8,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 48,
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    backend: BackendOpt = "process",
    ray_address: RayAddressOpt = None,
    out: Annotated[Path, typer.Option("--out")] = Path("runs/bench-bon"),
) -> None:
    """Test-time scaling: success of Best-of-N for each N, and the curve as a PNG."""
    from agentprm.bench.bon import bench_bon

    result = bench_bon(policy, str(prm), parse_int_list(n), split, games, out, temperature, max_steps,
                       history_arg(history_window), max_new_tokens, workers, backend=backend,
                       ray_address=ray_address)
    table = Table(title=f"Best-of-N on {split} ({result['games']} games)")
    failed = any(p["failed"] for p in result["points"])  # failed episodes are not losses: see evaluation.py
    for col in ("N", "success %", "#actions", *(["failed"] if failed else [])):
        table.add_column(col, justify="right")
    for p in result["points"]:
        table.add_row(str(p["n"]), f"{100 * p['success']:.1f}", f"{p['mean_actions']:.1f}",
                      *([str(p["failed"])] if failed else []))
    console.print(table)
    if failed:
        console.print("[yellow]warning: some episodes failed (the environment could not serve them, even after "
                      "retries); success is over the episodes that finished. Rerun the same command to retry them.",
                      highlight=False)
    console.print(f"curve: {out / 'bon_scaling.png'}")
