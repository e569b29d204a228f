#!/usr/bin/env bash
# The project's test command (README): installs what the tests need and runs them.
# - Debian packages pip cannot provide (cross compiler, newlib, QEMU, Fashion-MNIST)
#   are installed with apt-get when missing and we are root; tests that need them
#   skip with a one-line reason only where they cannot be installed (never in CI).
# - the package itself with its test extras (pip, builds the C kernels).
# Extra arguments go to pytest, e.g. `bash ci/test.sh -k oracle`.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist"
missing=""
for p in $DEB_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "ci/test.sh: installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "ci/test.sh: not root or no apt-get; missing:$missing (tests that need them will skip)"
    fi
fi

# PyTorch (the backward oracle): the CPU build this machine kind keeps on disk;
# an unpinned 'torch' would pull a multi-GB CUDA build.
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
exec python3 -m pytest -q -p no:cacheprovider "$@"
