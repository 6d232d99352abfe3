#!/usr/bin/env bash
# Bounded fuzz campaign for CI (TOOLING.md §1, "Recommendation for .ci/run"): libFuzzer through
# cargo-fuzz 0.13.2 on the STABLE toolchain (`-s none`: no sanitizer, which would need nightly).
#
#   bash fuzz/run.sh                 # every target FUZZ_SECS (default 40) seconds
#   FUZZ_SECS=10 bash fuzz/run.sh    # shorter
#   bash fuzz/run.sh apdu frame      # only these targets
#
# Each target runs with a throwaway writable corpus dir FIRST (new units go there only) and
# the committed fuzz/corpus/<t> and fuzz/regressions/<t> after it, so nothing committed is
# modified. Exit 0 and "fuzz: N targets clean", or exit 1 and "fuzz: CRASH FOUND" after the
# panic lines and every crashing input as hex (copied to fuzz/artifacts/<t>/ as well).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

SECS=${FUZZ_SECS:-40}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
  echo "fuzz: installing cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked || { echo "fuzz: cannot install cargo-fuzz"; exit 2; }
fi
# -O alone would turn off debug assertions and overflow checks; -O -a keeps them (the same
# build `cargo fuzz run -s none` makes, so local runs and CI share it)
cargo fuzz build -s none --release --debug-assertions || { echo "fuzz: build failed"; exit 2; }

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets"; exit 2; }

# the input as one hex string (xxd may be missing); the first 8 KiB of a large one
hexdump_file() { head -c 8192 "$1" | od -An -tx1 -v | tr -d ' \n'; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ctigate-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail=0
for t in "${targets[@]}"; do
  bin=fuzz/target/$TRIPLE/release/$t
  [ -x "$bin" ] || { echo "fuzz: $t: no binary $bin"; fail=1; continue; }
  mkdir -p "$WORK/$t" "$WORK/artifacts/$t"
  dirs=("$WORK/$t")
  for d in fuzz/corpus/$t fuzz/regressions/$t; do [ -d "$d" ] && dirs+=("$d"); done
  start=$SECONDS
  "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$t/" "${dirs[@]}" >"$WORK/$t.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$WORK/$t.log" | tail -1)
  corp=$(grep -E '^#[0-9]+' "$WORK/$t.log" | tail -1 | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
  if [ $rc -eq 0 ]; then
    echo "fuzz: $t clean: ${execs:-?} execs (${rate:-?}/s) in $((SECONDS - start)) s, corpus ${corp:-?}"
  else
    fail=1
    echo "fuzz: $t FAILED (libFuzzer exit $rc) after ${execs:-?} execs in $((SECONDS - start)) s"
    grep -E -A6 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$WORK/$t.log" | head -40 | sed 's/^/  /'
    mkdir -p "fuzz/artifacts/$t"
    for a in "$WORK/artifacts/$t"/*; do
      [ -f "$a" ] || continue
      cp "$a" "fuzz/artifacts/$t/"
      echo "  crash input fuzz/artifacts/$t/$(basename "$a") ($(wc -c <"$a") octets): $(hexdump_file "$a")"
      echo "  reproduce: cargo fuzz run -s none $t fuzz/artifacts/$t/$(basename "$a")"
    done
  fi
done
if [ $fail -ne 0 ]; then echo "fuzz: CRASH FOUND"; exit 1; fi
echo "fuzz: ${#targets[@]} targets clean"
