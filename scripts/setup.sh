#!/usr/bin/env bash
# scripts/setup.sh: get a Debian 12 machine ready to build and run earlyexit, then build and
# install it. Safe to re-run: every step checks first and skips what is already done.
#
#   scripts/setup.sh            everything: packages, Rust check, ONNX Runtime, build, install
#   scripts/setup.sh --no-build packages, Rust check and ONNX Runtime only
#
# Steps:
#   1. Debian packages (GStreamer 1.22, build tools, the Fashion-MNIST data set), via apt-get,
#      with sudo when not root. apt-get update runs only when something is missing.
#   2. The Rust toolchain: cargo and rustc >= 1.92 (from rustup; Debian's own rustc is too old).
#   3. ONNX Runtime 1.32.0: the shared library from the PyPI wheel, into
#      ~/.local/lib/earlyexit/libonnxruntime.so, where the element looks by default.
#   4. cargo build --release --workspace (into ${CARGO_TARGET_DIR:-<repo>/target}).
#   5. The plugin, and gst-plugins-rs's fallbacksrc that pipelines/rtsp.sh reconnects with, into
#      ~/.local/share/gstreamer-1.0/plugins/ (GStreamer scans it with no variable set), and
#      earlyexit-search into ~/.local/bin/; then gst-inspect-1.0 earlyexit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$repo/scripts/setup.sh"; exit 0 ;;
    *) echo "setup: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages ----------------------------------------------------------------------
packages=(
  # GStreamer 1.22: build headers, gst-launch-1.0/gst-inspect-1.0, decoders and encoders, RTSP
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav gstreamer1.0-plugins-ugly gstreamer1.0-rtsp libgstrtspserver-1.0-dev
  # building: a C linker for cargo, protoc for the ONNX protobuf types, pango and cairo for
  # earlyexitoverlay's text
  build-essential protobuf-compiler libpango1.0-dev libcairo2-dev fonts-dejavu-core
  # the labeled demo streams are rendered from this (scripts/fetch-fmnist.sh), the belt
  # streams with numpy's generator too (scripts/render-belt.py)
  dataset-fashion-mnist python3-numpy
  # fetching ONNX Runtime from PyPI
  ca-certificates unzip
  # the Ray driver's test runs in a Python environment of its own (scripts/test-scale.sh)
  python3-venv
  # earlyexitpublish's tests start a real MQTT broker on 127.0.0.1 (tests/publish.rs)
  mosquitto
  # examples/read_meta.py: PyGObject with GStreamer's Python overrides
  python3-gi python3-gst-1.0
)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      die "not root and no sudo: as root, run: apt-get update && apt-get install -y $*"
    sudo=(sudo)
  fi
  say "installing Debian packages: $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@"
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12"
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  say "Debian packages: all ${#packages[@]} present"
fi

# --- 2. Rust toolchain -----------------------------------------------------------------------
rust_min=1.92
rustup_hint="install or update it with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
  (already using rustup? run: rustup update stable). Debian's own rustc (1.63) is too old."

# A rustup install that is not on PATH yet (fresh shell, CI): use it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found; Rust >= $rust_min is needed: $rustup_hint"
command -v rustc >/dev/null 2>&1 || die "rustc not found; Rust >= $rust_min is needed: $rustup_hint"
rust_version=$(rustc --version | awk '{print $2}')
if ! printf '%s\n%s\n' "$rust_min" "${rust_version%%-*}" | sort -C -V; then
  die "rustc $rust_version is too old; earlyexit needs Rust >= $rust_min: $rustup_hint"
fi
say "Rust: rustc $rust_version ($(command -v rustc))"

# --- 3. ONNX Runtime -------------------------------------------------------------------------
ort_version=1.32.0
ort_dir="$HOME/.local/lib/earlyexit"
ort_lib="$ort_dir/libonnxruntime.so.$ort_version"

if [ -f "$ort_lib" ] && [ "$(readlink "$ort_dir/libonnxruntime.so" 2>/dev/null)" = "libonnxruntime.so.$ort_version" ]; then
  say "ONNX Runtime $ort_version: present in $ort_dir"
