//! `demo`: the whole product on one machine with nothing to configure. Starts the
//! simulator in-process, syncs three simulated days of every pipeline into the
//! warehouse (`./warehouse` unless SOBOT_SYNC_WAREHOUSE says otherwise), and prints what
//! is in each table and a DuckDB query to run on it.

use crate::app::settings::Settings;
use crate::core::clock::FixedClock;
use crate::core::error::CommandError;
use crate::io::sink;
use crate::sim;
use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The simulated present: three whole local days after 2024-03-01 are loadable (the
/// longest default lag is one hour).
pub const DEMO_START: &str = "2024-03-01";
pub const DEMO_NOW: &str = "2024-03-04T01:00:00+08:00";

/// issue 13: the operator the demo names to a literal-dialect simulator.
pub const DEMO_OPERATOR: &str = "sim-operator";

/// A pipeline that is off by default and that the demo runs anyway (its downloads are
/// the simulator's small stand-in MP3s).
pub const DEMO_ALSO_ENABLES: &str = "recordings";

/// Rows in a table's Parquet files, read from their footers.
pub async fn table_rows(
    loc: &crate::io::store::Location,
    table: &str,
) -> Result<(u64, usize), String> {
    let files = sink::list_files(loc, table)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    for f in &files {
        let bytes = loc
            .store()
            .get(&loc.path(f))
            .await
            .map_err(|e| format!("{f}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{f}: {e}"))?;
        let reader = parquet::file::reader::SerializedFileReader::new(bytes)
            .map_err(|e| format!("{f}: {e}"))?;
        use parquet::file::reader::FileReader;
        rows += reader.metadata().file_metadata().num_rows().max(0) as u64;
    }
    Ok((rows, files.len()))
}

/// `summary_json`: also write `{"warehouse", "tables": {name: {"rows_run", "files_run",
/// "rows", "files", "api_requests"}}}` there (rows and files read back from the footers), so scripts such
/// as CI's DuckDB check compare against what was written without parsing the table.
pub async fn run(
    config: Option<&Path>,
    summary_json: Option<&Path>,
    dialect: sim::Dialect,
) -> Result<(), CommandError> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    let user = Settings::from_sources(config, &env)?;
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(DEMO_NOW)
        .map_err(|e| CommandError::Failed(e.to_string()))?
        .with_timezone(&Utc);
    let sim_config = sim::SimConfig {
        now: Some(now),
        timezone: user.timezone,
        dialect,
        ..sim::SimConfig::default()
    };
    let (app_id, app_secret) = (sim_config.app_id.clone(), sim_config.app_secret.clone());
    let handle = sim::start(sim_config, ([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| CommandError::Failed(format!("cannot start the simulator: {e}")))?;
    println!(
        "simulator on {} (simulated now {DEMO_NOW}, {} dialect)",
        handle.base_url(),
        dialect.as_str()
    );

    // The API is the simulator, whatever the environment says; storage stays the user's.
    env.insert("SOBOT_BASE_URL".into(), handle.base_url());
    env.insert("SOBOT_APP_ID".into(), app_id);
    env.insert("SOBOT_APP_SECRET".into(), app_secret);
    env.remove("SOBOT_TOKEN");
    // issue 13: a real tenant's agent token is not the simulator's.
    env.remove("SOBOT_AGENT_TOKEN");
    env.entry("SOBOT_MAX_RPS".into())
        .or_insert_with(|| "2000".into());
    env.entry("SOBOT_MAX_CONCURRENCY".into())
        .or_insert_with(|| "16".into());
    env.insert("SOBOT_SYNC_START".into(), DEMO_START.into());
    if dialect == sim::Dialect::Literal {
        // Such a tenant refuses agent metrics under a company token without an operator,
        // as the API document says; a user of it sets this.
        env.entry("SOBOT_OPERATOR_USER_ID".into())
            .or_insert_with(|| DEMO_OPERATOR.into());
    }
    let mut settings = Settings::from_sources(config, &env)?;
    settings.tenants.clear(); // issue 4: the demo is single-tenant, whatever the config lists.
    let mut engine = crate::app::setup::engine(settings, Arc::new(FixedClock(now)))?;
    // Recordings are off by default (they are large), but the demo's are small and the
    // demo shows every table: it switches the pipeline on for its own run only.
    if let Some(p) = engine.catalog.pipelines.get_mut(DEMO_ALSO_ENABLES) {
        p.enabled = true;
    }
    println!(
        "syncing {} pipelines ({}) into {}",
        engine.catalog.select(&[]).map(|v| v.len()).unwrap_or(0),
        engine.catalog.source,
        engine.warehouse.url()
    );
    let reports = crate::app::run::run_pipelines(&engine, &[]).await;
    handle.shutdown().await;
    let reports = reports?;

    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>10}",
        "table", "rows (run)", "files (run)", "rows (all)", "files"
    );
    let mut summary = serde_json::Map::new();
    for r in &reports {
        let (rows, files) = table_rows(&engine.warehouse, &r.table)
            .await
            .map_err(CommandError::Failed)?;
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>10}",
            r.table, r.rows, r.files, rows, files
        );
        summary.insert(
            r.table.clone(),
            // issue 15: the run's requests per endpoint, with retries.
            serde_json::json!({"rows_run": r.rows, "files_run": r.files, "rows": rows, "files": files, "api_requests": r.api_requests}),
        );
    }
    if let Some(path) = summary_json {
        let doc = serde_json::json!({"warehouse": engine.warehouse.url(), "tables": summary});
        let text =
            serde_json::to_string_pretty(&doc).map_err(|e| CommandError::Failed(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| {
            CommandError::Failed(format!(
                "--summary-json {}: cannot write: {e}",
                path.display()
            ))
        })?;
    }
    let base = match engine.warehouse.local_dir() {
        Some(dir) => dir.display().to_string(),
        None => engine.warehouse.url().to_string(),
    };
    println!();
    println!("Query it with DuckDB (pip install duckdb, or the duckdb CLI):");
    println!(
        "  duckdb -c \"SELECT dt, count(*) AS calls, round(avg(duration)) AS avg_secs FROM read_parquet('{base}/talks/**/*.parquet', hive_partitioning = true) GROUP BY dt ORDER BY dt\""
    );
    println!(
        "Status of every pipeline: cargo run --release -- status   (state in {})",
        engine.state.location().url()
    );
    Ok(())
}
