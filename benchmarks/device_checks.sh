#!/usr/bin/env bash
# The GPU code path of each stage, short runs side by side (a core each from CORES, e.g. 8-15): every check prints
# PASS or FAIL and its last line, and a failure does not stop the others.
#
#   bash benchmarks/device_checks.sh DEVICE [CORES]     # DEVICE: cuda on a GPU machine (cpu: try the script here)
set -u
DEVICE=${1:?usage: device_checks.sh DEVICE [CORES]}
CORES=${2:-}
RUNS=/tmp/runs/checks && rm -rf $RUNS && mkdir -p $RUNS
CHEETAH=src/policykd/resources/agents/halfcheetah-sac-v5
S="--device $DEVICE --quiet --eval-episodes 2"
declare -A CHECK=(
  [cartpole-rl-kick]="distill --env CartPole-v1 --steps 4000 --rl-steps 2048 --rl-eval-every 1024 $S"
  [cartpole-prune]="distill --env CartPole-v1 --steps 4000 --prune-to 0.05 $S"
  [cartpole-views]="distill --env CartPole-v1 --steps 4000 --student-obs mask=0,2 --student-obs noise=0.01 --student-obs history=2 $S"
  [cartpole-recurrent]="distill --env CartPole-v1 --steps 4000 --student-obs mask=0,2 --student-algo recurrent-ppo $S"
  [multitask]="distill --env HalfCheetah-v5 --env Hopper-v5 --steps 3000 $S"
  [cheetah-sac-hints-rl]="distill --env HalfCheetah-v5 --steps 3000 --hint-weight 1 --rl-steps 1000 $S"
  [cheetah-ensemble-confidence]="distill --env HalfCheetah-v5 --teacher $CHEETAH --teacher $CHEETAH --teacher-weighting confidence --steps 3000 $S"
  [cheetah-td3-student]="distill --env HalfCheetah-v5 --steps 3000 --student-algo td3 --loss mse_action --augment fgsm=0.01 $S"
)
i=0
for name in "${!CHECK[@]}"; do
  pin=""
  if [ -n "$CORES" ]; then pin="taskset -c $(( ${CORES%-*} + i ))"; fi
  ( $pin policykd ${CHECK[$name]} --out $RUNS/$name >$RUNS/$name.log 2>&1 && echo "PASS $name" || echo "FAIL $name: $(grep -v '^\s*$' $RUNS/$name.log | tail -1)" ) &
  i=$(( i + 1 ))
done
wait
# The CartPole student of a GPU run, evaluated on the GPU under an FGSM attack.
policykd evaluate --env CartPole-v1 --model $RUNS/cartpole-prune/student.zip --device $DEVICE --perturb fgsm=0.01 --episodes 4 >$RUNS/fgsm.log 2>&1 \
  && echo "PASS evaluate-fgsm" || echo "FAIL evaluate-fgsm: $(tail -1 $RUNS/fgsm.log)"
for name in "${!CHECK[@]}"; do
  python3 -c "import json; s = json.load(open('$RUNS/$name/summary.json')); print('$name', s.get('device'), s.get('student_return_mean'))" 2>/dev/null
done
