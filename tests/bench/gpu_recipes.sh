#!/usr/bin/env bash
# Recipes side by side on one GPU, each over training seeds 0, 1, 2 (tests/bench/bench_optim.py; quality, not
# time: 4 jobs share the GPU). After bench_gpu.sh, which made runs/guppy/data and warmed the prepared-data cache:
#
#   bash tests/bench/gpu_recipes.sh steps        # the guppy preset: fewer steps, higher learning rates (issue 26)
#   bash tests/bench/gpu_recipes.sh activation   # GELU against ReLU on tiny and small (issue 25)
#   bash tests/bench/gpu_recipes.sh guppy-gelu   # the guppy preset with GELU (its ReLU runs: `steps`' first job)
#   bash tests/bench/gpu_recipes.sh languages    # kingyo (ja), tuantuan (zh), lorenzo (es): tiny, their own data
set -uo pipefail
WHAT=${1:-steps}
export PYTHONUNBUFFERED=1 GUPPY_CACHE=$PWD/runs/cache
mkdir -p "${OUT:-runs}"
jobs=()
if [ "$WHAT" = steps ]; then
    for j in '"max_steps": 300, "lr": 1e-2, "warmup_steps": 100' '"max_steps": 200, "lr": 1e-2, "warmup_steps": 50' \
             '"max_steps": 200, "lr": 1.5e-2, "warmup_steps": 50' '"max_steps": 150, "lr": 1.5e-2, "warmup_steps": 40' \
             '"max_steps": 150, "lr": 2e-2, "warmup_steps": 40'; do
        jobs+=(--job "{\"preset\": \"guppy\", $j}")
    done
elif [ "$WHAT" = activation ]; then
    for p in tiny small; do for a in relu gelu; do jobs+=(--job "{\"preset\": \"$p\", \"activation\": \"$a\"}"); done; done
elif [ "$WHAT" = guppy-gelu ]; then
    jobs+=(--job '{"preset": "guppy", "activation": "gelu"}')
else  # languages: each persona's data first (generate-data's own processes: the cores here, up to 8)
    for p in kingyo tuantuan lorenzo; do
        python3 cli.py generate-data "$p" > /dev/null && jobs+=(--job "{\"persona\": \"$p\", \"preset\": \"tiny\"}")
    done
fi
python3 tests/bench/bench_optim.py --device cuda --parallel "${PARALLEL:-4}" --threads "${THREADS:-4}" --train-seeds 0,1,2 "${jobs[@]}" \
    2>&1 | tee "${OUT:-runs}/recipes-$WHAT.txt"
