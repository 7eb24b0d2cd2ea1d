#!/usr/bin/env bash
# Where the guppy preset's `train` and `eval` spend their seconds on one GPU, after a change: each whole command
# three times (the first with every cache empty), a timeline of each the second time (train_timeline.py,
# eval_timeline.py), then the CUDA tests. PROFILE=1 adds the modules each imports (python -X importtime) and the
# kernels of a training step (bench_gpu_step.py --profile). On the device:
#
#   python3 -m pip install --no-deps --no-index -q .whl/*.whl && bash tests/bench/gpu_timelines.sh
#
# The logs come back as one archive, ${OUT:-runs}/timelines.tgz (the device tool brings back 8 files at most).
set -uo pipefail
export PYTHONUNBUFFERED=1 COLUMNS=160 GUPPY_CACHE=$PWD/runs/cache
LOGS=runs/timelines; mkdir -p "$LOGS" "${OUT:-runs}"
timed() {  # timed NAME COMMAND...: one whole command's wall seconds
    local name=$1 t0=$EPOCHREALTIME; shift
    "$@" > "$LOGS/$name.log" 2>&1 || echo "rc=$? for $name"
    python3 -c "print(f'$name: {$EPOCHREALTIME - $t0:.2f} s')" | tee -a "$LOGS/times.txt"
}
python3 -m compileall -q -j 16 "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    guppy pipeline cli.py tests/bench
[ -d runs/guppy/data ] || python3 cli.py generate-data guppy > "$LOGS/generate.log" 2>&1
for n in 1 2 3; do timed "train-$n" python3 cli.py train guppy --preset guppy; done
for n in 1 2 3; do timed "eval-$n" python3 cli.py eval guppy; done
grep -h -E "wall_s|prepare_s|eval_s|checkpoint_s|tokens_per_s|best_test_loss" "$LOGS/train-3.log" | tr -s ' │' ' '
grep -h -E "persona .*on-topic|time:" "$LOGS/eval-3.log"
python3 tests/bench/train_timeline.py $EPOCHREALTIME guppy --preset guppy 2>&1 | grep -E "^ *[0-9.]+ " \
    | grep -v " _log$" > "$LOGS/train-timeline.txt"
python3 tests/bench/eval_timeline.py $EPOCHREALTIME 2>&1 | grep -E "^ *[0-9.]+ " > "$LOGS/eval-timeline.txt"
cat "$LOGS/train-timeline.txt" "$LOGS/eval-timeline.txt"
if [ -n "${PROFILE:-}" ]; then
    python3 -X importtime cli.py train guppy --preset guppy 2> "$LOGS/train-importtime.txt" > /dev/null
    python3 -X importtime cli.py eval guppy 2> "$LOGS/eval-importtime.txt" > /dev/null
    python3 tests/bench/bench_gpu_step.py --profile > "$LOGS/step-profile.txt" 2>&1
fi
timed pytest-cuda python3 -m pytest -q tests/test_cuda.py tests/test_gpu_paths.py
tail -2 "$LOGS/pytest-cuda.log"
tar czf "${OUT:-runs}/timelines.tgz" -C "$LOGS" .
