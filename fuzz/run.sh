#!/bin/sh
# Runs each libFuzzer target of fuzz/ for FUZZ_SECONDS (default 60) on a working
# corpus under fuzz/build/corpus/<target>/ that starts from the seeds of
# fuzz/corpus/<target>/ and grows from run to run. Prints the executions and
# the corpus size of each target; fails when a target finds a crash, a leak, a
# hang (-timeout) or undefined behaviour, and says where the input is: copy it
# to tests/fuzz_regressions/<target>/ and fix the C.
#   FUZZ_TARGETS   the targets to run (default: all)
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"xml_list xml_reply gzip sigv4 headers credentials"}
OUT=fuzz/build
failed=""
mkdir -p "$OUT/crashes"
printf '%-12s %8s %12s %10s %8s\n' target seconds executions exec/s corpus
for t in $TARGETS; do
    work="$OUT/corpus/$t"
    mkdir -p "$work"
    log="$OUT/fuzz_$t.log"
    "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t-" "$work" "fuzz/corpus/$t" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    files=$(find "$work" -type f | wc -l)
    printf '%-12s %8s %12s %10s %8s\n' "$t" "$SECONDS_EACH" "${execs:-?}" "${rate:-?}" "$files"
    if [ $rc -ne 0 ]; then
        failed="$failed $t"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -5
    fi
done
if [ -n "$failed" ]; then
    echo "fuzzing found failures in:$failed (inputs under $OUT/crashes/, logs $OUT/fuzz_*.log)"
    exit 1
fi
