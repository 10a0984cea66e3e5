#!/usr/bin/env bash
# Device check on a CUDA machine: tests, a solve, bench speed and d = 10,000 timings, logs in $OUT.
#
#   OUT=/path/to/logs bash benchmarks/gpu_check.sh        # from the repository root (any cwd works)
#
# Needs python3 with torch (CUDA build), typer, rich, pyyaml, scipy, matplotlib, pytest, hypothesis;
# wheels in .whl/ are installed offline into /tmp/site first (the lent H200's image of 2026-11-27 had no pydantic:
# `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl
# pydantic pydantic_core annotated-types typing-inspection`, the versions of this machine's venv). The
# package itself is not pip-installed: its source is laid out as the installed package in /tmp/bsde-src
# (bsde/, cli/ as bsde/cli, problems/ as bsde/problems), so no network, build backend or write access to
# site-packages is needed, and every command runs outside the checkout (whose bsde/ lacks bsde.cli).
#
# Writes at most 8 files to $OUT: summary.txt (environment, each step's exit status and seconds),
# setup.log, pytest.log, solve.log, bench.log, bench.json, bench.md, d10000.log (one JSON line per timed case:
# CUDA graphs at d = 100, and d = 10,000 eager, compiled and as CUDA graphs).
# A step that fails does not stop the others; the whole run keeps to BUDGET_S seconds (default 345):
# each step gets its own limit, cut to what is left, and steps that no longer fit are skipped.
#
# Dry run on a CPU machine (checks the script's logic; tiny sizes):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 OUT=/tmp/gpu_dry bash benchmarks/gpu_check.sh

set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/gpu_out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
BUDGET=${BUDGET_S:-345}
PY=${PYTHON:-python3}
SRC=/tmp/bsde-src
SITE=/tmp/site
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
START=$SECONDS

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - (SECONDS - START))); }

# step NAME LIMIT LOG CMD...: run CMD with stdout+stderr appended to LOG, under min(LIMIT, time left)
step() {
    local name=$1 limit=$2 log=$3 remaining began rc
    shift 3
    remaining=$(left)
    if ((remaining < 15)); then
        note "SKIP  $name (budget: ${remaining}s left)"
        return 0
    fi
    ((limit > remaining)) && limit=$remaining
    echo "### $name (limit ${limit}s): $*" >> "$log"
    began=$SECONDS
    # SIGINT first: pytest and bsde stop cleanly and say what they did
    (cd /tmp && timeout -s INT -k 20 "$limit" "$@") >> "$log" 2>&1
    rc=$?
    note "$(printf '%-5s %-28s rc=%-3s %4ss' "$([ $rc = 0 ] && echo OK || echo FAIL)" "$name" "$rc" $((SECONDS - began)))"
    return 0
}

# ---------------------------------------------------------------------------- set-up
{
    echo "repo: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  device: $DEVICE  quick: $QUICK  budget: ${BUDGET}s"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "gcc: $(gcc --version 2>/dev/null | head -1 || echo none)"
} >> "$SUMMARY" 2>&1

