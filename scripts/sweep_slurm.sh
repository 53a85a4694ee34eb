#!/usr/bin/env bash
# A study grid on a Slurm cluster: one array job per cell through hydra-submitit-launcher
# (pip install 'xorder[slurm]'). Run this on a login node that has internet.
set -euo pipefail

SHARED=${SHARED:-/shared/$USER/xorder}          # a filesystem every node sees
export HF_HOME=$SHARED/hf                        # models and datasets downloaded by `xorder prepare`
COMMON=(cache_dir=$SHARED/cache results_dir=$SHARED/results)

# 1. fetch everything the grid reads, and check that it loads with the network off
xorder prepare -m experiment=grid_pawsx "${COMMON[@]}"

# 2. compute nodes run offline; cells that share a stage wait for each other through the shared cache
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
xorder run -m experiment=grid_pawsx "${COMMON[@]}" \
  hydra/launcher=slurm \
  hydra.launcher.partition=${PARTITION:-gpu} \
  hydra.launcher.gpus_per_node=1 \
  hydra.launcher.timeout_min=1440 \
  hydra.launcher.array_parallelism=16

# 3. while it runs, or after a node was lost: see what is left, then run the same command again
xorder status -m experiment=grid_pawsx "${COMMON[@]}" || true   # exits 1 while cells are missing
xorder report --results "$SHARED/results"
