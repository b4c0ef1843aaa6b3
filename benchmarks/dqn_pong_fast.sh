#!/usr/bin/env bash
# Pong DQN, the pong-fast preset: how soon (wall clock, one core) DQN beats Pong's built-in AI.
# 40x40 playing field, the 2013 DQN net with a dueling head, Double DQN, 3-step returns,
# a gradient step every 2 agent steps; --sticky 0 makes ALE/Pong-v5 play like
# PongNoFrameskip-v4, the env of CleanRL's published curve. One torch thread, one learner
# thread (exact resume; the second core stays free).
#
# Resumable: rerun the same command after an interruption (or a reboot) and it continues from
# the run dir's latest checkpoint, replay buffer included (--checkpoint-replay: 100k transitions
# of 40x40 frames, ~160 MiB). Unattended:
#   setsid nohup benchmarks/dqn_pong_fast.sh > benchmarks/out/pong-fast.log 2>&1 < /dev/null &
# Curve: python benchmarks/plot_dqn_pong.py benchmarks/out/pong-fast
# Usage: benchmarks/dqn_pong_fast.sh [RUN_DIR] [TOTAL_STEPS] [SECONDS] [SEED] [EXTRA FLAGS...]
#   e.g. benchmarks/dqn_pong_fast.sh benchmarks/out/pong-fast-2t 3000000 3600 1 --learner-threads 2
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${1:-benchmarks/out/pong-fast}
TOTAL_STEPS=${2:-3000000}
SECONDS_LIMIT=${3:-172800}
SEED=${4:-1}
EXTRA=("${@:5}")
PYTHON=${PYTHON:-.venv/bin/python}
CKPT="$RUN_DIR/checkpoints/latest.pt"
RESUME=()
[[ -f "$CKPT" ]] && RESUME=(--resume "$CKPT")
lscpu | grep -E "Model name" || true
export OMP_NUM_THREADS=1
# timeout sends SIGINT: the run writes a checkpoint and summary.json before it exits.
timeout --signal=INT "$SECONDS_LIMIT" "$PYTHON" -m dirtyrl.cli train dqn --env pong --preset pong-fast --sticky 0 \
  --seed "$SEED" --threads 1 --total-steps "$TOTAL_STEPS" --checkpoint-replay \
  --checkpoint-every 2500 --target-return 18 --progress on --run-dir "$RUN_DIR" "${RESUME[@]}" "${EXTRA[@]}" \
  || [[ $? -eq 124 || $? -eq 130 ]]
