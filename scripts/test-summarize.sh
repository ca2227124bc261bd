#!/usr/bin/env bash
# scripts/test-summarize.sh: check scripts/summarize-messages.awk on a hand-made sample of
# `gst-launch-1.0 -m` output (scripts/testdata/). Needs only awk; scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

echo "==> test-summarize: summarize-messages.awk on testdata/ ($(readlink -f "$(command -v awk)"))"
t=testdata
# The files in two orders must give the same summary, the one in expected.txt.
diff -u "$t/expected.txt" <(awk -f summarize-messages.awk \
  role=labels "$t/labels.csv" role=full "$t/full.log" role=early "$t/early.log")
diff -u "$t/expected.txt" <(awk -f summarize-messages.awk \
  role=early "$t/early.log" role=full "$t/full.log" role=labels "$t/labels.csv")
# No messages, or no role, is an error.
if awk -f summarize-messages.awk role=early /dev/null 2>/dev/null; then
  echo "test-summarize: a log without messages should fail" >&2; exit 1
fi
if awk -f summarize-messages.awk "$t/early.log" 2>/dev/null; then
  echo "test-summarize: a file without role= should fail" >&2; exit 1
fi
echo "==> test-summarize: OK"
