"""Reads every table of a demo warehouse with DuckDB, as a user would, and fails on any
error, an empty table, a duplicated key or a row whose dt is not its time column's date;
for recordings also on a row whose stored MP3 is missing or differs from it."""
import hashlib
import os
import sys

import duckdb

KEYS = {
    "talks": ("call_id", "start_time"),
    "parties": ("party_id", "call_start_time"),
    "agent_histories": ("id", "start_time"),
    # Report tables: key (period_start, id), dt of period_start (CONTRACT section 4).
    "report_gateway_numbers": (("period_start", "gateway_number"), "period_start"),
    "report_agents_inbound": (("period_start", "service_id"), "period_start"),
    "report_agents_outbound": (("period_start", "service_id"), "period_start"),
    "report_agents_status": (("period_start", "service_id"), "period_start"),
    "report_departments_inbound": (("period_start", "depart_id"), "period_start"),
    "report_departments_outbound": (("period_start", "depart_id"), "period_start"),
    "indicator_plans": ("id", "snapshot_time"),
    # Composite key (agent_uuid, snapshot_time) as one expression: null if either part is.
    "agent_metrics": ("agent_uuid || '|' || CAST(snapshot_time AS VARCHAR)", "snapshot_time"),
    # One row per stored MP3 (recordings/dt=.../<call_id>.mp3); see check_recordings.
    "recordings": ("call_id", "start_time"),
}
TZ = "Asia/Singapore"

def check_recordings(con, root: str) -> bool:
    """Every recordings row names a stored object whose size and SHA-256 are the row's."""
    rows = con.execute(
        f"""SELECT call_id, object_path, size_bytes, sha256
            FROM read_parquet('{root}/recordings/**/*.parquet', hive_partitioning = true)"""
    ).fetchall()
    bad = []
    for call_id, path, size, sha in rows:
        try:
            with open(os.path.join(root, path), "rb") as f:
                data = f.read()
        except OSError as e:
            bad.append(f"{call_id}: {e}")
            continue
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            bad.append(f"{call_id}: {path} has {len(data)} bytes, the row says {size}, or its sha256 differs")
    status = "ok" if rows and not bad else "FAIL"
    print(f"{status:4} recordings objects: {len(rows)} rows, {len(bad)} objects missing or different")
    for b in bad[:5]:
        print(f"     {b}")
    return status == "ok"


def main() -> int:
    root, tables = sys.argv[1], sys.argv[2:]
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{TZ}'")
    failed = False
    for table in tables:
        key, time_col = KEYS[table]
        cols = (key,) if isinstance(key, str) else key
        key = f"({', '.join(cols)})" if len(cols) > 1 else cols[0]
        null_key = " OR ".join(f"{c} IS NULL" for c in cols)
        src = f"read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true)"
        try:
            rows, keys, bad_dt, nulls = con.execute(
                f"""SELECT count(*), count(DISTINCT {key}),
                           count(*) FILTER (WHERE CAST({time_col} AS DATE) <> dt),
                           count(*) FILTER (WHERE {null_key})
                    FROM {src}"""
            ).fetchone()
        except Exception as e:  # noqa: BLE001 - any read error fails CI
            print(f"FAIL {table}: {e}")
            failed = True
            continue
        status = "ok" if rows > 0 and rows == keys and bad_dt == 0 and nulls == 0 else "FAIL"
        failed |= status != "ok"
        print(f"{status:4} {table}: {rows} rows, {keys} distinct {key}, {bad_dt} rows with a wrong dt, {nulls} null keys")
    if "recordings" in tables and not failed:
        failed |= not check_recordings(con, root)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
