//! `ddl`: the statements that make every table queryable in Trino (Hive connector) and
//! DuckDB, derived from each table's Arrow schema.
//!
//! Every table kind (search, children, report, snapshot, reference, recordings) carries
//! its Arrow schema in `Pipeline::schema.arrow`, the very schema its Parquet files are
//! written with, so one code path covers them all and the DDL cannot drift from the
//! files. The partition columns come from [`partition_columns`] alone.
//!
//! Type choices (both engines read them from our Parquet without casts):
//! - `TIMESTAMP(ms, UTC)` (Parquet INT64 `TIMESTAMP(MILLIS, isAdjustedToUTC = true)`):
//!   DuckDB reads it as `TIMESTAMP WITH TIME ZONE`. Trino's Hive connector stores table
//!   types in the Hive metastore, which has no zoned timestamp, and `CREATE TABLE`
//!   there accepts only `timestamp` / `timestamp(3)`; it reads our INT64 instants into
//!   `timestamp(3)` as wall-clock times in the catalog's `hive.parquet.time-zone` (set it
//!   to UTC; see docs/warehouse.md, "ddl").
//! - `dt` is `VARCHAR` in both: a Hive partition value is a path string, the metastore
//!   keeps it as text, and DuckDB would otherwise guess DATE for some engines' queries
//!   and not others. ISO dates compare and sort like dates, and `dt >= '2024-03-01'`
//!   prunes partitions in both engines.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::core::pipeline::Pipeline;
use arrow::datatypes::{DataType, Schema, TimeUnit};
use std::fmt::Write as _;
use std::path::Path;

/// The SQL engine the statements are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Trino with the Hive connector: external tables plus the partition sync call.
    Trino,
    /// DuckDB: views over `read_parquet` with Hive partitioning.
    Duckdb,
}

/// The Hive partition columns of every table, outermost first, as `<table>/<col>=<v>/…`
/// lays them out. The one place that knows them, so a new level (a `tenant=` above
/// `dt`) is added here and every dialect follows.
pub fn partition_columns(settings: &Settings) -> Vec<&'static str> {
    if settings.tenants.is_empty() {
        vec!["dt"]
    } else {
        vec!["tenant", "dt"]
    }
}

/// One table's DDL input: name, data columns (in file order) and partition columns.
#[derive(Debug, Clone)]
pub struct TableDef<'a> {
    pub table: &'a str,
    pub doc: Option<&'a str>,
    pub schema: &'a Schema,
    pub partitions: &'a [&'a str],
}

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error("table {table}, column {column}: type {ty} has no {dialect:?} mapping")]
    Type {
        table: String,
        column: String,
        ty: DataType,
        dialect: Dialect,
    },
    #[error("{0}")]
    Location(String),
}

/// The column type a dialect declares for an Arrow type of our files.
pub fn sql_type(dialect: Dialect, ty: &DataType) -> Option<&'static str> {
    let utc = |tz: &Option<std::sync::Arc<str>>| tz.as_deref().is_some_and(is_utc);
    Some(match (dialect, ty) {
        (Dialect::Trino, DataType::Utf8 | DataType::LargeUtf8) => "varchar",
        (Dialect::Trino, DataType::Int64) => "bigint",
        (Dialect::Trino, DataType::Int32) => "integer",
        (Dialect::Trino, DataType::Float64) => "double",
        (Dialect::Trino, DataType::Boolean) => "boolean",
        (Dialect::Trino, DataType::Date32) => "date",
        (Dialect::Trino, DataType::Timestamp(TimeUnit::Millisecond, tz)) if utc(tz) => {
            "timestamp(3)"
        }
        (Dialect::Duckdb, DataType::Utf8 | DataType::LargeUtf8) => "VARCHAR",
        (Dialect::Duckdb, DataType::Int64) => "BIGINT",
        (Dialect::Duckdb, DataType::Int32) => "INTEGER",
        (Dialect::Duckdb, DataType::Float64) => "DOUBLE",
        (Dialect::Duckdb, DataType::Boolean) => "BOOLEAN",
        (Dialect::Duckdb, DataType::Date32) => "DATE",
        (Dialect::Duckdb, DataType::Timestamp(TimeUnit::Millisecond, tz)) if utc(tz) => {
            "TIMESTAMP WITH TIME ZONE"
        }
        _ => return None,
    })
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "+00:00" | "Z" | "Etc/UTC")
}

