#!/usr/bin/env bash
# scripts/test-scale.sh: the Ray driver's test (scale/test_scale.py), against a real Ray cluster
# that the test starts on 127.0.0.1 and stops. Ray (scale/requirements.txt) goes into a Python
# environment of its own, data/scale-venv, made on the first run. Needs the release build of
# earlyexit-search, which this script makes, and EARLYEXIT_ASSETS as scripts/test.sh sets it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cargo build --release -q -p earlyexit-search
venv=data/scale-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r scale/requirements.txt
"$venv/bin/python" scale/test_scale.py
