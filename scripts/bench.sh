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

# name bundle backbone clip raw-format width height
cases=(
  "fmnist data/fmnist-bundle models/fmnist_resnet20w32.onnx data/fmnist/fmnist-test-b-5k.mkv GRAY8 28 28"
  "efficientnet-lite0 data/bikes-bundle models/efficientnet_lite0_imagenet.onnx media/bikes-tail.mkv RGB 640 272"
)

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Mean inference-ns of the element's per-frame messages, in ms.
element_ms() { # bundle raw format width height mode
  gst-launch-1.0 -m filesrc location="$2" ! rawvideoparse format="$(echo "$3" | tr 'A-Z' 'a-z')" \
    width="$4" height="$5" framerate=25/1 ! earlyexit model="$1" mode="$6" threads="$threads" \
    post-messages=true ! fakesink 2>&1 |
    awk 'match($0, /inference-ns=\(g?uint64\)[0-9]+/) { s = substr($0, RSTART, RLENGTH); sub(/.*\)/, "", s); t += s; n++ }
         END { if (n == 0) exit 1; printf "%.3f\n", t / n / 1e6 }'
}

printf '%-20s %14s %14s %14s %14s\n' "backbone" "uncut ms" "bundle ms" "element full" "element early"
for c in "${cases[@]}"; do
  read -r name bundle backbone clip format width height <<<"$c"
  [ -f "$bundle/exits.yaml" ] || { echo "bench: $bundle is missing: run scripts/demo.sh and scripts/demo-video.sh first" >&2; exit 1; }
  raw="$out/$name.raw"
  gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! videoconvert ! \
    "video/x-raw,format=$format,width=$width,height=$height" ! filesink location="$raw" >/dev/null
  json=$("$search" evaluate --model "$bundle" --footage "$clip" --backbone "$backbone" \
    --threads "$threads" --runs 3 --json)
  uncut=$(printf '%s' "$json" | sed -n 's/^  "ms_per_frame_full": \(.*\)$/\1/p' | tail -n 1)
  ours=$(printf '%s' "$json" | sed -n 's/^  "ms_per_frame": \(.*\),$/\1/p' | tail -n 1)
  full=$(for _ in 1 2 3; do element_ms "$bundle" "$raw" "$format" "$width" "$height" full; done | median)
  early=$(for _ in 1 2 3; do element_ms "$bundle" "$raw" "$format" "$width" "$height" early-exit; done | median)
  printf '%-20s %14.3f %14.3f %14.3f %14.3f\n' "$name" "$uncut" "$ours" "$full" "$early"
done
echo "(ms per frame, preprocessing included, $threads ONNX Runtime threads, median of 3 runs)"
