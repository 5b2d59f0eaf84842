#!/usr/bin/env bash
# The checks only a CUDA machine can run, in one go: the MuJoCo Warp backend against native MuJoCo
# on the GPU, every entry point with its tensors on the GPU, and the GPU throughput figures.
#
#   bash scripts/gpu_check.sh OUT_DIR [STEP ...]      (from the repository root; default: all steps)
#
# Steps (each logs to OUT_DIR/<step>.log and never stops the others; OUT_DIR/summary.tsv gets a
# line per step with its exit status and seconds, and the script exits non-zero if any step failed):
#   parity      tests/test_warp_parity.py on CUDA (and on Warp's CPU device where Warp has clang)
#   main        the main job (collect, train, evaluate) with the networks on the GPU
#   diffusion   the UNet diffusion policy trained on the GPU on the main job's demos
#   rl_reach    robolearn-rl from scratch, sim=warp: physics, rollouts and PPO all on the GPU
#   rl_curricula  lift_flat with the privileged-action curriculum and an ALP-GMM domain teacher
#   rl_ads      stack with ADS (OT rewards from observation-only demos), on sim=warp
#   sim_bench   scripts/bench/sim_throughput.py --backend warp (-> RUNS/sim_bench.json)
#   rl_bench    scripts/bench/rl_throughput.py --backend warp (-> RUNS/rl_bench.json)
# Needs robolearn with the `warp` extra (parity, rl_*, *_bench) and a GPU that torch sees.
# Environment: RUNS (default OUT_DIR/runs) holds runs, datasets and the benchmarks' JSON; PYTHON
# (default python3) is the interpreter; STEP_TIMEOUT (seconds, default none) interrupts each command
# of a step that runs longer (SIGINT: a training run saves its checkpoint). A dry run of the script
# itself on a machine without a GPU: DEVICE=cpu SCALE=64 (worlds, env steps and demos / SCALE).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash scripts/gpu_check.sh OUT_DIR [STEP ...]}
shift
ALL=(parity main diffusion rl_reach rl_curricula rl_ads sim_bench rl_bench)
STEPS=("${@:-${ALL[@]}}")
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
RUNS=${RUNS:-$OUT/runs}
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1
RL=(-m robolearn.cli.rl sim=warp sim.device="$DEVICE" progress=false logger=none)
RL+=(eval.num_episodes=$((100 / SCALE + 2)) eval.num_envs=$((50 / SCALE + 2)))
s() { echo $(($1 / SCALE)); } # a size, scaled down for a dry run
py() {                        # the interpreter, under STEP_TIMEOUT when set
  if ((${STEP_TIMEOUT:-0} > 0)); then
    timeout --signal=INT --kill-after=20 "$STEP_TIMEOUT" "${PYTHON:-python3}" "$@"
  else
    "${PYTHON:-python3}" "$@"
  fi
}

parity() { py -m pytest -q -rs tests/test_warp_parity.py; }
main() {
  py -m robolearn.cli.main device="$DEVICE" eval.video=false logger=none \
    collect.progress=false train.progress=false eval.progress=false \
    collect.num_episodes="$(s 100)" train.steps="$(s 5000)" eval.num_episodes="$(s 100)" \
    dataset="$RUNS/lift.hdf5" hydra.run.dir="$RUNS/main"
}
diffusion() {
  py -m robolearn.cli.train policy=diffusion device="$DEVICE" dataset="$RUNS/lift.hdf5" \
    train.steps="$(s 500)" train.progress=false logger=none hydra.run.dir="$RUNS/diffusion"
}
rl_reach() {
  py "${RL[@]}" task=reach num_envs="$(s 1024)" total_env_steps="$(s 1000000)" \
    hydra.run.dir="$RUNS/rl_reach"
}
rl_curricula() {
  py "${RL[@]}" task=lift_flat num_envs="$(s 1024)" total_env_steps="$(s 500000)" \
    "curriculum=[privileged,alp_gmm]" "+task.domain.object_friction=[0.5,1.5]" \
    hydra.run.dir="$RUNS/rl_curricula"
}
rl_ads() {
  py -m robolearn.cli.collect task=stack num_episodes=4 num_envs=4 progress=false \
    output="$RUNS/stack.hdf5" overwrite=true +task.terminate_on_success=false task.episode_length=60 \
    hydra.run.dir="$RUNS/collect_stack" &&
    py "${RL[@]}" task=stack num_envs="$(s 512)" total_env_steps="$(s 300000)" curriculum=ads \
      curriculum.ads.dataset="$RUNS/stack.hdf5" curriculum.ads.features=euclidean \
      "curriculum.ads.obs_keys=[cube_a_to_eef,cube_a_to_cube_b,gripper_qpos]" \
      task.terminate_on_success=false task.episode_length=60 rl.num_steps=60 \
      hydra.run.dir="$RUNS/rl_ads"
}
sim_bench() {
  py scripts/bench/sim_throughput.py --backend warp --device "$DEVICE" --task lift \
    --num-envs "$(s 1024)" "$(s 4096)" "$(s 16384)" --seconds 1 --repeats 3 \
    --memory-num-envs "$(s 4096)" --json-out "$RUNS/sim_bench.json"
}
rl_bench() {
  py scripts/bench/rl_throughput.py --backend warp --device "$DEVICE" --task lift \
    --num-envs "$(s 4096)" --json-out "$RUNS/rl_bench.json"
}

failed=0
[[ -f $OUT/summary.tsv ]] || printf 'step\texit\tseconds\n' >"$OUT/summary.tsv"
for step in "${STEPS[@]}"; do
  if ! declare -F "$step" >/dev/null || [[ " ${ALL[*]} " != *" $step "* ]]; then
    echo "gpu_check: unknown step '$step'; steps: ${ALL[*]}" >&2
    exit 2
  fi
  echo "== $step" >&2
  start=$SECONDS
  "$step" >"$OUT/$step.log" 2>&1
  status=$?
  printf '%s\t%s\t%s\n' "$step" "$status" "$((SECONDS - start))" | tee -a "$OUT/summary.tsv" >&2
  if ((status != 0)); then
    failed=1
    tail -n 25 "$OUT/$step.log" >&2
  fi
done
exit $failed
