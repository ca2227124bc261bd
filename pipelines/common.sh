# shellcheck shell=bash disable=SC2034  # element, limit and sink are used by the sourcing script
# pipelines/common.sh: what the pipeline scripts share. Sourced, not run.
#
# Settings, from the environment (all optional):
#   EARLYEXIT_MODE           early-exit (default) or full: full runs the whole backbone, no exits
#   EARLYEXIT_THREADS        ONNX Runtime threads; 0 (default) lets ONNX Runtime choose
#   EARLYEXIT_POST_MESSAGES  true (default) posts one bus message per frame, printed by -m
#   EARLYEXIT_SINK           the sink, as gst-launch words (default: fakesink, or see each script)
#   NUM_BUFFERS              stop after this many frames (default: no limit)
#   GST_LAUNCH               the launcher, as words (default gst-launch-1.0; e.g. "gst-launch-1.0 -v")

ee_say() { printf '==> %s: %s\n' "$(basename "$0")" "$*" >&2; }
ee_die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# An argument given relative to the caller's directory, made absolute (it need not exist).
ee_abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# The bundle: a folder holding exits.yaml, or the exits.yaml file itself.
ee_check_model() {
  if [ -d "$1" ]; then
    [ -f "$1/exits.yaml" ] || ee_die "$1 holds no exits.yaml (make a bundle with earlyexit-search search, or run scripts/demo.sh)"
  else
    [ -f "$1" ] || ee_die "no bundle at $1 (make one with earlyexit-search search, or run scripts/demo.sh)"
  fi
}

# ee_parts MODEL [DEFAULT_SINK]: set the gst-launch words that every pipeline here shares:
#   element  earlyexit and its properties
#   limit    with NUM_BUFFERS=N: `identity eos-after=N+1 !`, else nothing. Put it right after a
#            queue. identity passes N buffers and answers EOS to the next one, and the
#            pipeline ends cleanly. On GStreamer 1.22 the queue sometimes lets one more frame
#            through after that answer, so N or N+1 frames reach earlyexit (seen on FFV1 and
#            H.264 files; tests/pipelines.rs accepts both). Without the queue, a decoder may go
#            on pushing frames after the EOS answer
#   sink     EARLYEXIT_SINK, split into words, or DEFAULT_SINK (fakesink)
ee_parts() {
  local mode=${EARLYEXIT_MODE:-early-exit} n=${NUM_BUFFERS:-}
  case "$mode" in early-exit | full) ;; *) ee_die "EARLYEXIT_MODE must be early-exit or full, not '$mode'" ;; esac
  element=(earlyexit "model=$1" "mode=$mode" "threads=${EARLYEXIT_THREADS:-0}"
    "post-messages=${EARLYEXIT_POST_MESSAGES:-true}")
  limit=()
  if [ -n "$n" ] && [ "$n" != "-1" ]; then
    [[ $n =~ ^[0-9]+$ ]] || ee_die "NUM_BUFFERS must be a number of frames, not '$n'"
    limit=(identity "eos-after=$((n + 1))" '!')
  fi
  read -ra sink <<<"${EARLYEXIT_SINK:-${2:-fakesink}}"
}

# ee_run ARGS...: print the command line GST_LAUNCH ARGS..., then run it in place of this shell.
ee_run() {
  local launch word line=""
  read -ra launch <<<"${GST_LAUNCH:-gst-launch-1.0}"
  set -- "${launch[@]}" "$@"
  for word in "$@"; do
    if [[ $word =~ ^[][A-Za-z0-9_./:=,+@%!()-]+$ ]]; then line+="$word "; else line+="$(printf '%q' "$word") "; fi
  done
  ee_say "$line"
  exec "$@"
}
