#!/usr/bin/env bash
# Set up a fresh machine: Debian's Fashion-MNIST and chromium (for the browser tests), a virtual
# environment at .venv with the pinned torch/torchvision builds, and this package with its dev
# tools and the export extra (ONNX). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
FMNIST=/usr/share/datasets/fashion-mnist

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    echo "setup: installing Debian's dataset-fashion-mnist"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# Debian's browser and its driver for the real-browser tests (tests/browser): nothing downloads a
# browser of its own. Not fatal: without them those tests are skipped, saying why.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "setup: installing Debian's chromium and chromium-driver"
    { $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
            >/dev/null; } ||
        echo "setup: warning: chromium could not be installed; the browser tests will be skipped"
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Exact pins: these builds are on this machine's disk; nothing may pull another torch.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# The torch pins are repeated so that no extra (onnxscript pulls onnx, not torch) may move them.
.venv/bin/python -m pip install -q -e ".[dev,export]" "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python - <<'PY'
import torch, torchvision
assert torch.__version__.startswith("2.14.1"), torch.__version__
assert torchvision.__version__.startswith("0.29.1"), torchvision.__version__
PY
touch .venv/.automl-installed
echo "setup: done (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
