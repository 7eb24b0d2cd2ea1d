#!/usr/bin/env bash
# The guppy preset end to end on one GPU, each whole command timed (issue 26). On the device machine:
#
#   python3 -m pip install --no-deps --no-index -q .whl/*.whl && bash tests/bench/bench_gpu.sh after
#
# QUICK=1 (optional): leave out what was measured before and changes slowly (--packing whole, the step
# microbenchmark, torch.compile's two runs), to leave device time for tests/bench/gpu_recipes.sh.
# BEFORE=DIR (optional): a folder of files as they were before a change (same paths as in the checkout); they
# are swapped in for a `train` twice, an `eval` and a `run`, then swapped back, so before and after are timed on one machine.
# Logs, cProfile listings (sorted by cumulative time) and times.txt come back as $OUT/logs-TAG.tgz.
set -uo pipefail
TAG=${1:-now}
RESULT=${OUT:-runs}  # the device tool brings back what is under $OUT: one archive of the logs
LOG=runs/bench_gpu-$TAG; mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 COLUMNS=160 GUPPY_CACHE=$PWD/runs/cache

step() {  # step NAME COMMAND...: wall seconds of a whole command, its output in $LOG/NAME.log
    local name=$1; shift
    local t0=$EPOCHREALTIME
    "$@" > "$LOG/$name.log" 2>&1; local rc=$?
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" -v rc="$rc" 'BEGIN { printf "%-28s %7.2f s  rc=%s\n", n, b - a, rc }' \
        | tee -a "$LOG/times.txt"
}
pack() {  # what is measured so far, in case the call runs out of time
    mkdir -p "$RESULT" && tar czf "$RESULT/logs-$TAG.tgz" -C "$LOG" --exclude="*.prof" .
}
listing() {  # listing NAME: the top of a cProfile file, by cumulative time
    python3 -c "import pstats,sys; pstats.Stats(sys.argv[1]).sort_stats('cumulative').print_stats(80)" \
        "$LOG/$1.prof" > "$LOG/$1-prof.txt" 2>&1
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$LOG/gpu.txt"
# The image sets PYTHONDONTWRITEBYTECODE and ships torch without bytecode, so every command compiled ~5 s of
# Python source (measured 2026-12-04). An installed torch (pip) has its bytecode: compile everything once.
step compileall python3 -m compileall -q -j 16 "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    guppy pipeline cli.py
step generate-data python3 cli.py generate-data guppy
if [ -n "${BEFORE:-}" ]; then
    (cd "$BEFORE" && find . -type f) > "$LOG/before-files.txt"
    mkdir -p /tmp/after && while read -r f; do cp --parents "$f" /tmp/after/; cp "$BEFORE/$f" "$f"; done < "$LOG/before-files.txt"
    step before-train-1 python3 cli.py train guppy --preset guppy
    step before-train-2 python3 cli.py train guppy --preset guppy
    step before-eval python3 cli.py eval guppy
    step before-run python3 cli.py run guppy --preset guppy
    while read -r f; do cp "/tmp/after/$f" "$f"; done < "$LOG/before-files.txt"
fi
step import-torch python3 -c "import torch; torch.zeros(1, device='cuda')"
step cli-help python3 cli.py --help
python3 -X importtime -c "import cli, guppy.train.trainer, torch._dynamo" 2> "$LOG/importtime.txt"
step train-1 python3 cli.py train guppy --preset guppy
step train-2 python3 cli.py train guppy --preset guppy
# The same once more, saying when the interpreter begins to exit (atexit), to see what the exit itself costs.
python3 -c "import atexit, sys, time; atexit.register(lambda: print(f'atexit {time.time():.3f}', file=sys.stderr)); \
sys.argv = ['guppy', 'train', 'guppy', '--preset', 'guppy']; import cli; cli.main()" > "$LOG/train-exit.log" 2>&1
echo "exited $EPOCHREALTIME" >> "$LOG/train-exit.log"
pack
step eval python3 cli.py eval guppy
step eval-cpu python3 cli.py eval guppy --device cpu  # the same figures, the model on the CPU
step run-1 python3 cli.py run guppy --preset guppy
pack
step pytest-cuda python3 -m pytest -q tests/test_cuda.py tests/test_gpu_paths.py
pack
step train-3-profiled python3 -m cProfile -o "$LOG/train.prof" cli.py train guppy --preset guppy
step eval-profiled python3 -m cProfile -o "$LOG/eval.prof" cli.py eval guppy
[ -z "${QUICK:-}" ] && step train-whole python3 cli.py train guppy --preset guppy --packing whole --out runs/guppy-whole
[ -z "${QUICK:-}" ] && python3 tests/bench/bench_gpu_step.py > "$LOG/step.txt" 2>&1
listing train; listing eval
cat "$LOG/step.txt"
grep -E "^atexit|^exited" "$LOG/train-exit.log"
for f in before-train-1 before-train-2 train-1 train-2 train-whole; do
    echo "$f: $(grep -E 'wall_s|prepare_s|eval_s|checkpoint_s|tokens_per_s|best_test_loss' "$LOG/$f.log" 2>/dev/null | tr -s ' │' ' ' | tr '\n' ' ')"
done
grep -H -E "persona .*on-topic|generate .* total|time:" "$LOG"/before-eval.log "$LOG"/before-run.log "$LOG"/eval.log "$LOG"/eval-cpu.log "$LOG"/run-1.log
tail -3 "$LOG/pytest-cuda.log"
pack
[ -n "${QUICK:-}" ] && exit 0
# Last, as it may take long: torch.compile's cost the first and the second time (inductor's caches warm).
step compile-1 timeout 100 python3 cli.py train guppy --preset guppy --compile on --out runs/guppy-compiled
step compile-2 timeout 100 python3 cli.py train guppy --preset guppy --compile on --out runs/guppy-compiled
for f in compile-1 compile-2; do
    echo "$f: $(grep -E 'wall_s|prepare_s|tokens_per_s|best_test_loss' "$LOG/$f.log" | tr -s ' │' ' ' | tr '\n' ' ')"
done
pack
