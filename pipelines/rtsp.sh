#!/usr/bin/env bash
# pipelines/rtsp.sh [MODEL] [URL]: run earlyexit on a live RTSP stream (an IP camera, a media
# server), reconnecting by itself whenever the camera drops and comes back, and print one bus
# message per frame.
#
#   MODEL  a bundle folder, or its exits.yaml (default: data/fmnist-bundle, made by scripts/demo.sh)
#   URL    the stream (default: rtsp://127.0.0.1:8554/test)
#
# The pipeline:
#   gst-launch-1.0 -m fallbacksrc uri=URL enable-audio=false enable-dummy=false \
#       restart-on-eos=true \
#     ! videoconvert \
#     ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
#     ! earlyexit model=MODEL post-messages=true ! fakesink
#
# - fallbacksrc (gst-plugins-rs, built with this project: scripts/setup.sh installs
#   libgstfallbackswitch.so beside the earlyexit plugin) opens the URL with rtspsrc and decodes
#   it. When rtspsrc fails (the camera went away, refused, or rtspsrc's own timeouts ran out)
#   or ends its stream, fallbacksrc tears it down and opens it again a second later, and again,
#   for as long as it takes: it never gives up (its retry-timeout does nothing in 0.15). So a
#   wrong URL is retried silently too: `gst-launch-1.0 -v` shows fallbacksrc's `status`, and
#   GST_DEBUG=fallbacksrc:4 why it retries.
# - restart-on-eos matters over TCP: rtspsrc reads a camera that went away as the end of the
#   stream there, not as an error.
# - Ctrl-C stops the pipeline at once. There is no -e (EOS on Ctrl-C) here: fallbacksrc would
#   take that EOS for the camera ending its stream and reconnect. With NUM_BUFFERS set, the run is
#   meant to end, so the script passes -e and restart-on-eos=false instead; then, over TCP, a
#   camera that drops ends the run too.
# - enable-dummy=false: while the camera is away nothing flows, instead of fallbacksrc's black
#   frames, so earlyexit never classifies frames that no camera took. enable-audio=false: only
#   the video is wanted.
# - The URL scheme picks the transport: rtsp:// asks for UDP first and falls back to TCP when no
#   packet comes (firewalls, NAT); rtspt:// is TCP only, rtspu:// UDP only. RTSP_PROTOCOLS=tcp or
#   udp rewrites rtsp:// to those.
# - rtspsrc inside fallbacksrc keeps its default 2 s jitter buffer, which gst-launch cannot
#   reach: frames come about 2 s after capture (a plain rtspsrc with latency=200 would take
#   0.2 s, but does not reconnect). An application can set it from uridecodebin3's
#   source-setup signal.
# - The leaky queue sheds load: when inference is slower than the camera, the oldest frames
#   waiting are dropped instead of letting the delay grow without bound (earlyexit's `overload`
#   property degrades before that, see the README).
#
# Environment: RTSP_PROTOCOLS (tcp, udp, or unset for UDP then TCP), and those of
# pipelines/common.sh (EARLYEXIT_MODE, EARLYEXIT_THREADS, EARLYEXIT_POST_MESSAGES,
# EARLYEXIT_SINK, NUM_BUFFERS).
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
case "${RTSP_PROTOCOLS:-}" in
  "") ;;
  tcp | udp)
    [[ $url == rtsp://* ]] || ee_die "RTSP_PROTOCOLS=$RTSP_PROTOCOLS needs an rtsp:// URL, not $url"
    url="rtsp${RTSP_PROTOCOLS:0:1}://${url#rtsp://}"
    ;;
  *) ee_die "RTSP_PROTOCOLS must be tcp or udp (or unset for UDP, then TCP), not '$RTSP_PROTOCOLS'" ;;
esac
gst-inspect-1.0 fallbacksrc >/dev/null 2>&1 ||
  ee_die "GStreamer has no fallbacksrc: install it with scripts/setup.sh (libgstfallbackswitch.so)"
ee_parts "$model"
restart_on_eos=true flags=(-m)
[ "${#limit[@]}" -eq 0 ] || restart_on_eos=false flags=(-m -e)

ee_run "${flags[@]}" \
  fallbacksrc uri="$url" enable-audio=false enable-dummy=false restart-on-eos="$restart_on_eos" \
  ! videoconvert \
  ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! \
  "${limit[@]}" "${element[@]}" ! "${sink[@]}"
