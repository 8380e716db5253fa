#!/usr/bin/env bash
# The national benchmark (issue 8): a month of 1,000,000 patients
# (~13 million records and ~13 million claim lines) reconciled from the
# SQLite store, against DuckDB loading the same claims and records from CSV
# and running a plain grouped join of them.
#
#     tests/national-bench.sh                       # 1,000,000 patients
#     WUDING_NATIONAL_PATIENTS=200000 tests/national-bench.sh
#
# Step 1 (once; kept in $WUDING_NATIONAL_DIR, default target/national):
# builds the store the way a fund would, province by province: `wuding-sim
# generate --province P` writes a 50,000-patient month of one province and
# the server's own import commands load it (`import-records` verifies every
# signature and chain link). The first province alone is also kept as the
# province store. About an hour (22 GB) for the national month on 2 cores.
# Step 2: `cargo bench -p wuding-server --bench national` reconciles the
# province and the national store (each in a fresh process, so peak memory
# is the run's own), writes the records as CSV beside the claims, and runs
# DuckDB (pip, in a venv made from tests/python/requirements-bench.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${WUDING_NATIONAL_DIR:-$ROOT/target/national}
PATIENTS=${WUDING_NATIONAL_PATIENTS:-1000000}
PER=50000
MONTH=2026-10
# Province codes (first two digits of the division codes), one per region.
PROVINCES=(51 11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 52 53 54 61 62 63 64 65)
REGIONS=$(( (PATIENTS + PER - 1) / PER ))
if (( REGIONS > ${#PROVINCES[@]} )); then
    echo "at most $(( ${#PROVINCES[@]} * PER )) patients (one province per $PER)" >&2
    exit 2
fi

cargo build --release --locked -p wuding-firmware-host --bin wuding-sim -p wuding-server --bin wuding-server
SIM=$ROOT/target/release/wuding-sim
SRV=$ROOT/target/release/wuding-server

STORE=$DIR/national-$PATIENTS
if [[ ! -f $STORE/done ]]; then
    rm -rf "$STORE"
    mkdir -p "$STORE"
    started=$(date +%s)
    left=$PATIENTS
    for (( i = 0; i < REGIONS; i++ )); do
        p=${PROVINCES[$i]}
        n=$(( left < PER ? left : PER ))
        left=$(( left - n ))
        gen=$STORE/gen
        rm -rf "$gen"
        "$SIM" generate --patients "$n" --month "$MONTH" --seed "$p" --province "$p" --out "$gen" | sed -n 1p
        db=$STORE/national.db
        for what in terminals roster staff plans prices claims; do
            "$SRV" "import-$what" "$gen/$what.csv" --db "$db" > /dev/null
        done
        "$SRV" import-records "$gen/records.jsonl" --receipts "$gen/receipts.csv" \
            --db "$db" --log-key-file "$STORE/log.key" > /dev/null
        if (( i == 0 )); then
            tail -n +1 "$gen/claims.csv" > "$STORE/claims.csv"
            cp "$db" "$STORE/province.db"
        else
            tail -n +2 "$gen/claims.csv" >> "$STORE/claims.csv"
        fi
        cat "$gen/truth.csv" >> "$STORE/truth.csv"
        rm -rf "$gen"
        echo "province $p loaded ($(( $(date +%s) - started )) s so far)"
    done
    date -u +%FT%TZ > "$STORE/done"
fi

VENV=$DIR/venv
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r tests/python/requirements-bench.txt
fi

WUDING_NATIONAL_STORE=$STORE WUDING_DUCKDB_PYTHON=$VENV/bin/python \
    cargo bench --locked -p wuding-server --bench national