/// The partition column type: text in both dialects (see the module doc).
fn partition_type(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Trino => "varchar",
        Dialect::Duckdb => "VARCHAR",
    }
}

/// `"name"`, with embedded quotes doubled: report indicators keep the API's mixed case.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The base every table's folder is under, as the dialect's engine must see it.
/// Trino reads object storage only, so a `file://` warehouse needs `--location`;
/// DuckDB gets a local path for `file://` (made absolute against `cwd`) and the URL
/// as it is for `s3://`.
pub fn base_location(dialect: Dialect, url: &str, cwd: &Path) -> Result<String, DdlError> {
    let url = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("file://") {
        if dialect == Dialect::Trino {
            return Err(DdlError::Location(format!(
                "{url}: Trino's Hive connector reads tables from object storage; give the bucket URL the warehouse is synced to (--location s3://bucket/prefix)"
            )));
        }
        if rest.starts_with('/') {
            let parsed = url::Url::parse(url)
                .map_err(|e| DdlError::Location(format!("{url}: not a valid file URL: {e}")))?;
            let path = parsed
                .to_file_path()
                .map_err(|()| DdlError::Location(format!("{url}: not a local absolute path")))?;
            return Ok(path.display().to_string());
        }
        if rest.is_empty() {
            return Err(DdlError::Location(format!("{url}: no path after file://")));
        }
        let rel = rest.strip_prefix("./").unwrap_or(rest);
        return Ok(cwd.join(rel).display().to_string());
    }
    let scheme_ok = match dialect {
        Dialect::Trino => ["s3://", "s3a://", "gs://", "abfs://", "abfss://", "hdfs://"]
            .iter()
            .any(|s| url.starts_with(s)),
        Dialect::Duckdb => ["s3://", "gs://", "az://", "abfss://", "http://", "https://"]
            .iter()
            .any(|s| url.starts_with(s)),
    };
    if !scheme_ok {
        return Err(DdlError::Location(format!(
            "{url}: use s3://bucket/prefix{}",
            if dialect == Dialect::Duckdb {
                " or a file:// URL"
            } else {
                ""
            }
        )));
    }
    Ok(url.to_string())
}

/// The statements for one table.
pub fn table_ddl(
    dialect: Dialect,
    schema_name: &str,
    base: &str,
    t: &TableDef<'_>,
) -> Result<String, DdlError> {
    let mut columns = Vec::with_capacity(t.schema.fields().len() + t.partitions.len());
    for f in t.schema.fields() {
        let ty = sql_type(dialect, f.data_type()).ok_or_else(|| DdlError::Type {
            table: t.table.to_string(),
            column: f.name().clone(),
            ty: f.data_type().clone(),
            dialect,
        })?;
        columns.push((f.name().as_str(), ty));
    }
    // A file column named like a partition column would clash with it in both engines.
    columns.retain(|(name, _)| !t.partitions.contains(name));
    for p in t.partitions {
        columns.push((p, partition_type(dialect)));
    }
    let location = format!("{base}/{}", t.table);
    let qualified = format!("{}.{}", ident(schema_name), ident(t.table));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- {}{}",
        t.table,
        t.doc.map(|d| format!(": {d}")).unwrap_or_default()
    );
    match dialect {
        Dialect::Trino => {
            let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {qualified} (");
            let last = columns.len().saturating_sub(1);
            for (i, (name, ty)) in columns.iter().enumerate() {
                let comma = if i == last { "" } else { "," };
                let _ = writeln!(out, "  {} {ty}{comma}", ident(name));
            }
            let parts: Vec<String> = t.partitions.iter().map(|p| literal(p)).collect();
            let _ = writeln!(out, ")\nWITH (");
            let _ = writeln!(out, "  external_location = {},", literal(&location));
            let _ = writeln!(out, "  format = 'PARQUET',");
            let _ = writeln!(out, "  partitioned_by = ARRAY[{}]", parts.join(", "));
            let _ = writeln!(out, ");");
            // FULL: adds new partitions and drops those whose folder is gone.
            let _ = writeln!(
                out,
                "CALL system.sync_partition_metadata(schema_name => {}, table_name => {}, mode => 'FULL');",
                literal(schema_name),
                literal(t.table)
            );
        }
        Dialect::Duckdb => {
            let _ = writeln!(out, "CREATE OR REPLACE VIEW {qualified} AS SELECT");
            let last = columns.len().saturating_sub(1);
            for (i, (name, ty)) in columns.iter().enumerate() {
                let comma = if i == last { "" } else { "," };
                let _ = writeln!(out, "  {}{comma} -- {ty}", ident(name));
            }
            let hive_types: Vec<String> = t
                .partitions
                .iter()
                .map(|p| format!("{}: {}", literal(p), literal(partition_type(dialect))))
                .collect();
            let glob = format!("{location}/**/*.parquet");
            // union_by_name: files written before a schema gained a column read it as null.
            let _ = writeln!(
                out,
                "FROM read_parquet({}, hive_partitioning = true, hive_types = {{{}}}, union_by_name = true);",
                literal(&glob),
                hive_types.join(", ")
            );
        }
    }
    Ok(out)
}

