#!/usr/bin/env bash
# Make Debian's bcc module (python3-bpfcc) importable from the venv. PyPI's `bcc` is an
# unrelated package, so the system module is linked into site-packages instead.
set -euo pipefail
vpy=$1
src=/usr/lib/python3/dist-packages/bcc
site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d "$src" ]; then
  ln -sfn "$src" "$site/bcc"
else
  echo "ztrace setup: $src not found (python3-bpfcc missing); BPF capture will be unavailable." >&2
fi
