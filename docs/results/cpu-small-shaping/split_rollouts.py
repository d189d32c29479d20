"""The low-sample split of a rollout file: every 10th episode to LOW (the PRMs' data), the other nine in ten to REST
(V_ref's data). usage: python split_rollouts.py TRAJECTORIES LOW REST"""
import sys
from pathlib import Path

lines = Path(sys.argv[1]).read_text().splitlines()
Path(sys.argv[2]).write_text("\n".join(lines[::10]) + "\n")
Path(sys.argv[3]).write_text("\n".join(line for i, line in enumerate(lines) if i % 10) + "\n")
