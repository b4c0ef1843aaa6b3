#!/usr/bin/env bash
# Pong VPG with the batch's 10 episodes side by side (--num-envs 10) on both
# cores: the seed's setup otherwise (benchmarks/pong_vpg.sh), until the mean of the last 20
# returns reaches 0. Resumable: rerun the same command after an interruption and it continues
# from the run dir's checkpoint. Unattended:
#   setsid nohup benchmarks/pong_vpg_num_envs.sh > benchmarks/out/pong-vpg-envs.log 2>&1 < /dev/null &
# Usage: benchmarks/pong_vpg_num_envs.sh [RUN_DIR] [SECONDS] [VECTOR_ENV]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${1:-benchmarks/out/pong-vpg-envs}
SECONDS_LIMIT=${2:-7200}
VECTOR_ENV=${3:-procs}
PYTHON=${PYTHON:-.venv/bin/python}
CKPT="$RUN_DIR/checkpoints/latest.pt"
RESUME=()
[[ -f "$CKPT" ]] && RESUME=(--resume "$CKPT")
lscpu | grep -E "Model name" || true
export OMP_NUM_THREADS=1
# timeout sends SIGINT: the run writes a checkpoint and summary.json before it exits.
timeout --signal=INT "$SECONDS_LIMIT" "$PYTHON" -m dirtyrl.cli train vpg --env pong --seed 1 --threads 1 \
  --num-envs 10 --vector-env "$VECTOR_ENV" --target-return 0 --stop-when-solved --total-steps 100000000 \
  --checkpoint-every 20 --progress on --run-dir "$RUN_DIR" "${RESUME[@]}" || [[ $? -eq 124 || $? -eq 130 ]]
