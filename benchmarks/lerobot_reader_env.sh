#!/usr/bin/env bash
# A Python with LeRobot's own LeRobotDataset v3.0 reader, for benchmarks/lerobot.py (--reader) to check
# `vla-data export-lerobot`'s folders against (benchmarks/lerobot_read.py runs in it). Not vla-data's venv: it
# needs its own torch and no vla-data import.
#   benchmarks/lerobot_reader_env.sh [VENV]   (default bench-out/lerobot-reader-venv)
# then: .venv/bin/python benchmarks/lerobot.py --reader VENV/bin/python
# Measured once: step 2 took 65 s wall (wheels mostly from local mirrors), venv = 1.8 GB. Needs python3.11.
set -euo pipefail
V=${1:-bench-out/lerobot-reader-venv}
# 1. venv
python3.11 -m venv "$V"
# 2. the standalone LeRobot dataset package (module name: ledataset) + the CPU torch on disk.
#    pip picks torchvision 0.28.0 (PyPI, a +cu130 build), which pins torch==2.13.0.
"$V/bin/pip" install lerobot-dataset==0.4.4 torch==2.13.0 torchvision==0.28.0
# 3. torchvision 0.28.0 from PyPI is a CUDA build: its _C.so needs libc10_cuda.so/libtorch_cuda.so,
#    which the CPU torch lacks, and then `import torchvision` dies with
#    "RuntimeError: operator torchvision::nms does not exist" (unguarded register_fake). Guard the two
#    decorators so torchvision imports without its C ops (ledataset only uses transforms + ToTensor).
sed -i -E 's/^@torch\.library\.register_fake\("(torchvision::q?nms)"\)$/@(torch.library.register_fake("\1") if torchvision.extension._has_ops() else (lambda f: f))  # patched: CPU torch + CUDA torchvision wheel/' \
  "$V/lib/python3.11/site-packages/torchvision/_meta_registrations.py"
# 4. video decoding: ledataset's 'pyav' backend calls torchvision.io.VideoReader, which torchvision 0.28 no
#    longer has, so only 'torchcodec' can decode. torchcodec 0.12.0 is the PyPI wheel that is CPU-only and
#    works with torch>=2.11 (0.17.0's PyPI wheel links libtorch_cuda/libnvrtc and fails on CPU torch).
"$V/bin/pip" install --no-deps torchcodec==0.12.0
# 5. torchcodec loads the system FFmpeg (major 4..8) shared libs; Debian 12 has FFmpeg 5.1 (93 pkgs, 165 MB).
#    (run as root, or install these packages yourself first)
if ! ldconfig -p | grep -q 'libavcodec.so.59'; then
  apt-get update -qq
  apt-get install -y --no-install-recommends libavcodec59 libavformat59 libavdevice59 libavfilter8 \
    libswscale6 libswresample4 libavutil57
fi
HF_HUB_OFFLINE=1 "$V/bin/python" -c "from ledataset.datasets.lerobot_dataset import LeRobotDataset; from torchcodec.decoders import VideoDecoder; print('reader env OK')"
