"""Compacts tables of the demo warehouse while DuckDB counts their rows in a loop through
the `ddl` views, and fails if any count differs from the rows the demo wrote. A query that
fails because a file vanished between DuckDB's listing and its read is retried, as the
docs/operations.md (Compaction) says a reader must; it is counted, never taken as a count.

usage: check_compact.py DDL.sql SUMMARY.json NOW BINARY [ARGS...] -- TABLE...
  e.g. check_compact.py ddl.sql summary.json 2024-03-04T01:00:00+08:00 target/release/sobot-sync -- talks parties
"""
import json
import subprocess
import sys

import duckdb


def main() -> int:
    sql_path, summary_path, now = sys.argv[1:4]
    rest = sys.argv[4:]
    split = rest.index("--")
    binary, tables = rest[:split], rest[split + 1:]
    with open(sql_path) as f:
        sql = f.read()
    with open(summary_path) as f:
        expected = {t: v["rows"] for t, v in json.load(f)["tables"].items()}
    con = duckdb.connect()
    con.execute(sql)
    ok = True
    for table in tables:
        want = expected[table]
        proc = subprocess.Popen(binary + ["compact", table, "--now", now],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        good, retried, wrong = 0, 0, []
        while True:
            running = proc.poll() is None
            try:
                n = con.execute(f'SELECT count(*) FROM "sobot"."{table}"').fetchone()[0]
                if n == want:
                    good += 1
                else:
                    wrong.append(n)
            except duckdb.Error as e:
                retried += 1
                if retried <= 3:
                    print(f"     {table}: retried after: {str(e).splitlines()[0][:120]}")
            if not running:
                break
        out, err = proc.communicate()
        status = "ok" if proc.returncode == 0 and not wrong else "FAIL"
        print(f"{status:4} compact {table}: {good} consistent counts of {want}, {retried} retried, "
              f"wrong counts {wrong[:5]}; {out.strip()}")
        if proc.returncode != 0:
            print(err)
        ok &= status == "ok"
    print("compact check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
