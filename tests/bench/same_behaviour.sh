#!/usr/bin/env bash
# Does a refactor change behaviour? Run the same small job on two checkouts and compare:
# the generated dataset's Arrow files byte for byte, and the loss curve of a micro training run
# (every logged loss and learning rate; timing fields left out).
#   tests/bench/same_behaviour.sh OLD_CHECKOUT NEW_CHECKOUT [WORK_FOLDER]
# e.g. OLD = `git worktree add /tmp/old <commit-before>`, NEW = this checkout.
set -euo pipefail
old="$(cd "$1" && pwd)"; new="$(cd "$2" && pwd)"; work="${3:-$(mktemp -d)}"
export OMP_NUM_THREADS=1
run() {  # checkout, output folder
    local out="$2"; rm -rf "$out"; mkdir -p "$out"
    (cd "$1" && python cli.py generate-data guppy --n 3000 --seed 3 --out "$out/data" --num-proc 1 >/dev/null &&
     python cli.py train guppy --data "$out/data" --out "$out/run" --max-steps 40 --eval-every 20 --log-every 2 \
        --batch-size 8 --n-layer 1 --d-model 64 --n-head 2 --d-ff 128 --vocab-size 400 >/dev/null)
    python - "$out" > "$out/summary.txt" <<'PY'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
for p in sorted((out / "data").rglob("*.arrow")):
    print(p.relative_to(out), hashlib.sha256(p.read_bytes()).hexdigest())
for r in map(json.loads, open(out / "run" / "metrics.jsonl")):
    print(r["kind"], r["step"], r.get("loss", r.get("test_loss")), r.get("lr", ""))
PY
}
run "$old" "$work/old"
run "$new" "$work/new"
diff "$work/old/summary.txt" "$work/new/summary.txt" && echo "same dataset bytes and loss curve ($(wc -l < "$work/new/summary.txt") lines)"
