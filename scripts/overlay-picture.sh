#!/usr/bin/env bash
# scripts/overlay-picture.sh BUNDLE FOOTAGE OUT.png [FRAME] [SIZE]: one frame of FOOTAGE as the
# earlyexit element answered it with BUNDLE, drawn by earlyexitoverlay, as a PNG.
#   FRAME  the 0-based frame to keep (default 0)
#   SIZE   the picture's width and height in pixels (default 336); small footage such as
#          Fashion-MNIST's 28x28 is enlarged without smoothing, after it was classified.
# Uses the installed plugin (scripts/setup.sh), or GST_PLUGIN_PATH.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
bundle=$1 footage=$2 out=$3 frame=${4:-0} size=${5:-336}
[ -e "$footage" ] || { echo "overlay-picture: no footage at $footage" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# identity ends the stream a few frames after the one asked for (the last buffer before such an
# EOS is not always the next frame); the frame is then picked by its place.
# The overlay draws in the frame's own format: RGBx, so that grey footage gets colours.
gst-launch-1.0 -q filesrc location="$footage" ! decodebin ! videoconvert \
  ! earlyexit model="$bundle" ! identity eos-after=$((frame + 5)) \
  ! videoscale method=nearest-neighbour add-borders=true \
  ! "video/x-raw,width=$size,height=$size,pixel-aspect-ratio=1/1" \
  ! videoconvert ! video/x-raw,format=RGBx ! earlyexitoverlay ! videoconvert ! pngenc \
  ! multifilesink location="$tmp/%06d.png"
picture=$(printf '%s/%06d.png' "$tmp" "$frame")
[ -e "$picture" ] || { echo "overlay-picture: $footage has no frame $frame" >&2; exit 1; }
mv "$picture" "$out"
echo "overlay-picture: frame $frame of $footage -> $out"
