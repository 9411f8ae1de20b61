#!/usr/bin/env bash
# Full-length offline trainings of every model on one CUDA machine, run side by side, detached.
#
#   bench/gpu_full_runs.sh start WORKDIR BUDGET_S   # copy the repo to WORKDIR/src, start all jobs
#   bench/gpu_full_runs.sh wait WORKDIR MAX_S TGZ   # wait (≤ MAX_S) for them, print logs, pack results
#   bench/gpu_full_runs.sh list WORKDIR [BUDGET_S]  # the jobs and their commands
#
# Each job is the CLI's own `eval ... --record docs/results` (run through `python -m
# workers.cli.models`, which imports only `models`, so a machine with torch + PyG and no
# streaming stack runs it). BUDGET_S caps the training seconds of the time-budgeted models
# (lightgcn, ngcf, srgnn): each report states the epochs it actually ran. The jobs run in their
# own process sessions so they outlive the shell that started them. Data: $GNNREC_SHARED_DATA.
# GNNREC_GPU_JOBS="name ..." runs only those jobs. Measured on one H100 with all six at once:
# the SR-GNN jobs (many small kernels per batch) ran 150-350 s/epoch because the GPU
# time-slices between processes; run them alone (or under CUDA MPS) for their full 30 epochs.
set -euo pipefail
cmd=$1 work=$2

jobs() {  # name|command
  all_jobs "$@" | while IFS='|' read -r name command; do
    if [[ -z "${GNNREC_GPU_JOBS:-}" || " $GNNREC_GPU_JOBS " == *" $name "* ]]; then echo "$name|$command"; fi
  done
}

all_jobs() {  # name|command
  local b=$1 e="python3 -m workers.cli.models eval --device cuda --no-progress --json --record docs/results"
  echo "srgnn-diginetica|$e --model srgnn --dataset diginetica --max-train-seconds $b"
  echo "srgnn-yoochoose64|$e --model srgnn --dataset yoochoose64 --max-train-seconds $b"
  echo "lightgcn-gowalla|$e --model lightgcn --dataset gowalla --max-train-seconds $b"
  echo "ngcf-gowalla|$e --model ngcf --dataset gowalla --max-train-seconds $b"
  echo "social-delicious|$e --model social --dataset delicious"
  echo "social-nofriends-delicious|python3 bench/social_nofriends.py --device cuda --record docs/results"
}

case $cmd in
list) jobs "${3:-1200}" ;;
start)
  budget=$3
  mkdir -p "$work/logs"
  rm -rf "$work/src" && mkdir -p "$work/src"
  tar --exclude=./.venv --exclude=./.git --exclude=./checkpoints -cf - . | tar -xf - -C "$work/src"
  rm -f "$work"/src/docs/results/*.json
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, 'cuda', torch.cuda.is_available())"
    nproc; } > "$work/logs/machine.txt" 2>&1
  cat "$work/logs/machine.txt"
  jobs "$budget" | while IFS='|' read -r name command; do
    (cd "$work/src" && GNNREC_THREADS=2 PYTHONUNBUFFERED=1 setsid nohup bash -c \
      "echo \"\$(date -u +%FT%TZ) start: $name\"; $command; echo \$? > '$work/logs/$name.rc'" \
      > "$work/logs/$name.log" 2>&1 < /dev/null &)
    echo "started $name"
  done
  ;;
wait)
  max=$3 tgz=$4 waited=0
  names=$(jobs 0 | cut -d'|' -f1)
  while (( waited < max )); do
    left=0
    for n in $names; do [[ -f "$work/logs/$n.rc" ]] || left=$((left + 1)); done
    (( left == 0 )) && break
    sleep 10; waited=$((waited + 10))
  done
  for n in $names; do
    rc=$(cat "$work/logs/$n.rc" 2>/dev/null || echo running)
    echo "== $n: $rc"; tail -c 1500 "$work/logs/$n.log" | tail -n 6
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
  tar -czf "$tgz" -C "$work" logs $(cd "$work" && ls src/docs/results/*.json 2>/dev/null)
  ;;
*) echo "usage: $0 start WORKDIR BUDGET_S | wait WORKDIR MAX_S TGZ | list WORKDIR [BUDGET_S]" >&2; exit 2 ;;
esac
