#!/usr/bin/env bash
# The GPU checks of issue #4, in one command on a lent device machine (H100 / H200, ~4-5 min, 7 at most):
#
#   device run:  command "bash scripts/gpu_checks.sh", carry [".whl"], timeout_s 480
#   here (CPU):  PYTHON=path/to/python OUT=/tmp/gpu_out bash scripts/gpu_checks.sh --dry
#
# .whl/ holds the x86-64 Python 3.12 wheels the device image lacks or has at other versions
# (trl, datasets, pydantic, the tested transformers / peft / accelerate, bitsandbytes trimmed to
# its CUDA 13 and CPU libraries); they go to /tmp/site, ahead of the image's own packages.
#
# Parts, each under its own `timeout` and independent of the others (one failing does not stop
# the next); everything lands in $OUT (at most 8 files come back from the device):
#   install.log     pip install of .whl/ into /tmp/site
#   env.txt         nvidia-smi, Python and library versions (and where each was imported from), pip check
#   test_gpu.log    pytest -m gpu tests/test_gpu.py: bf16 auto on CUDA, QLoRA 4-bit SFT steps
#   bench.log       scripts/bench_train.py on the Qwen2.5-0.5B shape (random weights), bf16, 2048 tokens
#   bench_gpu.json  its results: per side tokens/s, MFU, peak memory; N-contributor times
#   summary.txt     one line per part: name, exit status (124 = timed out), seconds
# --dry: a CPU-sized bench (tiny base, few records) to check that the script and its flags run.

# --fetch-wheels (here, with PyPI): rebuild .whl/ from scratch, then exit.

set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true
cd "$(dirname "$0")/.."

# ============================================================================ wheels (run here)

# The tested versions (.venv) of what the image lacks or holds at another version; the image
# already has torch 2.11 (cu130), numpy, pandas, pyarrow, xxhash, safetensors, jinja2, psutil.
WHEEL_PINS=(transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 trl==1.16.0 datasets==5.2.0
    huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 click==8.5.1 idna==3.20
    anyio==4.16.0 h11==0.16.0 tokenizers==0.23.3 regex==2026.11.19 dill==0.4.1 multiprocess==0.70.19
    fsspec==2026.9.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
    typing-inspection==0.4.5 typing_extensions==4.16.0 typer==0.29.2 bitsandbytes==0.50.2)

# bitsandbytes ships a library per CUDA / ROCm / XPU version (43 MB): keep CUDA 13 and CPU only,
# so the tree and the wheels stay under the device's 64 MiB a call; RECORD loses the same lines.
TRIM_BNB='
import glob, os, re, zipfile
src = glob.glob(".whl/bitsandbytes-*.whl")[0]
drop = lambda n: "libbitsandbytes_" in n and not re.search(r"_(cuda13[0-9]|cpu)[.]so$", n)
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(src + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if drop(info.filename):
            continue
        data = zin.read(info.filename)
        if info.filename.endswith(".dist-info/RECORD"):
            kept = [line for line in data.decode().splitlines() if not drop(line.split(",")[0])]
            data = ("\n".join(kept) + "\n").encode()
        zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
os.replace(src + ".tmp", src)
'

fetch_wheels() {
    rm -rf .whl && mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEEL_PINS[@]}" || return
    python3 -c "$TRIM_BNB" && du -sh .whl
}
if [[ "${1:-}" == "--fetch-wheels" ]]; then
    fetch_wheels
    exit
fi

DRY=0
[[ "${1:-}" == "--dry" ]] && DRY=1
OUT=${OUT:?set OUT to the folder for logs}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
BUDGET_S=${BUDGET_S:-420} # the whole script, so a 480 s device timeout still returns everything
mkdir -p "$OUT"
: >"$OUT/summary.txt"

# ============================================================================ helpers

# part NAME CAP_S LOG CMD...: run CMD under a timeout of min(CAP_S, what is left of BUDGET_S),
# its output to the terminal and to $OUT/LOG, and record its exit status in summary.txt.
part() {
    local name=$1 cap=$2 log=$3 left started rc
    shift 3
    left=$((BUDGET_S - SECONDS))
    ((left < cap)) && cap=$left
    if ((cap < 10)); then
        echo "$name skipped (budget spent) 0s" | tee -a "$OUT/summary.txt"
        return
    fi
    echo "=== $name (timeout ${cap}s): $*" | tee -a "$OUT/$log"
    started=$SECONDS
    timeout --kill-after=15 "$cap" "$@" 2>&1 | tee -a "$OUT/$log"
    rc=$?
    echo "$name rc=$rc $((SECONDS - started))s" | tee -a "$OUT/summary.txt"
}

# ============================================================================ install

if [[ -d "$SITE/trl" ]]; then # installed by an earlier step of the same device call
    echo "install skipped: $SITE already holds the wheels" | tee -a "$OUT/summary.txt"
    export PYTHONPATH="$SITE:$PWD"
elif compgen -G "$WHEELS/*.whl" >/dev/null; then
    part install 120 install.log "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" $WHEELS/*.whl
    export PYTHONPATH="$SITE:$PWD"
else
    echo "install skipped: no wheels in $WHEELS" | tee -a "$OUT/summary.txt"
    export PYTHONPATH="$PWD"
fi

# ============================================================================ environment

env_report() {
    nvidia-smi || echo "nvidia-smi: not available"
    "$PY" - <<'EOF'
import importlib, importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
names = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub", "tokenizers",
         "safetensors", "pydantic", "pyarrow", "fsspec", "regex", "numpy", "pandas", "bitsandbytes"]
for name in names:
    try:
        module = importlib.import_module(name)
        print(f"{name:16} {getattr(module, '__version__', '?'):24} {module.__file__}")
    except Exception as err:  # report and go on: the parts below say what it breaks
        print(f"{name:16} IMPORT FAILED: {type(err).__name__}: {err}")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
import replica.train.pipeline, replica.train.sft, replica.train.dpo  # noqa: E401  the training path imports
print("replica training path imports: ok")
EOF
    echo "--- pip check (conflicts among all installed packages; the image's own ones may show too)"
    "$PY" -m pip check 2>&1 | head -40
}
export -f env_report
export PY
part env 90 env.txt bash -c env_report

# ============================================================================ QLoRA + bf16 tests

part test_gpu 150 test_gpu.log "$PY" -m pytest -m gpu tests/test_gpu.py -v -rs -p no:cacheprovider

# ============================================================================ throughput bench

if ((DRY)); then
    bench=(--arch tiny --max-length 768 --records 8 --batch-size 4 --contributors 1 --per-contributor 6
        --scale-steps 1)
else
    # 512 records (mean ~520 tokens, up to 2048) = 64 steps of 8 per side; then N = 1, 4, 8
    # contributors (SFT + DPO, 4 steps each). The JSON is written after each of the two parts.
    bench=(--arch qwen2.5-0.5b --max-length 2048 --records 512 --batch-size 8 --contributors 1,4,8
        --per-contributor 16 --scale-steps 4)
fi
[[ -n "${BENCH_ARGS:-}" ]] && read -r -a bench <<<"$BENCH_ARGS" # a smaller bench when the budget is shared
part bench 360 bench.log "$PY" scripts/bench_train.py "${bench[@]}" --out "$OUT/bench_gpu.json"

echo "=== summary (total ${SECONDS}s)"
cat "$OUT/summary.txt"
