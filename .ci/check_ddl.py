"""Runs `sobot-sync ddl --dialect duckdb` output in DuckDB against the demo warehouse, as a
user would, and fails unless every table the demo wrote has a view whose count(*) equals
the rows the demo reports (its --summary-json), and every view column has the type the
DDL says (the `-- TYPE` comment after each column).

usage: check_ddl.py DDL.sql SUMMARY.json
"""
import json
import re
import sys

import duckdb

COLUMN = re.compile(r'^\s+"((?:[^"]|"")+)",?\s+--\s+(.+?)\s*$')
VIEW = re.compile(r'^CREATE OR REPLACE VIEW "((?:[^"]|"")+)"\."((?:[^"]|"")+)" AS SELECT$')


def declared(sql: str) -> dict:
    """{(schema, view): [(column, type), ...]} from the script's text."""
    out, current = {}, None
    for line in sql.splitlines():
        m = VIEW.match(line)
        if m:
            current = (m.group(1), m.group(2))
            out[current] = []
            continue
        m = COLUMN.match(line)
        if m and current:
            out[current].append((m.group(1).replace('""', '"'), m.group(2)))
        elif line.startswith("FROM "):
            current = None
    return out


def main() -> int:
    sql_path, summary_path = sys.argv[1], sys.argv[2]
    with open(sql_path) as f:
        sql = f.read()
    with open(summary_path) as f:
        summary = json.load(f)["tables"]
    views = declared(sql)
    con = duckdb.connect()
    con.execute(sql)
    ok = True
    by_table = {view: (schema, view) for (schema, view) in views}
    for table, written in sorted(summary.items()):
        if table not in by_table:
            print(f"FAIL {table}: the demo wrote it but the DDL has no view for it")
            ok = False
            continue
        schema, view = by_table[table]
        count = con.execute(f'SELECT count(*) FROM "{schema}"."{view}"').fetchone()[0]
        described = [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{schema}"."{view}"').fetchall()]
        types_ok = described == views[(schema, view)]
        rows_ok = count == written["rows"] and count > 0
        status = "ok" if rows_ok and types_ok else "FAIL"
        print(f"{status:4} {table}: {count} rows in DuckDB, {written['rows']} written, {len(described)} columns")
        if not types_ok:
            for got, want in zip(described, views[(schema, view)]):
                if got != want:
                    print(f"     column {want[0]}: DDL says {want[1]}, DuckDB reads {got}")
            if len(described) != len(views[(schema, view)]):
                print(f"     {len(described)} columns read, {len(views[(schema, view)])} declared")
        ok &= status == "ok"
    missing = sorted(v for v in by_table if v not in summary)
    if missing:
        print(f"FAIL views without a demo table: {', '.join(missing)}")
        ok = False
    dts = con.execute(
        f'SELECT typeof(dt) FROM "{by_table["talks"][0]}"."talks" LIMIT 1'
    ).fetchone()[0]
    if dts != "VARCHAR":
        print(f"FAIL talks.dt is {dts}, not VARCHAR")
        ok = False
    print("ddl check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