{
    if compgen -G "$REPO/.whl/*.whl" > /dev/null; then
        $PY -m pip install -q --no-index --no-deps --target "$SITE" "$REPO"/.whl/*.whl && echo "wheels installed in $SITE"
    else
        echo "no .whl/ folder: using the interpreter's own packages"
    fi
    rm -rf "$SRC" && mkdir -p "$SRC"
    cp -r "$REPO/bsde" "$SRC/bsde" && cp -r "$REPO/cli" "$SRC/bsde/cli" && cp -r "$REPO/problems" "$SRC/bsde/problems"
    echo "source laid out in $SRC"
} >> "$OUT/setup.log" 2>&1
export PYTHONPATH=$SRC:$SITE${PYTHONPATH:+:$PYTHONPATH}
(cd /tmp && $PY - >> "$SUMMARY" 2>&1) <<'PY'
import importlib, sys
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.version.cuda}), "
      f"cuda available: {torch.cuda.is_available()}" +
      (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
for name in ("pydantic", "typer", "scipy", "triton"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: not importable ({type(exc).__name__})")
import bsde, bsde.cli.app
print(f"bsde {bsde.__version__} from {bsde.__file__}")
PY
note "set-up done in $((SECONDS - START))s"

if [ "$QUICK" = 1 ]; then
    SOLVE_SETS=(--set solver.iterations=200 --set equation.dim=20)
    BENCH_ARGS=(--quick --only startup,speed)
    QUICK_ARG=(--quick)
    BIG=200
else
    SOLVE_SETS=()
    BENCH_ARGS=(--only startup,speed)
    QUICK_ARG=()
    BIG=10000
fi

# ---------------------------------------------------------------------------- a solve on the device
step "solve hjb --json" 60 "$OUT/solve.log" $PY -m bsde.cli solve hjb --device "$DEVICE" --json "${SOLVE_SETS[@]}"

# ---------------------------------------------------------------------------- tests
# the CUDA tests (skipped on CPU machines) first, -vv naming each as it ends (pyproject's addopts hold -q), so a
# run cut by its time limit still says which failed; then, with pytest-xdist there, the whole default suite over
# the machine's cores (two per worker, as CI's machine has: tests/conftest.py pins them), else a quick subset
PYTEST=($PY -m pytest -c "$REPO/pyproject.toml" --rootdir "$REPO" -p no:cacheprovider --tb=short -rfEs)
step "pytest (CUDA tests)" 90 "$OUT/pytest.log" "${PYTEST[@]}" -vv -k "cuda or gpus" \
    "$REPO/tests/test_device.py" "$REPO/tests/test_distributed.py" "$REPO/tests/test_runtime.py" \
    "$REPO/tests/test_compiled.py" "$REPO/tests/test_control_bound.py" "$REPO/tests/test_solution.py" \
    "$REPO/tests/test_cli.py" "$REPO/tests/test_expressions.py"
if (cd /tmp && $PY -c "import xdist") 2> /dev/null; then
    WORKERS=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
    step "pytest (default suite, -n $WORKERS)" 280 "$OUT/pytest.log" "${PYTEST[@]}" -n "$WORKERS" -vv "$REPO/tests"
else
    TESTS=(test_control_bound.py test_compiled.py test_runtime.py test_adam.py test_solve.py test_trainer.py test_checkpoint.py
           test_model.py test_networks.py test_simulation.py test_memory.py test_cli.py test_signals.py)
    step "pytest (subset)" 130 "$OUT/pytest.log" "${PYTEST[@]}" -vv --durations=10 "${TESTS[@]/#/$REPO/tests/}"
fi

# ---------------------------------------------------------------------------- bench: start-up, speed (d = 100)
# float64 and float32 (TF32 on CUDA), plain and controlled paths, eager and compiled, each against its matmul floor
step "bench startup,speed" 170 "$OUT/bench.log" \
    $PY -m bsde.cli bench --device "$DEVICE" "${BENCH_ARGS[@]}" --out "$OUT"

# ---------------------------------------------------------------------------- CUDA graphs at d = 100, then d = 10,000
# one case per step (each under its own time limit): benchmarks/compile_scale.py, a JSON line each
# (eager first: the baseline of the same run; then the cases no run has timed yet)
CASES=("$BIG float32 eager" "$BIG float64 eager" "100 float64 reduce-overhead" "$BIG float32 compile"
       "$BIG float64 compile" "100 float32 reduce-overhead" "$BIG float32 reduce-overhead")
for case in "${CASES[@]}"; do
    set -- $case
    step "d=$1 $2 $3" 90 "$OUT/d10000.log" $PY "$REPO/benchmarks/compile_scale.py" --device "$DEVICE" \
        --dims "$1" --dtypes "$2" --modes "$3" "${QUICK_ARG[@]}"
done

note "total $((SECONDS - START))s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
