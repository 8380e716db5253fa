"""The national benchmark's yardstick: DuckDB loads the claims and the
records from CSV and runs a plain grouped join of them (claim lines per
hospital with and without an attested session of the same patient,
hospital and day). Prints load and join times, peak memory and the
result's totals. Run by server/benches/national.rs:

    python duckdb_join.py claims.csv records.csv
"""

import resource
import sys
import time

import duckdb


def main() -> None:
    claims, records = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE claims AS SELECT * FROM read_csv(?, header = true, "
        "types = {'insured_id': 'VARCHAR', 'hospital_code': 'VARCHAR', "
        "'service_date': 'DATE', 'amount_fen': 'BIGINT'})",
        [claims],
    )
    con.execute(
        "CREATE TABLE records AS SELECT * FROM read_csv(?, header = true, "
        "types = {'insured_id': 'VARCHAR', 'hospital_code': 'VARCHAR', "
        "'service_date': 'DATE'})",
        [records],
    )
    loaded = time.perf_counter()
    rows = con.execute(
        """
        WITH attested AS (
            SELECT insured_id, hospital_code, service_date, count(*) AS sessions
            FROM records GROUP BY ALL
        )
        SELECT c.hospital_code,
               count(*) AS lines,
               count(a.sessions) AS with_session,
               sum(c.amount_fen) AS claimed_fen,
               sum(CASE WHEN a.sessions IS NULL THEN c.amount_fen ELSE 0 END) AS unattested_fen
        FROM claims c
        LEFT JOIN attested a USING (insured_id, hospital_code, service_date)
        GROUP BY c.hospital_code
        """
    ).fetchall()
    joined = time.perf_counter()
    n_claims = con.execute("SELECT count(*) FROM claims").fetchone()[0]
    n_records = con.execute("SELECT count(*) FROM records").fetchone()[0]
    lines = sum(r[1] for r in rows)
    unattested = sum(r[1] - r[2] for r in rows)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"duckdb {duckdb.__version__}: {n_records} records, {n_claims} claim lines "
        f"-> {len(rows)} hospitals, {lines} lines, {unattested} without a session; "
        f"load {loaded - started:.1f} s, join {joined - loaded:.1f} s, "
        f"total {joined - started:.1f} s, peak {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
