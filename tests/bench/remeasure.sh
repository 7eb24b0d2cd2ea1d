#!/usr/bin/env bash
# Re-measure the README's quality figures with today's evaluator, side by side on a many-core machine:
# tiny guppy / cat / plant / kingyo, small guppy, and a tiny guppy trained on its replies shuffled across
# prompts (the evaluator must put its on-topic score at the floor). Each run is evaluated over sampling
# seeds 0,1,2; then `guppy compare`. One job per run, THREADS threads each (small gets 2x); about 10
# minutes on 16 cores. Prints one table; logs and reports land in $OUT (default runs/remeasure).
#
#   THREADS=2 bash tests/bench/remeasure.sh            # GUPPY="python3 cli.py" where guppy is not installed
set -uo pipefail
OUT=${OUT:-runs/remeasure}
THREADS=${THREADS:-2}
GUPPY=${GUPPY:-guppy}
mkdir -p "$OUT"

job() {  # job NAME COMMAND...: run it with THREADS threads, its log and wall time under $OUT
    local name=$1; shift
    local start=$SECONDS
    OMP_NUM_THREADS=${JOB_THREADS:-$THREADS} "$@" > "$OUT/$name.log" 2>&1
    echo "$name $((SECONDS - start))" >> "$OUT/times.txt"
}

for p in guppy cat plant kingyo; do job "data-$p" $GUPPY generate-data $p & done
wait
python3 tests/bench/shuffle_replies.py runs/guppy/data runs/guppy-shuffled-data

for p in guppy cat plant kingyo; do job "train-$p" $GUPPY train $p & done
job train-shuffled $GUPPY train guppy --data runs/guppy-shuffled-data --out runs/guppy-shuffled &
JOB_THREADS=$((2 * THREADS)) job train-small $GUPPY train guppy --preset small --out runs/guppy-small &
wait

for p in guppy cat plant kingyo; do job "eval-$p" $GUPPY eval $p --seeds 0,1,2 & done
job eval-shuffled $GUPPY eval guppy --run runs/guppy-shuffled --data runs/guppy/data --seeds 0,1,2 &
job eval-small $GUPPY eval guppy --run runs/guppy-small --seeds 0,1,2 &
wait
job compare $GUPPY compare guppy cat plant kingyo

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
times = dict(line.split() for line in (out / "times.txt").read_text().splitlines())
runs = {"guppy": "runs/guppy", "cat": "runs/cat", "plant": "runs/plant", "kingyo": "runs/kingyo",
        "small": "runs/guppy-small", "shuffled": "runs/guppy-shuffled"}
print("| run | train s | held-out | headline (seed 0) | persona median (range) | on-topic median (range) | novel median |")
print("|---|---|---|---|---|---|---|")
for name, run in runs.items():
    try:
        r = json.loads((Path(run) / "eval/report.json").read_text())
        best = min(json.loads(l).get("best_test_loss", 9e9) for l in (Path(run) / "metrics.jsonl").read_text().splitlines())
    except (OSError, ValueError) as e:
        print(f"| {name} | failed: {e} |"); continue
    s = r["over_seeds"]
    rng = lambda k: f"{s[k]['median']:.2f} ({s[k]['min']:.2f}-{s[k]['max']:.2f})" if k in s else "-"
    print(f"| {name} | {times.get('train-' + name, '?')} | {best:.3f} | {r['headline']} | {rng('persona_score')} | {rng('on_topic')} | {s['novel']['median']:.0%} |")
m = json.loads((Path("runs/compare/matrix.json")).read_text()) if Path("runs/compare/matrix.json").exists() else None
if m:
    print("\ncompare:", json.dumps(m["matrix"]), "margins", m["diagonal_margin"], "within noise", m["within_noise"])
PY
