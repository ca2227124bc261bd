#!/usr/bin/env bash
# pipelines/rtsp.sh [MODEL] [URL]: run earlyexit on a live RTSP stream (an IP camera, a media
# server) and print one bus message per frame.
#
#   MODEL  a bundle folder, or its exits.yaml (default: data/fmnist-bundle, made by scripts/demo.sh)
#   URL    the stream (default: rtsp://127.0.0.1:8554/test)
#
# The pipeline:
#   gst-launch-1.0 -m -e rtspsrc location=URL latency=200 protocols=tcp+udp-mcast+udp \
#       timeout=2000000 drop-on-latency=true \
#     ! application/x-rtp,media=video ! decodebin ! videoconvert \
#     ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
#     ! earlyexit model=MODEL post-messages=true ! fakesink
#
# - latency: milliseconds the jitter buffer holds packets to reorder them. Lower is snappier,
#   higher survives a worse network. drop-on-latency keeps it from growing past that.
# - protocols/timeout: rtspsrc asks for UDP first; when no packet comes within `timeout`
#   microseconds (2 s here; 5 s is rtspsrc's own default) it sets the session up again over TCP.
#   Set RTSP_PROTOCOLS=tcp to go straight to TCP (firewalls, NAT, lossy links).
# - application/x-rtp,media=video picks the video stream when the camera also sends audio.
# - The leaky queue sheds load: when inference is slower than the camera, the oldest frames
#   waiting are dropped instead of letting the delay grow without bound.
# - -e: Ctrl-C ends the stream cleanly (EOS) instead of cutting it.
# rtspsrc does not reconnect by itself after the server goes away; to keep a stream up, run the
# script in a loop: until pipelines/rtsp.sh MODEL URL; do sleep 2; done
#
# Environment: RTSP_LATENCY (ms, default 200), RTSP_PROTOCOLS (default tcp+udp-mcast+udp),
# RTSP_UDP_TIMEOUT (microseconds, default 2000000), and those of pipelines/common.sh
# (EARLYEXIT_MODE, EARLYEXIT_THREADS, EARLYEXIT_POST_MESSAGES, EARLYEXIT_SINK, NUM_BUFFERS).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
[ $# -le 2 ] || ee_die "usage: $0 [MODEL] [URL]"
model=$(ee_abspath "${1:-$repo/data/fmnist-bundle}")
url=${2:-rtsp://127.0.0.1:8554/test}
cd "$repo"

ee_check_model "$model"
case "$url" in rtsp://* | rtsps://* | rtspt://* | rtspu://*) ;; *) ee_die "not an RTSP URL: $url" ;; esac
ee_parts "$model"

ee_run -m -e \
  rtspsrc location="$url" latency="${RTSP_LATENCY:-200}" \
  protocols="${RTSP_PROTOCOLS:-tcp+udp-mcast+udp}" timeout="${RTSP_UDP_TIMEOUT:-2000000}" \
  drop-on-latency=true \
  ! application/x-rtp,media=video ! decodebin ! videoconvert \
  ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! \
  "${limit[@]}" "${element[@]}" ! "${sink[@]}"