/// The whole script: the schema, then every table in name order.
pub fn script(
    dialect: Dialect,
    schema_name: &str,
    base: &str,
    tables: &[TableDef<'_>],
) -> Result<String, DdlError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- sobot-sync ddl --dialect {}: {} table(s) under {base}",
        match dialect {
            Dialect::Trino => "trino",
            Dialect::Duckdb => "duckdb",
        },
        tables.len()
    );
    if dialect == Dialect::Trino {
        let _ = writeln!(
            out,
            "-- Timestamps are UTC instants: set hive.parquet.time-zone=UTC in the Hive catalog to read them as UTC."
        );
    }
    if dialect == Dialect::Duckdb && base.contains("://") {
        let _ = writeln!(
            out,
            "-- Remote files: DuckDB needs the httpfs extension and credentials, e.g.\n-- INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', REGION '...');"
        );
    }
    let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {};", ident(schema_name));
    for t in tables {
        out.push('\n');
        out.push_str(&table_ddl(dialect, schema_name, base, t)?);
    }
    Ok(out)
}

/// Arguments of the `ddl` command.
#[derive(Debug, Clone)]
pub struct Args {
    pub dialect: Dialect,
    pub location: Option<String>,
    pub schema: String,
    pub tables: Vec<String>,
}

/// `sobot-sync ddl`: prints the script for the enabled tables (or the named ones).
pub fn run(config: Option<&Path>, args: &Args) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    let text = render(&settings, args)?;
    print!("{text}");
    Ok(())
}

