#!/usr/bin/env bash
# scripts/compare-modes.sh MODEL FILE OUTDIR [LABELS.csv]: run the earlyexit element over FILE
# twice, with mode=early-exit and with mode=full (pipelines/file.sh, post-messages=true), keep
# both gst-launch-1.0 -m logs in OUTDIR, and summarize them with summarize-messages.awk: exits
# per stage, accuracy (with LABELS.csv), agreement with mode=full, mean cost, ms/frame and the
# speed-up. Used by scripts/demo.sh and scripts/demo-video.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 3 ] || [ $# -gt 4 ]; then echo "usage: $0 MODEL FILE OUTDIR [LABELS.csv]" >&2; exit 2; fi
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
model=$(abs "$1") file=$(abs "$2") out=$(abs "$3") labels=${4:+$(abs "$4")}
cd "$repo"

say() { printf '==> compare-modes: %s\n' "$*"; }
mkdir -p "$out"
for mode in early-exit full; do
  log="$out/$mode.log"
  say "mode=$mode over $(basename "$file") (log: $log)"
  if ! EARLYEXIT_MODE=$mode EARLYEXIT_POST_MESSAGES=true pipelines/file.sh "$model" "$file" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "compare-modes: error: the pipeline with mode=$mode failed; the whole output is in $log" >&2
    exit 1
  fi
done

say "summary (scripts/summarize-messages.awk)"
awk -v title="earlyexit on $(basename "$file"), bundle $(basename "$model")" \
  -f scripts/summarize-messages.awk \
  ${labels:+role=labels "$labels"} role=full "$out/full.log" role=early "$out/early-exit.log" |
  tee "$out/summary.txt"