else
  if [ -f "$ort_lib" ]; then
    say "ONNX Runtime $ort_version: present, linking libonnxruntime.so to it"
  else
    if command -v pip >/dev/null 2>&1; then
      pip=(pip)
    elif python3 -m pip --version >/dev/null 2>&1; then
      pip=(python3 -m pip)
    else
      apt_install python3-pip
      pip=(python3 -m pip)
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    say "ONNX Runtime $ort_version: downloading the PyPI wheel (onnxruntime==$ort_version)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.12 \
      --dest "$tmp" "onnxruntime==$ort_version" ||
      die "could not download onnxruntime==$ort_version from PyPI (is PyPI reachable?)"
    wheels=("$tmp"/onnxruntime-"$ort_version"-*.whl)
    wheel=${wheels[0]}
    [ -f "$wheel" ] || die "pip download produced no onnxruntime $ort_version wheel in $tmp"
    unzip -q -j -o "$wheel" "onnxruntime/capi/libonnxruntime.so.$ort_version" -d "$tmp" ||
      die "the wheel $(basename "$wheel") holds no onnxruntime/capi/libonnxruntime.so.$ort_version"
    mkdir -p "$ort_dir"
    install -m 0755 "$tmp/libonnxruntime.so.$ort_version" "$ort_lib.tmp"
    mv -f "$ort_lib.tmp" "$ort_lib"
    rm -rf "$tmp"
    trap - EXIT
  fi
  ln -sfn "libonnxruntime.so.$ort_version" "$ort_dir/libonnxruntime.so"
  say "ONNX Runtime $ort_version: installed $ort_dir/libonnxruntime.so"
fi
if [ -n "${ORT_DYLIB_PATH:-}" ]; then
  say "note: ORT_DYLIB_PATH=$ORT_DYLIB_PATH is set; it overrides $ort_dir for every process"
fi

if [ "$build" -eq 0 ]; then
  say "done (--no-build: skipped building and installing earlyexit)"
  exit 0
fi

# --- 4. Build --------------------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
say "building: cargo build --release --workspace (target dir $target_dir)"
cargo build --release --workspace

plugin_so="$target_dir/release/libgstearlyexit.so"
fallback_so="$target_dir/release/libgstfallbackswitch.so"
search_bin="$target_dir/release/earlyexit-search"
[ -f "$plugin_so" ] || die "the build did not produce $plugin_so (is the plugin crate in the workspace?)"
[ -f "$fallback_so" ] || die "the build did not produce $fallback_so (is thirdparty/fallbackswitch in the workspace?)"
[ -x "$search_bin" ] || die "the build did not produce $search_bin (is the search crate in the workspace?)"

# --- 5. Install ------------------------------------------------------------------------------
plugin_dir="$HOME/.local/share/gstreamer-1.0/plugins"
bin_dir="$HOME/.local/bin"
mkdir -p "$plugin_dir" "$bin_dir"
# Copy, then rename: a pipeline that has the old file mapped keeps working.
put() { # put FILE DIR
  install -m 0755 "$1" "$2/.$(basename "$1").tmp"
  mv -f "$2/.$(basename "$1").tmp" "$2/$(basename "$1")"
}
put "$plugin_so" "$plugin_dir"
put "$fallback_so" "$plugin_dir"
put "$search_bin" "$bin_dir"
say "installed $plugin_dir/libgstearlyexit.so, $plugin_dir/libgstfallbackswitch.so and $bin_dir/earlyexit-search"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) say "note: $bin_dir is not on PATH; add it to use earlyexit-search by name" ;;
esac

if [ -n "${GST_PLUGIN_SYSTEM_PATH:-}${GST_PLUGIN_SYSTEM_PATH_1_0:-}" ]; then
  say "note: GST_PLUGIN_SYSTEM_PATH is set, so GStreamer may not scan $plugin_dir"
fi
if inspect=$(gst-inspect-1.0 earlyexit 2>&1); then
  say "gst-inspect-1.0 earlyexit: OK ($(printf '%s\n' "$inspect" | awk '/^  Version/ {print "version " $2; exit}'))"
else
  printf '%s\n' "$inspect" >&2
  blacklisted=$(gst-inspect-1.0 -b 2>/dev/null | grep -i earlyexit || true)
  [ -z "$blacklisted" ] || echo "GStreamer blacklisted the plugin: $blacklisted" >&2
  die "gst-inspect-1.0 cannot find the element 'earlyexit' after installing $plugin_dir/libgstearlyexit.so.
  To see why: GST_DEBUG=GST_PLUGIN_LOADING:5 gst-inspect-1.0 $plugin_dir/libgstearlyexit.so"
fi
say "done"