/// The script `run` prints, for tests and other callers.
pub fn render(settings: &Settings, args: &Args) -> Result<String, CommandError> {
    if args.schema.is_empty()
        || !args
            .schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(CommandError::Config(format!(
            "--schema {:?}: use letters, digits and _",
            args.schema
        )));
    }
    let catalog = crate::app::setup::load_catalog(settings)?;
    // The push tables of `receive` are named explicitly: a warehouse without a receiver
    // has no such folders, and a DuckDB view over no files fails when it is created.
    let push =
        crate::core::push::tables::load(&settings.schemas_dir).map_err(CommandError::Config)?;
    let mut pipelines: Vec<&Pipeline> = Vec::new();
    let mut pushed: Vec<&crate::core::schema::TableSchema> = Vec::new();
    if args.tables.is_empty() {
        pipelines = catalog.select(&[]).map_err(CommandError::Config)?;
    }
    for t in &args.tables {
        if let Some(p) = catalog.pipelines.values().find(|p| &p.table == t) {
            pipelines.push(p);
        } else if let Some(s) = push.values().find(|s| &s.table == t) {
            pushed.push(s);
        } else {
            let mut known: Vec<&str> = catalog
                .pipelines
                .values()
                .map(|p| p.table.as_str())
                .chain(push.values().map(|s| s.table.as_str()))
                .collect();
            known.sort_unstable();
            return Err(CommandError::Config(format!(
                "unknown table {t:?}; defined: {}",
                known.join(", ")
            )));
        }
    }
    let url = args.location.as_deref().unwrap_or(&settings.warehouse);
    let cwd = std::env::current_dir()
        .map_err(|e| CommandError::Config(format!("--location: no current directory: {e}")))?;
    let base = base_location(args.dialect, url, &cwd).map_err(|e| match &args.location {
        Some(_) => CommandError::Config(format!("--location {e}")),
        None => CommandError::Config(format!(
            "setting SOBOT_SYNC_WAREHOUSE {e} (or pass --location)"
        )),
    })?;
    let partitions = partition_columns(settings);
    // `receive` serves every company from one endpoint: its tables have no tenant level.
    let push_partitions = ["dt"];
    let mut defs: Vec<TableDef<'_>> = pipelines
        .iter()
        .map(|p| TableDef {
            table: &p.table,
            doc: p.schema.doc.as_deref(),
            schema: &p.schema.arrow,
            partitions: &partitions,
        })
        .chain(pushed.iter().map(|s| TableDef {
            table: &s.table,
            doc: s.doc.as_deref(),
            schema: &s.arrow,
            partitions: &push_partitions,
        }))
        .collect();
    defs.sort_by(|a, b| a.table.cmp(b.table));
    script(args.dialect, &args.schema, &base, &defs)
        .map_err(|e| CommandError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn schema() -> Schema {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        Schema::new(vec![
            Field::new("call_id", DataType::Utf8, true),
            Field::new("call_type", DataType::Int64, true),
            Field::new("agentOnline_percent", DataType::Float64, true),
            Field::new("is_ok", DataType::Boolean, true),
            Field::new("start_time", ts, true),
        ])
    }

    fn def(s: &Schema) -> TableDef<'_> {
        TableDef {
            table: "talks",
            doc: Some("One row per call."),
            schema: s,
            partitions: &["dt"],
        }
    }

    #[test]
    fn trino_is_an_external_hive_table_partitioned_by_dt_then_synced() {
        let s = schema();
        let text = table_ddl(Dialect::Trino, "sobot", "s3://b/p", &def(&s)).unwrap();
        let expected = "\
-- talks: One row per call.
CREATE TABLE IF NOT EXISTS \"sobot\".\"talks\" (
  \"call_id\" varchar,
  \"call_type\" bigint,
  \"agentOnline_percent\" double,
  \"is_ok\" boolean,
  \"start_time\" timestamp(3),
  \"dt\" varchar
)
WITH (
  external_location = 's3://b/p/talks',
  format = 'PARQUET',
  partitioned_by = ARRAY['dt']
);
CALL system.sync_partition_metadata(schema_name => 'sobot', table_name => 'talks', mode => 'FULL');
";
        assert_eq!(text, expected);
    }

    #[test]
    fn duckdb_is_a_view_over_read_parquet_with_dt_as_text() {
        let s = schema();
        let text = table_ddl(Dialect::Duckdb, "sobot", "/data/wh", &def(&s)).unwrap();
        let expected = "\
-- talks: One row per call.
CREATE OR REPLACE VIEW \"sobot\".\"talks\" AS SELECT
  \"call_id\", -- VARCHAR
  \"call_type\", -- BIGINT
  \"agentOnline_percent\", -- DOUBLE
  \"is_ok\", -- BOOLEAN
  \"start_time\", -- TIMESTAMP WITH TIME ZONE
  \"dt\" -- VARCHAR
FROM read_parquet('/data/wh/talks/**/*.parquet', hive_partitioning = true, hive_types = {'dt': 'VARCHAR'}, union_by_name = true);
";
        assert_eq!(text, expected);
    }

    #[test]
    fn every_partition_column_follows_the_data_columns_in_order() {
        let s = schema();
        let mut d = def(&s);
        d.partitions = &["tenant", "dt"];
        let trino = table_ddl(Dialect::Trino, "sobot", "s3://b", &d).unwrap();
        assert!(trino.contains("  \"tenant\" varchar,\n  \"dt\" varchar\n)"));
        assert!(trino.contains("partitioned_by = ARRAY['tenant', 'dt']"));
        let duck = table_ddl(Dialect::Duckdb, "sobot", "/w", &d).unwrap();
        assert!(duck.contains("hive_types = {'tenant': 'VARCHAR', 'dt': 'VARCHAR'}"));
    }

    #[test]
    fn unknown_types_are_refused_with_the_column_named() {
        let s = Schema::new(vec![Field::new(
            "x",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        )]);
        let err = table_ddl(Dialect::Trino, "sobot", "s3://b", &def(&s)).unwrap_err();
        assert!(err.to_string().contains("column x"), "{err}");
    }

    #[test]
    fn locations_per_dialect() {
        let cwd = Path::new("/home/u");
        assert_eq!(
            base_location(Dialect::Duckdb, "file://./warehouse", cwd).unwrap(),
            "/home/u/warehouse"
        );
        assert_eq!(
            base_location(Dialect::Duckdb, "file:///data/my%20wh/", cwd).unwrap(),
            "/data/my wh"
        );
        assert_eq!(
            base_location(Dialect::Duckdb, "s3://b/p/", cwd).unwrap(),
            "s3://b/p"
        );
        assert_eq!(
            base_location(Dialect::Trino, "s3://b/p", cwd).unwrap(),
            "s3://b/p"
        );
        let e = base_location(Dialect::Trino, "file:///data", cwd).unwrap_err();
        assert!(e.to_string().contains("--location s3://"), "{e}");
        assert!(base_location(Dialect::Trino, "ftp://x", cwd).is_err());
    }

    #[test]
    fn quotes_are_escaped() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("/it's"), "'/it''s'");
    }

    /// Every shipped table, every kind, maps in both dialects: no type is left out.
    #[test]
    fn every_built_in_table_has_ddl_in_both_dialects() {
        let settings = Settings::from_sources(None, &std::collections::BTreeMap::new()).unwrap();
        // issue 13: the built-in copies, asked for by name (no folder stands in for them).
        let catalog = crate::core::pipeline::Catalog::built_in(settings.timezone).unwrap();
        let parts = partition_columns(&settings);
        for p in catalog.pipelines.values() {
            let d = TableDef {
                table: &p.table,
                doc: None,
                schema: &p.schema.arrow,
                partitions: &parts,
            };
            for dialect in [Dialect::Trino, Dialect::Duckdb] {
                let text = table_ddl(dialect, "sobot", "s3://b", &d)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.table));
                assert!(text.contains("\"_window_start\""), "{}", p.table);
                assert!(text.contains("\"dt\""), "{}", p.table);
            }
        }
        assert!(catalog.pipelines.len() >= 12);
    }

    /// The push tables of `receive` come when named, in both dialects, partitioned by
    /// `dt` alone even when tenants are configured (one receiver serves every company).
    #[test]
    fn push_tables_are_printed_when_named() {
        let env: std::collections::BTreeMap<String, String> = [
            ("SOBOT_TENANTS", "acme,globex"),
            ("SOBOT_SYNC_WAREHOUSE", "s3://b/wh"),
            // issue 13: a named folder must exist; the repository's own definitions.
            (
                "SOBOT_SYNC_PIPELINES",
                concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"),
            ),
            (
                "SOBOT_SYNC_SCHEMAS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::from_sources(None, &env).unwrap();
        let args = |dialect, tables: &[&str]| Args {
            dialect,
            location: None,
            schema: "sobot".into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        };
        let all = render(&settings, &args(Dialect::Duckdb, &[])).unwrap();
        assert!(!all.contains("push_talks"), "not unless named");
        let tables = [
            "push_talks",
            "push_parties",
            "agent_status_events",
            "call_events",
        ];
        let duck = render(&settings, &args(Dialect::Duckdb, &tables)).unwrap();
        for t in tables {
            assert!(
                duck.contains(&format!("read_parquet('s3://b/wh/{t}/**/*.parquet', hive_partitioning = true, hive_types = {{'dt': 'VARCHAR'}}")),
                "{t}: {duck}"
            );
        }
        let trino = render(&settings, &args(Dialect::Trino, &["talks", "call_events"])).unwrap();
        assert!(trino.contains("partitioned_by = ARRAY['dt']"), "{trino}");
        assert!(
            trino.contains("partitioned_by = ARRAY['tenant', 'dt']"),
            "{trino}"
        );
        let e = render(&settings, &args(Dialect::Trino, &["nope"])).unwrap_err();
        assert!(e.to_string().contains("call_events"), "{e}");
    }
}
