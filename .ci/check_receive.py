"""Reads what `sobot-sync receive` wrote back through the `ddl --dialect duckdb` views of
the push tables, as a user would, and fails unless every push the sender saw
acknowledged is there exactly once: the rows of the four tables add up to the
sender's `acknowledged`, and no key appears twice in its table (the sender repeated some
pushes, as Sobot's retries do).

usage: check_receive.py DDL.sql SENDER_SUMMARY.json
"""
import json
import sys

import duckdb

KEYS = {
    "push_talks": ["call_id"],
    "push_parties": ["party_id"],
    "agent_status_events": ["company_id", "agent_uuid", "start_time", "login_status", "work_status"],
    "call_events": ["event_key"],
}


def main() -> int:
    ddl_path, summary_path = sys.argv[1], sys.argv[2]
    with open(summary_path) as f:
        summary = json.load(f)
    with open(ddl_path) as f:
        ddl = f.read()
    con = duckdb.connect()
    con.execute(ddl)
    total, failed = 0, False
    for table, key in KEYS.items():
        cols = ", ".join(f'"{c}"' for c in key)
        rows, distinct = con.execute(
            f'SELECT count(*), count(DISTINCT ({cols})) FROM "sobot"."{table}"'
        ).fetchone()
        print(f"{table}: {rows} rows, {distinct} distinct keys")
        if rows == 0 or rows != distinct:
            print(f"FAIL {table}: empty, or a key appears twice", file=sys.stderr)
            failed = True
        total += rows
    acked = summary["acknowledged"]
    print(f"rows {total}, acknowledged {acked}")
    if total != acked:
        print(f"FAIL: {total} rows for {acked} acknowledged pushes", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
