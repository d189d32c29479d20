"""Validation metrics of PRMs on one targets file: python auc.py VAL_PARQUET PRM [PRM ...].

The label is the row's unshaped Q̂ > 0 (`q_mc` where present): a shaped PRM is judged on the same label."""
import json
import sys

from agentprm.targets import read_rows
from agentprm.train.prm import PRM, evaluate

rows = read_rows(sys.argv[1])
for path in sys.argv[2:]:
    metrics = evaluate(PRM.load(path, device="cpu"), rows, [], 64)
    print(path, json.dumps({k: v for k, v in metrics.items() if k != "prm/reliability"}), flush=True)
