#!/usr/bin/env bash
# scripts/demo-video.sh [--fresh]: the same story on real video, with no labels.
#
#   1. scripts/setup.sh.
#   2. scripts/fetch-video.sh data/video: three more real clips (an animation, a box on a table,
#      a plaza seen by a static camera), each split in time as media/bikes-*.mkv is.
#   3. earlyexit-search search: exits for EfficientNet-Lite0 (ImageNet, models/), searched on the
#      first 70% of the four clips (1,141 frames; about 8 minutes), the bundle's answers to
#      agree with the full backbone's on at least 95% of held-out frames -> data/video-bundle
#      (format 2: gates may use the previous frame's answer). An existing bundle is reused;
#      --fresh searches again.
#   4. earlyexit-search evaluate on the rest of each clip (the -tail files), which the search
#      never saw: agreement, exits per stage, cost, and ms/frame against the uncut backbone.
#   5. The earlyexit element over the plaza's tail, mode=early-exit and mode=full, and a
#      summary of its per-frame messages.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$repo/scripts/demo-video.sh"; exit 0 ;;
    *) echo "demo-video: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n==> demo-video: %s\n' "$*"; }

say "setting up (scripts/setup.sh)"
scripts/setup.sh

say "fetching the other clips (scripts/fetch-video.sh data/video)"
scripts/fetch-video.sh data/video

search="${CARGO_TARGET_DIR:-$repo/target}/release/earlyexit-search"
[ -x "$search" ] || { echo "error: $search is missing; scripts/setup.sh should have built it" >&2; exit 1; }
backbone=models/efficientnet_lite0_imagenet.onnx
bundle=data/video-bundle
clips=(media/bikes data/video/bigbuckbunny data/video/box data/video/vtest)
heads=() tails=()
for clip in "${clips[@]}"; do
  heads+=(--footage "$clip-head.mkv")
  tails+=(--footage "$clip-tail.mkv")
done
[ "$fresh" -eq 0 ] || rm -rf "$bundle"
if [ -f "$bundle/exits.yaml" ]; then
  say "reusing $bundle (scripts/demo-video.sh --fresh searches again)"
else
  say "searching exits for $backbone on the first 70% of each clip -> $bundle (this takes a while)"
  (
    set -x
    "$search" search --backbone "$backbone" --mean 127 --std 128 --color rgb --layout nchw \
      --labels models/imagenet_classes.txt --target-agreement 0.95 --format 2 \
      "${heads[@]}" --seed 1 --out "$bundle"
  )
fi
say "the bundle: $bundle"
ls -l "$bundle"

say "evaluating on later footage of the same cameras (the -tail clips)"
(
  set -x
  "$search" evaluate --model "$bundle" "${tails[@]}" --backbone "$backbone"
)

say "running the element over data/video/vtest-tail.mkv, early-exit vs full"
scripts/compare-modes.sh "$bundle" data/video/vtest-tail.mkv data/demo-video

say "done. Logs and summary: data/demo-video/. Run the element yourself with:
    pipelines/file.sh $bundle data/video/vtest-tail.mkv"
