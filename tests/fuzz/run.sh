#!/bin/sh
# Short libFuzzer runs over the committed corpora (copied, so the run never
# writes into the source tree). FUZZ_SECONDS sets the time per target.
set -eu
secs=${FUZZ_SECONDS:-10}
status=0
for t in channel proto dns sniff http_request http_response files; do
	bin="$top_builddir/tests/fuzz/fuzz_$t"
	if [ ! -x "$bin" ]; then
		echo "FAIL: $bin was not built (clang is needed for libFuzzer: apt-get install clang)"
		status=1
		continue
	fi
	work=$(mktemp -d)
	cp "$top_srcdir/tests/fuzz/corpus/$t/"* "$work/"
	if "$bin" -max_total_time="$secs" -max_len=300000 -rss_limit_mb=1024 \
		-print_final_stats=1 "$work" >"$work.log" 2>&1; then
		echo "PASS: fuzz_$t $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log")"
	else
		echo "FAIL: fuzz_$t"
		tail -40 "$work.log"
		status=1
	fi
	rm -rf "$work" "$work.log"
done
exit $status
