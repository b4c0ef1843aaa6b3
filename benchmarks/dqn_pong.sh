#!/usr/bin/env bash
# Pong DQN learning run (issue 3 benchmark): CleanRL's dqn_atari.py settings (the pong preset),
# Nature CNN, 1M-transition replay, both cores (--learner-threads 2).
# Resumable: rerun the same command after an interruption and it continues from the last
# checkpoint, replay buffer included (--checkpoint-replay; ~6.6 GiB on disk when full, written
# incrementally). Usage: benchmarks/dqn_pong.sh [RUN_DIR] [TOTAL_STEPS] [SECONDS]
set -euo pipefail
RUN_DIR=${1:-benchmarks/out/pong-dqn}
TOTAL_STEPS=${2:-2000000}
SECONDS_LIMIT=${3:-86400}
CKPT="$RUN_DIR/checkpoints/latest.pt"
RESUME=()
[[ -f "$CKPT" ]] && RESUME=(--resume "$CKPT")
# timeout sends SIGINT: the run writes a checkpoint and summary.json before it exits.
timeout --signal=INT "$SECONDS_LIMIT" dirtyrl train dqn --env pong --seed 1 --threads 1 --learner-threads 2 \
  --total-steps "$TOTAL_STEPS" --checkpoint-replay --checkpoint-every 2500 --target-return 18 \
  --progress on --run-dir "$RUN_DIR" "${RESUME[@]}" || [[ $? -eq 124 || $? -eq 130 ]]
