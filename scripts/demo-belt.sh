#!/usr/bin/env bash
# scripts/demo-belt.sh [--fresh]: the stream rule and the audit, on an inspection belt.
#
#   1. scripts/setup.sh: packages, ONNX Runtime, build, install the plugin.
#   2. scripts/fetch-belt.sh: three belt streams into data/belt/ (scripts/render-belt.py),
#      each Fashion-MNIST item under a fixed camera for 4 to 40 frames, with one-pixel
#      shake, light drift and sensor noise (train: training items 10,000-10,999; test-a: test
#      items 0-999; test-b: 5,000-5,999).
#   3. earlyexit-search search --format 3: exits and the stream rule (reuse the last answer
#      while the picture has not changed), trained on belt-train, certified on belt-test-a to
#      lose at most 0.5 points of accuracy -> data/belt-bundle. --fresh searches again.
#   4. earlyexit-search evaluate on belt-test-b, frames the search never saw: accuracy,
#      frames reused and leaving at each stage, cost and ms/frame against the full backbone,
#      three timed runs; then the same with the element's default audit (--audit 0.05).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$repo/scripts/demo-belt.sh"; exit 0 ;;
    *) echo "demo-belt: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n==> demo-belt: %s\n' "$*"; }

say "setting up (scripts/setup.sh)"
scripts/setup.sh

say "rendering the belt streams (scripts/fetch-belt.sh data/belt)"
scripts/fetch-belt.sh data/belt

search="${CARGO_TARGET_DIR:-$repo/target}/release/earlyexit-search"
bundle=data/belt-bundle
[ "$fresh" -eq 0 ] || rm -rf "$bundle"
if [ -f "$bundle/exits.yaml" ]; then
  say "reusing $bundle (scripts/demo-belt.sh --fresh searches again)"
else
  say "searching exits and a stream rule -> $bundle (about 5 minutes)"
  (
    set -x
    "$search" search --backbone models/fmnist_resnet20w32.onnx --labels models/fmnist_classes.txt \
      --footage data/belt/fmnist-belt-train.mkv --ground-truth data/belt/fmnist-belt-train.labels.csv \
      --holdout data/belt/fmnist-belt-test-a.mkv --ground-truth data/belt/fmnist-belt-test-a.labels.csv \
      --max-accuracy-loss 0.005 --format 3 --seed 1 --out "$bundle"
  )
fi
head -n 12 "$bundle/report.md"

say "the bundle on belt-test-b, frames the search never saw"
(
  set -x
  "$search" evaluate --model "$bundle" --runs 3 \
    --footage data/belt/fmnist-belt-test-b.mkv --ground-truth data/belt/fmnist-belt-test-b.labels.csv
  "$search" evaluate --model "$bundle" --runs 3 --audit 0.05 \
    --footage data/belt/fmnist-belt-test-b.mkv --ground-truth data/belt/fmnist-belt-test-b.labels.csv
)
say "done. Run the element yourself with:
    pipelines/file.sh $bundle data/belt/fmnist-belt-test-b.mkv"
