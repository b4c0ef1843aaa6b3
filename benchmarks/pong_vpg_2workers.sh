#!/usr/bin/env bash
# Flagship (issue 4): Pong VPG with 2 workers on torch.distributed until the mean of the last
# 20 episode returns passes 0 (--target-return 0 --stop-when-solved). Karpathy's setup
# otherwise: batch of 10 episodes per update (5 per worker), RMSprop 1e-3, one thread a worker.
#
# Resumable: rerun the same command after an interruption (Ctrl-C, a time limit, a reboot) and
# it continues from RUN_DIR/checkpoints/latest.pt when that exists (--resume auto); the episode
# sequence, EMA and counters carry on as if it had never stopped.
#
# Usage: benchmarks/pong_vpg_2workers.sh [RUN_DIR] [SECONDS]
#   RUN_DIR  default benchmarks/out/pong-vpg-2workers (ignored by git)
#   SECONDS  stop after this long with a checkpoint (SIGINT reaches both workers through the
#            launcher; rank 0 writes latest.pt and summary.json); default 0 = until solved.
# Watch:  tensorboard --logdir RUN_DIR/tb     Result: RUN_DIR/summary.json (solved_at_env_step).
set -euo pipefail
RUN_DIR=${1:-benchmarks/out/pong-vpg-2workers}
SECONDS_LIMIT=${2:-0}
PYTHON=${PYTHON:-python}

cmd=("$PYTHON" -m dirtyrl train vpg --env pong --workers 2 --seed 1
  --target-return 0 --stop-when-solved --total-steps 100000000 --checkpoint-every 20
  --progress on --run-dir "$RUN_DIR" --resume auto)
echo "$(date -Is) ${cmd[*]}" >&2

if ((SECONDS_LIMIT > 0)); then
  status=0
  timeout --signal=INT "$SECONDS_LIMIT" "${cmd[@]}" || status=$?
  # 124: the time limit (checkpoint written); 130: interrupted by hand (checkpoint written).
  [[ $status -eq 0 || $status -eq 124 || $status -eq 130 ]] || exit "$status"
else
  exec "${cmd[@]}"
fi
