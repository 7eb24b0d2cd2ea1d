#!/usr/bin/env bash
# Recipes side by side on one GPU, each over training seeds 0, 1, 2 (tests/bench/bench_optim.py: train, then
# `guppy eval`; quality, not time: PARALLEL jobs share the GPU). After bench_gpu.sh, which made runs/guppy/data
# and warmed the prepared-data cache. Name one or more sets; their jobs share one pool:
#
#   bash tests/bench/gpu_recipes.sh steps        # the guppy preset: fewer steps, higher learning rates (issue 26)
#   bash tests/bench/gpu_recipes.sh activation   # GELU against ReLU on tiny and small (issue 25)
#   bash tests/bench/gpu_recipes.sh guppy-gelu   # the guppy preset with GELU (its ReLU runs: `steps`' first job)
#   bash tests/bench/gpu_recipes.sh personas     # the tiny preset on every shipped persona, its own data
#   bash tests/bench/gpu_recipes.sh norms        # the guppy preset with its blocks' LayerNorms fixed (issue 26)
#   bash tests/bench/gpu_recipes.sh fewer        # the guppy preset in 250-270 steps, shorter warm-ups (issue 26)
#   bash tests/bench/gpu_recipes.sh graph        # the guppy preset's steps replayed as a CUDA graph, and not (issue 26)
#   bash tests/bench/gpu_recipes.sh 270          # the guppy preset in 270 steps, one held-out eval at the end (issue 26)
#   bash tests/bench/gpu_recipes.sh lean         # the guppy preset with the blocks' biases fixed, a bf16 residual, both
set -uo pipefail
export PYTHONUNBUFFERED=1 GUPPY_CACHE=$PWD/runs/cache
mkdir -p "${OUT:-runs}"
jobs=()
for WHAT in "${@:-steps}"; do
    case $WHAT in
    steps)
        for j in '"max_steps": 300, "lr": 1e-2, "warmup_steps": 100' '"max_steps": 200, "lr": 1e-2, "warmup_steps": 50' \
                 '"max_steps": 200, "lr": 1.5e-2, "warmup_steps": 50' '"max_steps": 150, "lr": 1.5e-2, "warmup_steps": 40' \
                 '"max_steps": 150, "lr": 2e-2, "warmup_steps": 40'; do
            jobs+=(--job "{\"preset\": \"guppy\", $j}")
        done ;;
    activation)
        for p in tiny small; do for a in relu gelu; do jobs+=(--job "{\"preset\": \"$p\", \"activation\": \"$a\"}"); done; done ;;
    guppy-gelu)
        jobs+=(--job '{"preset": "guppy", "activation": "gelu"}') ;;
    norms)  # the guppy preset with the blocks' LayerNorms learned (as it was) and fixed, and fixed in fewer steps
        jobs+=(--job '{"preset": "guppy", "learn_block_norms": true}' --job '{"preset": "guppy", "learn_block_norms": false}'
               --job '{"preset": "guppy", "learn_block_norms": false, "max_steps": 270}') ;;
    fewer)  # the preset as it is, then fewer steps with a shorter warm-up, one with a higher learning rate
        for j in '"max_steps": 300' '"max_steps": 270, "warmup_steps": 60' '"max_steps": 250, "warmup_steps": 50' \
                 '"max_steps": 250, "warmup_steps": 50, "lr": 1.3e-2'; do
            jobs+=(--job "{\"preset\": \"guppy\", $j}")
        done ;;
    graph)
        jobs+=(--job '{"preset": "guppy"}' --job '{"preset": "guppy", "cuda_graph": false}') ;;
    270)
        jobs+=(--job '{"preset": "guppy"}' --job '{"preset": "guppy", "max_steps": 270, "eval_every": 270}') ;;
    lean)
        jobs+=(--job '{"preset": "guppy"}' --job '{"preset": "guppy", "learn_block_biases": false}'
               --job '{"preset": "guppy", "bf16_residual": true}'
               --job '{"preset": "guppy", "learn_block_biases": false, "bf16_residual": true}') ;;
    personas)  # each persona's data first (generate-data's own processes: the cores here, up to 8)
        for p in guppy cat plant kingyo tuantuan lorenzo; do
            [ -d "runs/$p/data" ] || python3 cli.py generate-data "$p" > /dev/null
            jobs+=(--job "{\"persona\": \"$p\", \"preset\": \"tiny\"}")
        done ;;
    *) echo "unknown set: $WHAT (steps, activation, guppy-gelu, personas, norms, fewer, graph, 270, lean)" >&2; exit 2 ;;
    esac
done
python3 tests/bench/bench_optim.py --device cuda --parallel "${PARALLEL:-4}" --threads "${THREADS:-4}" --train-seeds 0,1,2 \
    "${jobs[@]}" 2>&1 | tee "${OUT:-runs}/recipes-$(IFS=-; echo "${*:-steps}").txt"
