#!/usr/bin/env bash
# scripts/fetch-belt.sh DEST: render the three inspection-belt streams into DEST with
# scripts/render-belt.py, from Debian's dataset-fashion-mnist (FMNIST_IDX_DIR overrides the
# folder); streams already in DEST are kept.
#
#   fmnist-belt-train.mkv    training items 10,000-10,999, seed 1
#   fmnist-belt-test-a.mkv   test items 0-999, seed 2
#   fmnist-belt-test-b.mkv   test items 5,000-5,999, seed 3
#
# Each with NAME.labels.csv beside it (frame,label).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
mkdir -p "$1"
dest=$(cd "$1" && pwd)
idx=${FMNIST_IDX_DIR:-/usr/share/datasets/fashion-mnist}
say() { printf '==> fetch-belt: %s\n' "$*"; }

render() { # STREAM SET FIRST SEED
  if [ -s "$dest/$1.mkv" ] && [ -s "$dest/$1.labels.csv" ]; then
    say "$1: present in $dest, kept"
    return
  fi
  say "$1: items $3-$(($3 + 999)) of $2, seed $4 -> $dest/$1.mkv"
  # Into a temporary stem first, so that an interrupted run leaves no half stream behind.
  local tmp
  tmp=$(mktemp -d "$dest/.fetch-belt.XXXXXX")
  "$repo/scripts/render-belt.py" "$idx/$2-images-idx3-ubyte.gz" "$idx/$2-labels-idx1-ubyte.gz" \
    "$3" 1000 "$4" "$tmp/$1"
  mv "$tmp/$1.labels.csv" "$dest/$1.labels.csv"
  mv "$tmp/$1.mkv" "$dest/$1.mkv"
  rmdir "$tmp"
}
render fmnist-belt-train train 10000 1
render fmnist-belt-test-a t10k 0 2
render fmnist-belt-test-b t10k 5000 3
