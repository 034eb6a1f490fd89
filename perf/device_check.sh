#!/usr/bin/env bash
# Accelerator check in one command, one JSON (see perf/device_check.py for what it measures):
#   perf/device_check.sh [OUT.json]            on a GPU/TPU host with jax installed (< 8 minutes)
#   perf/device_check.sh OUT.json --smoke      CPU smoke mode: interpret-mode Pallas, tiny shapes (< 1 minute)
# Needs only jax/flax/optax/orbax (no TensorFlow, SeqIO or gin). Extra arguments go to device_check.py.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-device_check.json}"
[ $# -gt 0 ] && shift
case " $* " in
  *" --smoke "*) export JAX_PLATFORMS=cpu
                # CPU smoke: no LLVM optimisation (compiles ~35% faster; tiny shapes run fast anyway)
                export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0" ;;
esac
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# 470 s hard stop (the script budgets itself to 450 s and writes its JSON after every section).
exec timeout 470 python "$repo/perf/device_check.py" --out "$out" "$@"
