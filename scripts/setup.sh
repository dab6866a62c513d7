# Sourced by scripts/demo and scripts/test: installs what is missing and sets the build up.
# - libtorch comes from PyPI's torch==2.11.0 (the version tch 0.24 binds), installed only when
#   the Python at hand lacks it; cargo finds it through LIBTORCH_USE_PYTORCH=1.
# - The CUDA/NCCL header packages the trainer's NCCL group compiles against (when torch has CUDA).
# - With `--test`, also the Python packages of the interoperability tests (transformers, pyarrow,
#   safetensors, pytest, tensorboard).
# The binaries carry an rpath to torch's lib folder, so they run without LD_LIBRARY_PATH.
set -euo pipefail
export PYTHON="${PYTHON:-python3}"
export LIBTORCH_USE_PYTORCH=1
# libtorch's OpenMP threads spin while waiting by default; on a small or busy CPU that makes
# multi-threaded runs many times slower (measured: trainer 7-60 -> 500-700 seq/s on 2 cores).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if ! "$PYTHON" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.11.0")' 2>/dev/null; then
  echo "setup: installing torch==2.11.0 from PyPI into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'torch==2.11.0'
fi

# The trainer's C++ extension compiles its NCCL process group against the CUDA and NCCL headers
# of torch's nvidia-* dependencies; two header packages are not among them. Without them (or
# offline) the build still succeeds, with Gloo only ("built without NCCL" at run time).
NVIDIA_DIR="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia"))')"
if [ -f "$NVIDIA_DIR/nccl/include/nccl.h" ] && [ ! -f "$NVIDIA_DIR/cu13/include/crt/host_config.h" ]; then
  echo "setup: installing nvidia-cuda-crt and nvidia-cuda-cccl (headers for the trainer's NCCL group)" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'nvidia-cuda-crt==13.0.88' 'nvidia-cuda-cccl==13.0.85' \
    || echo "setup: could not install them; the trainer builds without NCCL" >&2
fi

if [ "${1:-}" = "--test" ]; then
  if ! "$PYTHON" -c 'import transformers, pyarrow, safetensors, pytest, tensorboard, sklearn' 2>/dev/null; then
    echo "setup: installing the test requirements (scripts/requirements-test.txt)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is required (https://rustup.rs)" >&2
  exit 1
fi
