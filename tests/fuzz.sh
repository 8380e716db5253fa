#!/usr/bin/env bash
# Fuzz targets for every parser of untrusted bytes (cargo-fuzz, libFuzzer).
#
#   tests/fuzz.sh smoke          every target for a few seconds (CI)
#   tests/fuzz.sh long [SECS]    every target for SECS seconds (default 600)
#   tests/fuzz.sh run DIR TARGET [libFuzzer args...]
#
# Only stable Rust is available here, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz
# pass its sanitizer flags to the stable compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

FUZZ_DIRS=()
for d in protocol/fuzz hardware/fuzz; do
  [ -f "$d/Cargo.toml" ] && FUZZ_DIRS+=("$d")
done

run_target() { # dir target seconds
  local dir=$1 target=$2 secs=$3
  local crate=${dir%/fuzz}
  local corpus="$dir/corpus/$target"
  mkdir -p "$corpus"
  if [ -d "$dir/seeds/$target" ]; then cp -n "$dir/seeds/$target"/* "$corpus"/ 2>/dev/null || true; fi
  echo "fuzz $crate/$target for ${secs}s"
  (cd "$crate" && cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" -- \
     -max_total_time="$secs" -max_len=70000 -print_final_stats=1 2>&1 | tail -n 4)
}

targets_of() { (cd "${1%/fuzz}" && cargo fuzz list); }

case "${1:-smoke}" in
  smoke) for d in "${FUZZ_DIRS[@]}"; do for t in $(targets_of "$d"); do run_target "$d" "$t" 8; done; done ;;
  long)  for d in "${FUZZ_DIRS[@]}"; do for t in $(targets_of "$d"); do run_target "$d" "$t" "${2:-600}"; done; done ;;
  run)   shift; run_target "$1" "$2" "${3:-60}" ;;
  *) echo "usage: tests/fuzz.sh smoke|long [SECS]|run DIR TARGET [SECS]" >&2; exit 2 ;;
esac
