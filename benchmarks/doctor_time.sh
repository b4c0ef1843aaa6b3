#!/usr/bin/env bash
# Time `dirtyrl doctor --algo all` on one core (the issue's budget: 60 s).
# Usage: benchmarks/doctor_time.sh [core]   (default core 1)
set -euo pipefail
cd "$(dirname "$0")/.."
lscpu | grep -E "Model name|^CPU\(s\)"
lscpu | grep -o -w -E "avx2|avx512f|avx512_bf16|amx_bf16" | sort -u | tr '\n' ' '; echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 /usr/bin/time -f "wall %e s, user %U s, sys %S s" \
    taskset -c "${1:-1}" .venv/bin/dirtyrl doctor --algo all | tail -4
