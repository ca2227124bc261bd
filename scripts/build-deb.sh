#!/usr/bin/env bash
# scripts/build-deb.sh: builds the Debian package of earlyexit with cargo-deb and prints its
# path (target/debian/earlyexit_<version>-1_amd64.deb). It holds:
#   - the plugin (earlyexit, earlyexitoverlay, earlyexitpublish) and gst-plugins-rs's
#     fallbacksrc in /usr/lib/x86_64-linux-gnu/gstreamer-1.0/, where GStreamer looks
#     system-wide;
#   - earlyexit-search in /usr/bin;
#   - ONNX Runtime 1.32.0, from the PyPI wheel scripts/setup.sh fetches, in /usr/lib/earlyexit/,
#     where the element and the command look for it (Debian 12 has no ONNX Runtime package).
# Its dependencies are the Debian libraries the two link to, and GStreamer's base and good
# plugins. Install it with: apt-get install ./target/debian/earlyexit_*.deb
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
say() { printf '==> build-deb: %s\n' "$*" >&2; }

scripts/setup.sh --no-build >&2
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
  say "installing cargo-deb $cargo_deb_version (cargo install)"
  cargo install --quiet --locked cargo-deb --version "$cargo_deb_version" >&2
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
say "building the plugin and earlyexit-search (release)"
cargo build --release -p gst-plugin-earlyexit -p earlyexit-search -p earlyexit-fallbackswitch >&2
# The library scripts/setup.sh installed, under the name the element looks for.
ort="$HOME/.local/lib/earlyexit/libonnxruntime.so"
[ -f "$ort" ] || { echo "build-deb: no ONNX Runtime at $ort (scripts/setup.sh puts it there)" >&2; exit 1; }
mkdir -p "$target_dir/release/deb"
cp -L "$ort" "$target_dir/release/deb/libonnxruntime.so"
say "packaging (cargo deb)"
cargo deb -p gst-plugin-earlyexit --no-build --strip --quiet
