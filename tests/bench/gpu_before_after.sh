#!/usr/bin/env bash
# Before against after on one GPU machine: whole commands taken in turn (gpu_ab.sh), the only comparison these
# machines allow (two of them differed by 25%). On the device, with the tree as it was in BEFORE and carried there:
#
#   git archive REV | tar -x -C .before      # here; then run(carry=[".whl", ".before"]):
#   python3 -m pip install --no-deps --no-index -q .whl/*.whl && BEFORE=.before bash tests/bench/gpu_before_after.sh
#
# Prints each command's median (ROUNDS, default 2); the logs go to $OUT/ab.tgz. Timelines: gpu_timelines.sh.
set -uo pipefail
BEFORE=$(cd "${BEFORE:?a folder with the tree as it was}" && pwd)
export PYTHONUNBUFFERED=1 COLUMNS=160 GUPPY_CACHE=$PWD/runs/cache ROUNDS=${ROUNDS:-2}
LOGS=${OUT:-runs}/ab; mkdir -p "$LOGS"
timed() {  # timed NAME COMMAND...: one whole command's wall seconds
    local name=$1 t0=$EPOCHREALTIME; shift
    "$@" > "$LOGS/$name.log" 2>&1 || echo "rc=$? for $name"
    python3 -c "print(f'$name: {$EPOCHREALTIME - $t0:.2f} s')"
}
python3 -m compileall -q -j 16 "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    guppy pipeline cli.py "$BEFORE"
python3 cli.py generate-data guppy > "$LOGS/generate.log" 2>&1
(cd "$BEFORE" && python3 cli.py generate-data guppy > "$LOGS/generate-before.log" 2>&1)
# The first time, with every cache empty (the prepared data, the eval's data, the topic classifier):
timed train-first-after python3 cli.py train guppy --preset guppy
timed eval-first-after python3 cli.py eval guppy
(cd "$BEFORE" && timed train-first-before python3 cli.py train guppy --preset guppy)
(cd "$BEFORE" && timed eval-first-before python3 cli.py eval guppy)
for cmd in "train guppy --preset guppy" "eval guppy" "run guppy --preset guppy"; do
    OUT=$LOGS/ab-${cmd%% *} bash tests/bench/gpu_ab.sh "cd $BEFORE && python3 cli.py $cmd" "python3 cli.py $cmd" | tail -2
done
grep -h -E "persona .*on-topic|time:|total" "$LOGS"/ab-*/ab-*.log
grep -h -E "wall_s|prepare_s|tokens_per_s|best_test_loss" "$LOGS"/ab-train/ab-*.log | tr -s ' │' ' '
timed pytest-cuda python3 -m pytest -q tests/test_cuda.py tests/test_gpu_paths.py
tail -2 "$LOGS/pytest-cuda.log"
tar czf "$LOGS.tgz" -C "$LOGS" . 2>/dev/null  # the device tool brings back 8 files at most: one archive
