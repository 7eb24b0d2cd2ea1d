#!/usr/bin/env bash
# Whole commands taken in turn, so that a noisy or warming machine treats them alike; prints each run's wall
# seconds and each command's median. After bench_gpu.sh's set-up (wheels, bytecode, runs/guppy/data):
#
#   ROUNDS=3 bash tests/bench/gpu_ab.sh "python3 cli.py train guppy --preset guppy" \
#       "python3 cli.py train guppy --preset guppy --no-learn-block-norms"
#
# Each command's output of its last round is kept in ${OUT:-runs}/ab-N.log (N its position).
set -uo pipefail
ROUNDS=${ROUNDS:-3}
mkdir -p "${OUT:-runs}"
declare -A walls
for round in $(seq "$ROUNDS"); do
    n=0
    for cmd in "$@"; do
        n=$((n + 1))
        t0=$EPOCHREALTIME
        bash -c "$cmd" > "${OUT:-runs}/ab-$n.log" 2>&1 || echo "rc=$? for: $cmd"
        wall=$(python3 -c "print(f'{$EPOCHREALTIME - $t0:.2f}')")
        walls[$n]="${walls[$n]:-} $wall"
        echo "round $round  #$n  $wall s  $cmd"
    done
done
n=0
for cmd in "$@"; do
    n=$((n + 1))
    echo "#$n median $(python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" ${walls[$n]}) s  (${walls[$n]# })  $cmd"
done
