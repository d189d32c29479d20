"""Bad inputs through the real `agentprm` command: each must exit with code 2 and one line on stderr,
no traceback, and leave what already existed untouched. Prints one row per case and the counts.

    python scripts/bad_inputs.py            # needs the games (ALFWORLD_DATA) and the package installed

Not a test (it takes minutes: every case starts the CLI); tests/ covers each behaviour on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "smoke-tiny.yaml")


def digest(folder: Path) -> dict[Path, str]:
    """Every file under `folder` with the hash of its bytes."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def cases(tmp: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    latin1 = tmp / "latin1.yaml"
    latin1.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    listed = tmp / "list.yaml"
    listed.write_text("- 1\n")
    broken = tmp / "broken.yaml"
    broken.write_text("sft: [unclosed\n")
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "t.jsonl").write_text('{"format": "agentprm.trajectory", "episode_id": \n')
    bad_prm = tmp / "prm"
    (bad_prm / "backbone").mkdir(parents=True)
    (bad_prm / "prm.json").write_text(json.dumps({"format": "agentprm.prm", "version": 1}))
    (bad_prm / "head.safetensors").write_bytes(b"\x00" * 10)
    run = ["train", "--config", CONFIG, "--set", f"run_dir={tmp / 'run'}"]
    return [
        ("gamma out of range", [*run, "--set", "targets.gamma=2"], {}),
        ("batch size 0", [*run, "--set", "prm.batch_size=0"], {}),
        ("negative batch size", [*run, "--set", "sft.batch_size=-1"], {}),
        ("negative workers", [*run, "--set", "data.workers=-1"], {}),
        ("bad value in an extra section", [*run, "--set", "prm.extra={batch_size: 0}"], {}),
        ("unknown key", [*run, "--set", "sft.lrr=1"], {}),
        ("--set into a value", [*run, "--set", "sft.lr.x=1"], {}),
        ("--set without =", [*run, "--set", "sft.lr"], {}),
        ("unknown mode", [*run, "--set", "acting.mode=beam"], {}),
        ("unknown task type", [*run, "--set", "data.task_types=[pick]"], {}),
        ("config missing", ["train", "--config", str(tmp / "nope.yaml")], {}),
        ("config not UTF-8", ["train", "--config", str(latin1)], {}),
        ("config a list", ["train", "--config", str(listed)], {}),
        ("config not YAML", ["train", "--config", str(broken)], {}),
        ("no --config", ["train"], {}),
        ("run_dir is a file", ["train", "--config", CONFIG, "--set", f"run_dir={a_file}"], {}),
        ("run_dir under a file", ["train", "--config", CONFIG, "--set", f"run_dir={a_file}/run"], {}),
        ("--out is a file", ["expert", "--games", "1", "--out", str(a_file)], {}),
        ("unknown split", ["expert", "--split", "test", "--out", str(tmp / "e")], {}),
        ("unknown task type (expert)", ["expert", "--task-type", "pick_and_fly", "--out", str(tmp / "e")], {}),
        ("unknown expert", ["expert", "--expert", "oracle", "--out", str(tmp / "e")], {}),
        ("data missing", ["data", "check"], {"ALFWORLD_DATA": str(tmp / "none")}),
        ("rollouts missing", ["targets", "--rollouts", str(tmp / "none"), "--out", str(tmp / "t")], {}),
        ("corrupt trajectory", ["targets", "--rollouts", str(corrupt), "--out", str(tmp / "t")], {}),
        ("targets gamma 0", ["targets", "--rollouts", str(corrupt), "--gamma", "0", "--out", str(tmp / "t")], {}),
        ("mistyped model folder", ["eval", "--policy", "pi0/model", "--games", "1", "--out", str(tmp / "v")], {}),
        ("hub id not cached", ["eval", "--policy", "HuggingFaceTB/SmolLM2-1.7B", "--games", "1",
                               "--out", str(tmp / "v")], {}),
        ("corrupt PRM", ["eval", "--policy", "tiny", "--prm", str(bad_prm), "--best-of", "2", "--games", "1",
                         "--out", str(tmp / "v")], {}),
        ("targets folder missing", ["train-prm", "--data", str(tmp / "none"), "--model", "tiny",
                                    "--out", str(tmp / "p")], {}),
        ("unknown --set field", ["train-prm", "--data", str(tmp), "--set", "batchsize=4"], {}),
        ("demos missing", ["sft", "--demos", str(tmp / "none"), "--model", "tiny", "--out", str(tmp / "s")], {}),
        ("sft lr 0", ["sft", "--demos", str(corrupt), "--model", "tiny", "--lr", "0", "--out", str(tmp / "s")], {}),
        ("PRM folder missing", ["train-policy", "--policy", "tiny", "--prm", str(tmp / "none"),
                                "--states", str(corrupt), "--out", str(tmp / "d")], {}),
        ("corpus missing", ["build-model", "--corpus", str(tmp / "none"), "--out", str(tmp / "b")], {}),
        ("unknown size", ["build-model", "--corpus", str(corrupt), "--size", "huge", "--out", str(tmp / "b")], {}),
        ("bad worker list", ["bench", "env", "--workers", "1,x"], {}),
    ]


def main() -> int:
    counts = {"cases": 0, "exit 2 + one line": 0, "traceback": 0, "other exit": 0, "changed existing": 0}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, args, env in cases(tmp):
            before = digest(tmp)
            t0 = time.perf_counter()
            r = subprocess.run(["agentprm", *args], capture_output=True, text=True, timeout=600,
                               env={**os.environ, **env})
            secs = time.perf_counter() - t0
            lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
            after = digest(tmp)
            changed = any(after.get(p) != h for p, h in before.items())  # an existing file altered or gone
            counts["cases"] += 1
            ok = r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
            counts["exit 2 + one line"] += ok
            counts["traceback"] += "Traceback" in r.stderr
            counts["other exit"] += r.returncode != 2
            counts["changed existing"] += changed
            shown = lines[-1] if lines else r.stdout.strip().splitlines()[-1:] or ["(no output)"]
            print(f"{'ok  ' if ok else 'FAIL'} {secs:5.1f}s rc={r.returncode} {name}: {str(shown)[:150]}")
    print(json.dumps(counts))
    return 0 if counts["exit 2 + one line"] == counts["cases"] and not counts["changed existing"] else 1


if __name__ == "__main__":
    sys.exit(main())
