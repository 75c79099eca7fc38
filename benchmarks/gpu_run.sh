#!/usr/bin/env bash
# The GPU proof as one command, for a machine that is lent for minutes: every gpu_check stage in a
# process of its own under its own time limit, so a crash, a hang or a spent budget in one stage
# leaves the figures of the others. Run it from anywhere; it works in the checkout it belongs to and
# copies nothing from outside it.
#
#     OUT=results bash benchmarks/gpu_run.sh
#
# Before it, put the reference's harness (../shared/tools/gpu_compare) into the checkout as
# .gpu_compare/ (git ignores it) and send it along: without it the reference stage says "not found".
#
# Writes into $OUT (default gpu_run_out/, git ignores it): gpu_check.json (every stage's rows, rewritten
# atomically after each stage), gpu_check.md (the tables), gpu_check.log (what the stages printed) and
# machine.txt (nvidia-smi, python, torch).
#
# Time: GPU_RUN_SECONDS in all (default 540, inside a 10-minute command), each stage at most its cap
# below and what is left; a stage's process gets 10 s fewer as its own --deadline, so it stops between
# cases and writes what it has before `timeout` would have to end it.
# Environment: PYTHON (default python3), GPU_RUN_STAGES ("stage:cap_seconds ..."), GPU_CHECK_ARGS (more
# arguments for every stage, e.g. --quick to try the script on a CPU).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_run_out}
PYTHON=${PYTHON:-python3}
TOTAL=${GPU_RUN_SECONDS:-540}
STAGES=${GPU_RUN_STAGES:-"smoke:90 correctness:120 memory:90 speed:180 reference:180"}
read -r -a EXTRA <<< "${GPU_CHECK_ARGS:-}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
RUN="$(date -u +%Y%m%dT%H%M%SZ)-$$"
{
    command -v nvidia-smi >/dev/null && nvidia-smi
    "$PYTHON" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/machine.txt" 2>&1

status=0
for spec in $STAGES; do
    stage=${spec%%:*}
    budget=${spec##*:}
    left=$((TOTAL - SECONDS))
    ((budget > left)) && budget=$left
    if ((budget < 20)); then
        echo "gpu_run: $stage not started: ${left} s left" | tee -a "$OUT/gpu_check.log"
        status=1
        continue
    fi
    timeout -k 10 "$budget" "$PYTHON" -m benchmarks.gpu_check --stages "$stage" --run "$RUN" \
        --deadline $((budget - 10)) --json "$OUT/gpu_check.json" ${EXTRA[@]+"${EXTRA[@]}"} >> "$OUT/gpu_check.log" 2>&1
    code=$?
    if ((code == 124 || code == 137)); then
        echo "gpu_run: $stage ended by its time limit (${budget} s)" | tee -a "$OUT/gpu_check.log"
    fi
    ((code != 0)) && status=1
    echo "gpu_run: $stage done (exit $code) at ${SECONDS} s" | tee -a "$OUT/gpu_check.log"
done
if [ -f "$OUT/gpu_check.json" ]; then
    "$PYTHON" -m benchmarks.gpu_check --report "$OUT/gpu_check.json" > "$OUT/gpu_check.md" 2>&1
    cat "$OUT/gpu_check.md"
fi
exit $status
