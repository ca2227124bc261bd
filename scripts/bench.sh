#!/usr/bin/env bash
# scripts/bench.sh [THREADS]: time per frame, measured side by side in one run, for both shipped
# backbones: the uncut backbone and the bundle (earlyexit-search evaluate --backbone, frames
# decoded into memory first), and the element in mode=full and mode=early-exit over frames
# decoded beforehand into a raw file (filesrc ! rawvideoparse), so decoding does not compete
# for the cores. Every figure is the median of 3 runs, with the same ONNX Runtime thread count
# (THREADS, default 2). Needs the bundles of scripts/demo.sh and scripts/demo-video.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
threads=${1:-2}
search="${CARGO_TARGET_DIR:-$repo/target}/release/earlyexit-search"
out=data/bench
mkdir -p "$out"

# name bundle backbone clips (comma-separated) raw-format width height
cases=(
  "fmnist data/fmnist-bundle models/fmnist_resnet20w32.onnx data/fmnist/fmnist-test-b-5k.mkv GRAY8 28 28"
  "efficientnet-lite0 data/video-bundle models/efficientnet_lite0_imagenet.onnx data/video/vtest-head.mkv,data/video/vtest-tail.mkv RGB 768 576"
)

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The element's mean-inference-ns over the raw frames, in ms (examples/element_timing.rs reads
# its stats; no per-frame messages, whose printing would take CPU from the element).
element_ms() { # bundle raw format width height mode
  "$timing" "$1" "$2" "$3" "$4" "$5" "$6" "$threads" |
    awk '{ printf "%.3f\n", $NF / 1e6 }'
}

cargo build --release --quiet --example element_timing
timing="${CARGO_TARGET_DIR:-$repo/target}/release/examples/element_timing"

printf '%-20s %14s %14s %14s %14s\n' "backbone" "uncut ms" "bundle ms" "element full" "element early"
for c in "${cases[@]}"; do
  read -r name bundle backbone clips format width height <<<"$c"
  [ -f "$bundle/exits.yaml" ] || { echo "bench: $bundle is missing: run scripts/demo.sh and scripts/demo-video.sh first" >&2; exit 1; }
  raw="$out/$name.raw"
  : >"$raw"
  footage=()
  IFS=, read -ra list <<<"$clips"
  for clip in "${list[@]}"; do
    footage+=(--footage "$clip")
    gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! videoconvert ! \
      "video/x-raw,format=$format,width=$width,height=$height" ! filesink location="$raw.part" >/dev/null
    cat "$raw.part" >>"$raw"
  done
  rm -f "$raw.part"
  json=$("$search" evaluate --model "$bundle" "${footage[@]}" --backbone "$backbone" \
    --threads "$threads" --runs 3 --json)
  uncut=$(printf '%s' "$json" | sed -n 's/^  "ms_per_frame_full": \(.*\)$/\1/p' | tail -n 1)
  ours=$(printf '%s' "$json" | sed -n 's/^  "ms_per_frame": \(.*\),$/\1/p' | tail -n 1)
  full=$(for _ in 1 2 3; do element_ms "$bundle" "$raw" "$format" "$width" "$height" full; done | median)
  early=$(for _ in 1 2 3; do element_ms "$bundle" "$raw" "$format" "$width" "$height" early-exit; done | median)
  printf '%-20s %14.3f %14.3f %14.3f %14.3f\n' "$name" "$uncut" "$ours" "$full" "$early"
done
echo "(ms per frame, preprocessing included, $threads ONNX Runtime threads, median of 3 runs)"
