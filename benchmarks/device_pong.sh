#!/usr/bin/env bash
# Issue 33's `--device` row, on a GPU machine lent through this workplace's device tool (16 cores, one GPU):
# the default Pong run with the GPU (`--device auto` picks it) beside the same run on the CPU, each pinned to two
# cores with two torch threads (this project's machines have two), the reference speed of the same machine first
# (benchmarks/pong.py's env_steps_per_second, alone on one core), then the GPU run's student on the 50 held-out
# games (`evaluate --episodes 50 --seed 20000`), and checks of the GPU code path on CartPole: summary's device, the
# student loading on a CPU in a fresh process without policykd, a run killed with -9 on the GPU resumed on the CPU.
#
#   bash benchmarks/device_pong.sh OUT [WHEELS]
#
# Then benchmarks/device_checks.sh (every stage's GPU path). WHEELS: a folder of wheels to install first (the packages the GPU machine's image lacks); OUT gets the summaries,
# the held-out returns and a log.
set -u
OUT=${1:?usage: device_pong.sh OUT [WHEELS]}
WHEELS=${2:-}
mkdir -p "$OUT"
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -c "import sys; sys.argv[0] = \\"policykd\\"; from policykd.cli.main import main; main()" "$@"\n' >/tmp/bin/policykd
chmod +x /tmp/bin/policykd && export PATH=/tmp/bin:$PATH
RUNS=/tmp/runs && rm -rf $RUNS && mkdir -p $RUNS

# Fail fast: imports, the GPU, a tiny run on it.
nproc; nvidia-smi -L || true
python3 -c "import torch, stable_baselines3, ale_py, gymnasium, policykd.api; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" || exit 1
timeout 120 policykd distill --env CartPole-v1 --device cuda --out $RUNS/cp-cuda --quiet || exit 1
python3 -c "import json; s = json.load(open('$RUNS/cp-cuda/summary.json')); print('cartpole on', s.get('device'), s['teacher_return_mean'], s['student_return_mean'])"
python3 - <<EOF || exit 1
import sys
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.env_util import make_vec_env
model = PPO.load("$RUNS/cp-cuda/student.zip", device="cpu")
print("plain SB3 on cpu, no policykd imported:", "policykd" not in sys.modules, evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=0), n_eval_episodes=5))
EOF

# Every stage's GPU path, short runs side by side on cores 8-15.
bash benchmarks/device_checks.sh cuda 8-15 | tee $OUT/checks.txt

# The reference, alone on one core.
taskset -c 15 python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from pong import env_steps_per_second; print('reference', env_steps_per_second())" | tee $OUT/reference.txt

run() {  # name cores device: the default command, its peak RSS and wall-clock from Python's rusage
  local name=$1 cores=$2 device=$3
  taskset -c "$cores" python3 - "$name" "$device" <<'EOF'
import json, resource, subprocess, sys, time
name, device = sys.argv[1], sys.argv[2]
cmd = ["policykd", "distill", "--env", "ALE/Pong-v5", "--torch-threads", "2", "--out", f"/tmp/runs/{name}"]  # progress in the log
cmd += ["--device", device] if device != "auto" else []
start = time.time()
done = subprocess.run(cmd)
wall = time.time() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
s = json.load(open(f"/tmp/runs/{name}/summary.json")) if done.returncode == 0 else {}
print(json.dumps({"name": name, "command": " ".join(cmd), "rc": done.returncode, "wall_seconds": wall, "peak_rss_gb": peak,
                  **{k: s.get(k) for k in ("device", "teacher_return_mean", "student_return_mean", "seconds_by_phase",
                                           "teacher_returns_source", "student_params", "wall_seconds")}}))
EOF
}

( timeout -s INT 400 bash -c "$(declare -f run); run pong-cpu 2,3 cpu" >$OUT/pong-cpu.json 2>$OUT/pong-cpu.log ) &
CPU=$!
run pong-gpu 0,1 auto >$OUT/pong-gpu.json 2>$OUT/pong-gpu.log
cat $OUT/pong-gpu.json

# The GPU run's student on the 50 held-out games (the benchmark's seeds), on the GPU, four cores.
taskset -c 0,1,4,5 policykd evaluate --env ALE/Pong-v5 --model $RUNS/pong-gpu/student.zip --episodes 50 --seed 20000 --json >$OUT/pong-gpu-heldout.json
python3 -c "import json; m = json.load(open('$OUT/pong-gpu-heldout.json'))['model']; print('held-out', m['return_mean'], m['return_std'], len(m['returns']))"

# A run killed with -9 on the GPU (after its first checkpoint) resumes on the CPU.
KILL="policykd distill --env CartPole-v1 --steps 30000 --rounds 6 --out $RUNS/cp-kill --quiet"
taskset -c 6,7 $KILL --device cuda & PID=$!
until python3 -c "import sys; from pathlib import Path; from policykd.run.checkpoint import checkpoint_folder; sys.exit(checkpoint_folder(Path('$RUNS/cp-kill')) is None)" || ! kill -0 $PID 2>/dev/null; do sleep 0.5; done
kill -9 $PID; wait $PID; echo "killed: rc $?"
taskset -c 6,7 $KILL --device cpu --resume && python3 -c "import json; s = json.load(open('$RUNS/cp-kill/summary.json')); print('resumed on', s.get('device'), s['student_return_mean'], s.get('seconds_by_phase'))"

wait $CPU; cat $OUT/pong-cpu.json; tail -3 $OUT/pong-cpu.log
