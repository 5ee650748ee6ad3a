#!/usr/bin/env bash
# run-all.sh - run every krust fuzz target in turn (nightly + cargo-fuzz), then minimize.
#
#   fuzz/run-all.sh [RUNS] [SECONDS] [TARGET...]     defaults: 1000000 runs or 600 s per target
#
# New inputs go to a scratch corpus; afterwards each target's corpus/<target>/ is replaced by a
# minimized merge (seed-* files and captured responses are kept as they are), capped at 300
# files. Crashes land in artifacts/<target>/: copy them to regressions/<target>/ once fixed so
# that tests/corpus.rs replays them on stable.
set -euo pipefail
cd "$(dirname "$0")"
RUNS="${1:-1000000}"
SECS="${2:-600}"
shift $(( $# > 2 ? 2 : $# ))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame_reader responses record_batch codec_gzip codec_snappy codec_lz4 codec_zstd roundtrip group_protocol group_assign fetch scram)
SCRATCH="${FUZZ_SCRATCH:-/tmp/krust-fuzz}"
# A smaller ASan quarantine keeps RSS well under the limit with multi-MiB decompressions.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=32}"
FLAGS=(-rss_limit_mb=512 -malloc_limit_mb=256 -runs="$RUNS" -max_total_time="$SECS" -print_final_stats=1)
cargo +nightly fuzz build -O -a >/dev/null
for t in "${TARGETS[@]}"; do
  mkdir -p "$SCRATCH/$t" "corpus/$t"
  echo "== $t"
  cargo +nightly fuzz run -O -a "$t" "$SCRATCH/$t" "corpus/$t" -- "${FLAGS[@]}" 2>&1 |
    tee "$SCRATCH/$t.log" | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked|ERROR" || true
  rm -rf "$SCRATCH/$t.min" && mkdir -p "$SCRATCH/$t.min"
  cargo +nightly fuzz run -O -a "$t" "$SCRATCH/$t.min" "corpus/$t" "$SCRATCH/$t" -- -merge=1 \
    -rss_limit_mb=512 -malloc_limit_mb=256 >/dev/null 2>&1 || true
  find "corpus/$t" -type f ! -name 'seed-*' ! -name '*-v*' -delete
  # Keep the 300 smallest (`|| true`: head closing the pipe early is not a failure).
  { ls -Sr "$SCRATCH/$t.min" || true; } | head -n 300 | while read -r f; do cp "$SCRATCH/$t.min/$f" "corpus/$t/"; done
done
