#!/usr/bin/env bash
# Instructions per cache hit of the core, counted by callgrind: a figure
# the machine's load does not move (criterion's wall-clock figures do).
#
#   bash scripts/bench-hit-instructions.sh [HITS]
#
# Runs core/examples/hit_cost.rs with 10 and with HITS + 10 hits per case
# and divides the difference by HITS. Needs valgrind (Debian `valgrind`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HITS=${1:-20000}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p syncoord-core --example hit_cost
BIN=target/release/examples/hit_cost
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$@" 2>&1 | awk '/Collected/ {print $4}'; }
echo "| hit | instructions per hit |"
echo "|---|---|"
for case in ${CASES:-ticker private directives varied}; do
    base=$(count "$case" 10)
    total=$(count "$case" $((HITS + 10)))
    echo "| $case | $(( (total - base) / HITS )) |"
done
