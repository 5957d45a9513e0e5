#!/usr/bin/env bash
# Train Table 1's model zoo (README, "Table 1 model zoo"), one run after the other, each resumed
# from its state file when it has one (saved after every epoch and every 10 minutes within one), so
# that the same command goes on after any stop:
#
#     mkdir -p runs/zoo && nohup bash scripts/train_zoo.sh runs/zoo > runs/zoo/queue.out 2>&1 &
#
# Every CapsNet gets the same budget (10 epochs of the default recipe, seed 0); the baseline CNN
# gets 3, since one of its epochs costs 4-5 CapsNet epochs here (README, Table 1). A finished
# run leaves a `done` file and is skipped, and so is a model already shipped in checkpoints/. Each run logs to <runs>/<name>.log, the queue to <runs>/queue.log.
# Ship a finished run with scripts/ship_checkpoint.py (the commands are in the README).
set -uo pipefail
runs=${1:-$HOME/capsules-runs/zoo}
cd "$(dirname "$0")/.."
mkdir -p "$runs"
export PYTHONUNBUFFERED=1

run() {  # name, the shipped checkpoint's name, then the run's options (a later --epochs wins)
  local name=$1 shipped=$2 out="$runs/$1" extra=()
  shift 2
  [ -f "$out/done" ] && return 0
  [ -f "checkpoints/$shipped.json" ] && return 0
  [ -f "$out/state.safetensors" ] && extra=(--resume)
  echo "$(date -Is) start $name ${extra[*]}" >> "$runs/queue.log"
  if python -m capsules.train --out "$out" --epochs 10 "$@" "${extra[@]}" >> "$runs/$name.log" 2>&1; then
    touch "$out/done"
    echo "$(date -Is) done $name" >> "$runs/queue.log"
  else
    echo "$(date -Is) stopped $name (exit $?): run this script again to resume" >> "$runs/queue.log"
    exit 1
  fi
}

run r1 capsnet-mnist-r1 --iterations 1 --reconstruction-weight 0.0005
run r1-norecon capsnet-mnist-r1-norecon --iterations 1 --reconstruction-weight 0
run r3-norecon capsnet-mnist-r3-norecon --iterations 3 --reconstruction-weight 0
run r3 capsnet-mnist-r3 --iterations 3 --reconstruction-weight 0.0005
run cnn cnn-mnist --model cnn --epochs 3
