#!/usr/bin/env bash
# Runs every test of wuding on a fresh Debian machine with Rust installed:
# installs what the tests need (from the project's own files), then runs the
# Rust suites (nextest + doctests), the Python suites (third-party clients and
# an independent Ed25519 implementation) and short fuzz smokes.
#
#   tests/run-all.sh            everything
#   WUDING_SKIP_FUZZ=1 ...      without the fuzz smoke
#
# PostgreSQL: tests use $WUDING_TEST_PG (default postgres://postgres@127.0.0.1:5432/test)
# and fail, not skip, when it is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '\n== %s\n' "$*"; }

# ---- system packages ---------------------------------------------------------
APT_UPDATED=
need_deb() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    if [ -z "$APT_UPDATED" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need_deb python3-venv pkg-config
if [ -f tests/debian-packages.txt ]; then
  # shellcheck disable=SC2046
  need_deb $(grep -v '^#' tests/debian-packages.txt)
fi

# ---- Rust tools --------------------------------------------------------------
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

# ---- PostgreSQL ----------------------------------------------------------------
export WUDING_TEST_PG=${WUDING_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# ---- Python virtualenv ---------------------------------------------------------
say "Python test tools (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
export WUDING_PYTHON="$ROOT/.venv/bin/python"

# ---- Rust ----------------------------------------------------------------------
say "build"
cargo build --workspace --all-targets --locked
say "Rust tests (nextest)"
cargo nextest run --workspace --all-targets --locked --no-fail-fast
say "doctests"
cargo test --workspace --doc --locked

# ---- Python: third-party clients against our emulators, independent verifiers -
say "Python tests"
export WUDING_SIM="$ROOT/target/debug/wuding-sim"
.venv/bin/python -m pytest -q tests/python

# ---- fuzz smoke ------------------------------------------------------------------
if [ -z "${WUDING_SKIP_FUZZ:-}" ]; then
  say "fuzz smoke"
  tests/fuzz.sh smoke
fi

say "all tests passed"
