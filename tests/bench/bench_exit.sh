#!/usr/bin/env bash
# What leaving a process that used CUDA costs (issue 26: `guppy train` spent 0.9 s between its last atexit
# handler and its exit on an H200 machine). Each way 3 times, whole process timed from outside:
#   normal    the interpreter's own exit: module teardown, then CUDA's and the C++ runtime's
#   fast      atexit handlers, then os._exit: no teardown (the driver frees the context as the process ends)
set -uo pipefail
WORK="import torch, torch._dynamo; x = torch.randn(4096, 4096, device='cuda'); (x @ x).sum().item()"
for round in 1 2 3; do
    for way in normal fast; do
        end=""; [ "$way" = fast ] && end="; import atexit, os, sys; sys.stdout.flush(); atexit._run_exitfuncs(); os._exit(0)"
        t0=$EPOCHREALTIME
        python3 -c "$WORK; import time; print(time.time())$end" > /tmp/exit-$way.txt
        python3 - "$t0" "$EPOCHREALTIME" "$(cat /tmp/exit-$way.txt)" "$way" <<'PY'
import sys
t0, t1, last, way = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"{way:7s} whole {t1 - t0:5.2f} s, of it exiting {t1 - last:5.2f} s")
PY
    done
done
