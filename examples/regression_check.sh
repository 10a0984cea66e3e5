#!/usr/bin/env bash
# A regression check over several problem files: solve each, compare with its reference, and fail
# (exit 1, after writing the reports) when any relative error exceeds the tolerance.
#
#   bash examples/regression_check.sh                 # shipped problems, default settings, 1% tolerance
#   TOL=0.02 OUT=/tmp/check bash examples/regression_check.sh basket_put my_problem.yaml
#   SMALL=1 bash examples/regression_check.sh         # a quick run (what the tests do)
#
# Each argument is a shipped problem's name or a YAML file. Reports go to $OUT (<problem>.json/.md/.png).
set -euo pipefail
TOL=${TOL:-0.01}
OUT=${OUT:-results/regression}
problems=("$@")
[ ${#problems[@]} -gt 0 ] || problems=(hjb allen_cahn basket_put)
settings=()
if [ "${SMALL:-0}" = 1 ]; then
    settings=(--preset fast --set solver.time_steps=10 --threads 1)
fi
bsde compare "${problems[@]}" --seeds 1 --out "$OUT" --fail-above "$TOL" "${settings[@]}"
