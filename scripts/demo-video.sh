#!/usr/bin/env bash
# scripts/demo-video.sh [--fresh]: the same story on real video, with no labels.
#
#   1. scripts/setup.sh.
#   2. earlyexit-search search: exits for EfficientNet-Lite0 (ImageNet, models/), searched on the
#      first 70% of a street clip (media/bikes-head.mkv), the bundle's answers to agree with the
#      full backbone's on at least 95% of held-out frames -> data/bikes-bundle. An existing bundle
#      is reused; --fresh searches again.
#   3. earlyexit-search evaluate on the rest of the clip (media/bikes-tail.mkv), which the search
#      never saw: agreement, exits per stage, cost, and ms/frame against the uncut backbone.
#   4. The earlyexit element over the tail, mode=early-exit and mode=full, and a summary of its
#      per-frame messages.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$repo/scripts/demo-video.sh"; exit 0 ;;
    *) echo "demo-video: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n==> demo-video: %s\n' "$*"; }

say "setting up (scripts/setup.sh)"
scripts/setup.sh

search="${CARGO_TARGET_DIR:-$repo/target}/release/earlyexit-search"
[ -x "$search" ] || { echo "error: $search is missing; scripts/setup.sh should have built it" >&2; exit 1; }
backbone=models/efficientnet_lite0_imagenet.onnx
bundle=data/bikes-bundle
mkdir -p data
[ "$fresh" -eq 0 ] || rm -rf "$bundle"
if [ -f "$bundle/exits.yaml" ]; then
  say "reusing $bundle (scripts/demo-video.sh --fresh searches again)"
else
  say "searching exits for $backbone on media/bikes-head.mkv -> $bundle (this takes a while)"
  (
    set -x
    "$search" search --backbone "$backbone" --mean 127 --std 128 --color rgb --layout nchw \
      --labels models/imagenet_classes.txt --target-agreement 0.95 \
      --footage media/bikes-head.mkv --seed 1 --out "$bundle"
  )
fi
say "the bundle: $bundle"
ls -l "$bundle"

say "evaluating on later footage of the same camera (media/bikes-tail.mkv)"
(
  set -x
  "$search" evaluate --model "$bundle" --footage media/bikes-tail.mkv --backbone "$backbone"
)

say "running the element over media/bikes-tail.mkv, early-exit vs full"
scripts/compare-modes.sh "$bundle" media/bikes-tail.mkv data/demo-bikes

say "done. Logs and summary: data/demo-bikes/. Run the element yourself with:
    pipelines/file.sh $bundle media/bikes-tail.mkv"
