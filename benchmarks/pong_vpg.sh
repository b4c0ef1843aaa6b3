#!/usr/bin/env bash
# Pong VPG learning run (issue 2 benchmark): Karpathy's setup, one process, one core.
# Resumable: rerun the same command after an interruption and it continues from the last
# checkpoint. Usage: benchmarks/pong_vpg.sh [RUN_DIR] [SECONDS]
set -euo pipefail
RUN_DIR=${1:-benchmarks/out/pong-vpg}
SECONDS_LIMIT=${2:-3900}
CKPT="$RUN_DIR/checkpoints/latest.pt"
RESUME=()
[[ -f "$CKPT" ]] && RESUME=(--resume "$CKPT")
# timeout sends SIGINT: the run writes a checkpoint and summary.json before it exits.
timeout --signal=INT "$SECONDS_LIMIT" dirtyrl train vpg --env pong --seed 1 --threads 1 \
  --target-return 0 --stop-when-solved --total-steps 100000000 --checkpoint-every 20 \
  --progress on --run-dir "$RUN_DIR" "${RESUME[@]}" || [[ $? -eq 124 || $? -eq 130 ]]
