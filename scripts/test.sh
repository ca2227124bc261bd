#!/usr/bin/env bash
# scripts/test.sh [ARGS...]: set up, then run every check: formatting, clippy, the Rust tests
# (unit and end-to-end), the shell-script tests, the Ray driver's test against a local Ray
# cluster (scripts/test-scale.sh), and, as root, the Debian package installed in a clean root
# (scripts/test-deb.sh). ARGS go to `cargo test`, for example
#   scripts/test.sh -p earlyexit          only the core crate's tests
#   scripts/test.sh -- --nocapture        show the tests' output
#   scripts/test.sh -- --ignored full_size  the full-size search benchmark, not run by default
# The end-to-end tests read models and footage from $EARLYEXIT_ASSETS. Unless it is set, this
# script assembles that folder from the repository in data/test-assets: the models in models/,
# the clips in media/, the Fashion-MNIST streams rendered by scripts/fetch-fmnist.sh into
# data/fmnist (as the demo does), and the belt streams by scripts/fetch-belt.sh into data/belt. Run on its own, `cargo test` falls back to ../shared/assets.
# Every check runs even when an earlier one fails; the exit status says whether all passed.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n==> test: %s\n' "$*"; }

say "setting up (scripts/setup.sh)"
scripts/setup.sh

# setup.sh finds a rustup install that is not on PATH (fresh shell, CI); so does this script.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo fmt --version >/dev/null 2>&1 ||
  { echo "test: error: cargo fmt is missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 ||
  { echo "test: error: cargo clippy is missing: rustup component add clippy" >&2; exit 1; }
if [ -z "${EARLYEXIT_ASSETS:-}" ]; then
  say "assembling the tests' models and footage in data/test-assets"
  scripts/fetch-fmnist.sh data/fmnist
  scripts/fetch-belt.sh data/belt
  assets=$repo/data/test-assets
  mkdir -p "$assets/models" "$assets/footage"
  # Links, not copies: the files stay where the demos use them.
  ln -sf "$repo"/models/* "$assets/models/"
  ln -sf "$repo"/media/*.mkv "$repo"/data/fmnist/*.mkv "$repo"/data/fmnist/*.labels.csv \
    "$repo"/data/belt/*.mkv "$repo"/data/belt/*.labels.csv "$assets/footage/"
  export EARLYEXIT_ASSETS=$assets
fi
say "models and footage: $EARLYEXIT_ASSETS"

failed=()
check() { # NAME COMMAND...
  local name=$1
  shift
  say "$name: $*"
  if "$@"; then echo "==> test: $name: passed"; else failed+=("$name"); echo "==> test: $name: FAILED"; fi
}

check "rustfmt" cargo fmt --all --check
check "clippy" cargo clippy --release --workspace --all-targets -- -D warnings
check "cargo test" cargo test --release --workspace --no-fail-fast "$@"
check "summarize-messages.awk" scripts/test-summarize.sh
check "scale (Ray)" scripts/test-scale.sh
if [ "$(id -u)" -eq 0 ]; then
  check "Debian package in a clean root" scripts/test-deb.sh
else
  echo "==> test: Debian package: skipped (scripts/test-deb.sh needs root for chroot)"
fi

echo
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> test: FAILED: ${failed[*]}"
  exit 1
fi
echo "==> test: all checks passed"
