#!/usr/bin/env bash
# Which pipeline stage changes bitwise with the CPU's code paths (issue 16)?
#   bash benchmarks/reproducibility.sh DATA [WORK]     (DATA: `tokenbound prepare` output)
# Emulates other CPUs on this one: ATEN_CPU_CAPABILITY (torch's vectorized kernels),
# ONEDNN_MAX_CPU_ISA (oneDNN), MKL_CBWR / MKL_ENABLE_INSTRUCTIONS (MKL), NPY_DISABLE_CPU_FEATURES
# (numpy's SIMD dispatch). Every variant trains its own tiny subspace model (30 steps); k-means
# (no QAT) and k-means + 10 QAT steps then run on the weights trained by "default", so each
# stage is compared on equal inputs. Prints sha256 prefixes (equal prefix = equal bytes).
set -euo pipefail
DATA=${1:?usage: reproducibility.sh DATA [WORK]}
WORK=${2:-/tmp/tb-repro}
TB="python -m tokenbound"
M="--n-layer 2 --d-model 64 --n-head 2 --context-len 64 --subspace-dim 4000"
T="--steps 30 --batch-size 8 --lr 0.05 --seq-len 64 --eval-interval 1000 --eval-batches 1"
C="--levels 17 --kmeans --batch-size 8 --eval-batches 1"
AVX2="ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
NPY="NPY_DISABLE_CPU_FEATURES=X86_V4,AVX512_ICL"
VARIANTS=(
  "default|OMP_NUM_THREADS=2"
  "default-again|OMP_NUM_THREADS=2"
  "1-thread|OMP_NUM_THREADS=1"
  "aten-avx2|OMP_NUM_THREADS=2 ATEN_CPU_CAPABILITY=avx2"
  "onednn-avx2|OMP_NUM_THREADS=2 ONEDNN_MAX_CPU_ISA=AVX2"
  "mkl-compatible|OMP_NUM_THREADS=2 MKL_CBWR=COMPATIBLE"
  "numpy-no-avx512|OMP_NUM_THREADS=2 $NPY"
  "all-avx2|OMP_NUM_THREADS=2 $AVX2 $NPY"
)
mkdir -p "$WORK"
h() { sha256sum "$1" | cut -c1-12; }
echo "| variant | trained weights | k-means message | k-means + 10 QAT steps message |"
echo "|---|---|---|---|"
for v in "${VARIANTS[@]}"; do
  name=${v%%|*}; envs=${v#*|}
  rm -rf "$WORK/run-$name"
  env $envs $TB train --data "$DATA" --out "$WORK/run-$name" $M $T --no-progress >/dev/null
  env $envs $TB compress "$WORK/run-default" $C --out "$WORK/km-$name.tbq" --json >/dev/null
  env $envs $TB compress "$WORK/run-default" $C --qat-steps 10 --qat-lr 0.01 \
    --out "$WORK/qat-$name.tbq" --json >/dev/null
  echo "| $name (\`$envs\`) | $(h "$WORK/run-$name/model.safetensors") | $(h "$WORK/km-$name.tbq") | $(h "$WORK/qat-$name.tbq") |"
done
