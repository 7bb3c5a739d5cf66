#!/usr/bin/env bash
# kill -9 at random moments during the quickstart, N times (default 50): after
# each kill a normal run must finish and write the same bytes (tables,
# reports) as an uninterrupted run. Prints one line per kill and a total.
#
#   benches/kill9.sh [N] [path/to/gigo]     (default: target/debug/gigo)
#
# Every killed run is forced (`--force`), so each kill lands in a stage's work
# or in the writing of its cache entry; all runs share one cache.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
gigo=$(realpath "${2:-target/debug/gigo}")
qs=$(realpath examples/quickstart.yaml)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ref" "$work/k"

outputs() { # the files that must not depend on interruptions, with their hashes
  (cd "$1" && find . \( -name '*.parquet' -o -name '*.md' -o -name '*.html' -o -name report.json \) \
      -type f -print0 | sort -z | xargs -0 sha256sum)
}

t0=$(date +%s.%N)
(cd "$work/ref" && "$gigo" run "$qs" --run-id r -q >/dev/null)
full=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
expected=$(outputs "$work/ref/runs/r")
echo "uninterrupted quickstart: ${full}s, $(echo "$expected" | wc -l) files compared"

RANDOM=7
same=0
differ=0
for i in $(seq 1 "$n"); do
  delay=$(awk -v f="$full" -v r="$RANDOM" 'BEGIN { printf "%.3f", f * r / 32768 }')
  (cd "$work/k" && exec "$gigo" run "$qs" --run-id "k$i" --force -q >/dev/null 2>&1) &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null && was=killed || was=finished
  wait "$pid" 2>/dev/null || true
  done_before=$(grep -c '"status": "ran"' "$work/k/runs/k$i/run.json" 2>/dev/null || echo 0)
  line=$(cd "$work/k" && "$gigo" run "$qs" --run-id "r$i" -q 2>&1 | tail -n 1)
  if [ "$(outputs "$work/k/runs/r$i")" = "$expected" ]; then
    same=$((same + 1)); verdict=identical
  else
    differ=$((differ + 1)); verdict=DIFFERENT
  fi
  printf 'kill %2d at %6.3fs (%s, %2d stages done): %s; %s\n' \
    "$i" "$delay" "$was" "$done_before" "${line#run r$i }" "$verdict"
done
echo "$n kills: $same resumed runs identical, $differ different"
[ "$differ" -eq 0 ]
