#!/usr/bin/env bash
# scripts/demo.sh [--fresh]: the main demo, on the shipped Fashion-MNIST classifier.
#
#   1. scripts/setup.sh: packages, ONNX Runtime, build, install the plugin.
#   2. scripts/fetch-fmnist.sh data/fmnist: three labeled streams of Fashion-MNIST images.
#   3. earlyexit-search search: the exit search cuts models/fmnist_resnet20w32.onnx into stages
#      with exit heads, trained on fmnist-train-10k, exit rules chosen and certified on
#      fmnist-test-a-5k so that accuracy stays within 0.2 points of the full backbone's
#      -> data/fmnist-bundle (--format 2 lets it keep learned gates where they do better).
#      An existing bundle is reused; --fresh searches again.
#   4. The earlyexit element over fmnist-test-b-5k (frames the search never saw), once with
#      mode=early-exit and once with mode=full (the whole backbone), and a summary of the
#      per-frame messages: exits per stage, accuracy, agreement with full, mean cost, ms/frame.
#   5. earlyexit-search evaluate on the same frames against the Shallow-Deep Networks baseline
#      the search wrote beside the bundle, as calibrated and at equal accuracy (--refit).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h | --help) sed -n '2,16s/^# \{0,1\}//p' "$repo/scripts/demo.sh"; exit 0 ;;
    *) echo "demo: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n==> demo: %s\n' "$*"; }

say "setting up (scripts/setup.sh)"
scripts/setup.sh

say "rendering the labeled streams (scripts/fetch-fmnist.sh data/fmnist)"
scripts/fetch-fmnist.sh data/fmnist

search="${CARGO_TARGET_DIR:-$repo/target}/release/earlyexit-search"
[ -x "$search" ] || { echo "error: $search is missing; scripts/setup.sh should have built it" >&2; exit 1; }
bundle=data/fmnist-bundle
[ "$fresh" -eq 0 ] || rm -rf "$bundle"
if [ -f "$bundle/exits.yaml" ]; then
  say "reusing $bundle (scripts/demo.sh --fresh searches again)"
else
  say "searching exits for models/fmnist_resnet20w32.onnx -> $bundle (this takes a while)"
  (
    set -x
    "$search" search --backbone models/fmnist_resnet20w32.onnx --labels models/fmnist_classes.txt \
      --footage data/fmnist/fmnist-train-10k.mkv --ground-truth data/fmnist/fmnist-train-10k.labels.csv \
      --holdout data/fmnist/fmnist-test-a-5k.mkv --ground-truth data/fmnist/fmnist-test-a-5k.labels.csv \
      --max-accuracy-loss 0.002 --format 2 --seed 1 --out "$bundle"
  )
fi
say "the bundle: $bundle"
ls -l "$bundle"

say "running the element over data/fmnist/fmnist-test-b-5k.mkv, early-exit vs full"
scripts/compare-modes.sh "$bundle" data/fmnist/fmnist-test-b-5k.mkv data/demo-fmnist \
  data/fmnist/fmnist-test-b-5k.labels.csv

sdn="$bundle/baselines/sdn"
if [ -d "$sdn" ] && grep -q '^format: earlyexit/1' "$bundle/exits.yaml"; then
  say "the bundle against the Shallow-Deep Networks baseline ($sdn) on the same frames"
  (
    set -x
    "$search" evaluate --model "$bundle" --compare "$sdn" --refit \
      --footage data/fmnist/fmnist-test-b-5k.mkv --ground-truth data/fmnist/fmnist-test-b-5k.labels.csv
  )
else
  say "skipping the comparison with the baselines: $bundle has no $sdn, or decides by a gate (scripts/demo.sh --fresh searches again)"
fi

say "done. Logs and summary: data/demo-fmnist/. Run the element yourself with:
    pipelines/file.sh $bundle data/fmnist/fmnist-test-b-5k.mkv"
