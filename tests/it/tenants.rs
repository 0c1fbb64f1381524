//! Several tenants in one configuration (issue 4, part 6). OWNER: tenants (E1).
//!
//! Two simulators stand for two companies: different seeds, credentials and time zones.
//! One settings file lists both; every run must put each company's rows under
//! `<table>/tenant=<name>/dt=<its local date>/`, exactly its simulator's ground truth,
//! with state, locks and rate caps of its own.

use crate::support::both::local_and_s3;
use crate::support::cli_proc::{CliEnv, assert_no_panic};
use crate::support::rig::{Warehouse, pipeline};
use crate::support::{table, truth};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::America::New_York;
use chrono_tz::Asia::Singapore;
use chrono_tz::Tz;
use futures::TryStreamExt;
use sobot_sync::app::settings::Settings;
use sobot_sync::app::tenant;
use sobot_sync::core::clock::FixedClock;
use sobot_sync::engine::run::Engine;
use sobot_sync::io::state::store::StateStore;
use sobot_sync::io::store::{Location, S3Options};
use sobot_sync::sim;
use sobot_sync::sim::{SimConfig, SimHandle};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// One company's simulator: its own seed, credentials, company id and zone.
async fn company(seed: u64, name: &str, tz: Tz, now: DateTime<Utc>) -> SimHandle {
    let config = SimConfig {
        seed,
        app_id: format!("{name}-app"),
        app_secret: format!("{name}-secret"),
        company_id: format!("{name}-company"),
        timezone: tz,
        now: Some(now),
        ..SimConfig::default()
    };
    sim::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts on a free port")
}

/// Every file under `dir` as a path relative to it, with `/` separators.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(parts.join("/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The `dt` values of a tenant's files of `table`, read from the stored paths.
fn partitions(files: &BTreeSet<String>, table: &str, tenant: &str) -> BTreeSet<NaiveDate> {
    let prefix = format!("{table}/tenant={tenant}/dt=");
    files
        .iter()
        .filter_map(|f| f.strip_prefix(&prefix))
        .map(|rest| {
            let (dt, _) = rest.split_once('/').expect("dt folder then file");
            NaiveDate::parse_from_str(dt, "%Y-%m-%d").expect("dt is a date")
        })
        .collect()
}

local_and_s3!(
    two_tenants_run_into_their_own_partitions_local,
    two_tenants_run_into_their_own_partitions_s3 => two_tenants_run_into_their_own_partitions,
);

/// Every key of the warehouse (tables and state), relative to its root.
async fn stored_keys(warehouse: &Warehouse) -> BTreeSet<String> {
    let s3 = Settings::from_sources(None, warehouse.env())
        .expect("warehouse settings")
        .s3;
    let root = Location::parse(&warehouse.url, &s3).expect("warehouse location");
    let metas: Vec<_> = root
        .store()
        .list(root.list_prefix("").as_ref())
        .try_collect()
        .await
        .expect("warehouse listing");
    metas
        .iter()
        .filter_map(|m| root.relative(&m.location))
        .collect()
}

/// The scenario the brief names: two tenants, different zones, credentials, seeds and rate
/// caps, run together -> each tenant's tables are exactly its simulator's truth, under
/// `tenant=<name>`, cut by its own zone; state apart; each simulator sees its own cap.
async fn two_tenants_run_into_their_own_partitions(warehouse: Warehouse) {
    // Engine's now; the simulators run a day ahead so every loaded record is visible.
    let now = t("2024-03-01T18:00:00Z");
    let sim_now = now + chrono::Duration::days(1);
    let acme = company(42, "acme", Singapore, sim_now).await;
    let globex = company(7, "globex", New_York, sim_now).await;
    let dir = tempfile::tempdir().expect("config directory");
    let config = dir.path().join("sobot.toml");
    let repo = env!("CARGO_MANIFEST_DIR");
    // globex's secret in the file is wrong; the environment's (right) one must win.
    std::fs::write(
        &config,
        format!(
            r#"
sync_warehouse = "{wh}"
sync_pipelines = "{repo}/pipelines"
sync_schemas = "{repo}/schemas"
sync_start = "2024-03-01"
max_concurrency = 4

[tenants.acme]
base_url = "{a}"
app_id = "acme-app"
app_secret = "acme-secret"
timezone = "Asia/Singapore"
max_rps = 5

[tenants.globex]
base_url = "{g}"
app_id = "globex-app"
app_secret = "stale-secret"
timezone = "America/New_York"
max_rps = 12
"#,
            wh = warehouse.url,
            a = acme.base_url(),
            g = globex.base_url(),
        ),
    )
    .expect("write config");
    let mut env = warehouse.env().clone();
    env.insert(
        "SOBOT_TENANT_GLOBEX_APP_SECRET".to_string(),
        "globex-secret".to_string(),
    );
    let settings = Settings::from_sources(Some(&config), &env).expect("valid settings");
    let engines: Vec<Engine> = tenant::select(&settings, None)
        .expect("both tenants")
        .into_iter()
        .map(|s| {
            sobot_sync::app::setup::engine(s, Arc::new(FixedClock(now))).expect("engine builds")
        })
        .collect();
    assert_eq!(engines.len(), 2);
    // indicator_plans keeps one current file and deletes the older ones it lists: a
    // tenant's listing must never reach another tenant's file.
    // A report pipeline too: its windows are cut in each tenant's zone as well.
    let names = [
        "talks",
        "agent_histories",
        "indicator_plans",
        "report_gateway_numbers",
    ]
    .map(String::from);
    let runs = engines
        .iter()
        .map(|e| sobot_sync::app::run::run_pipelines(e, &names));
    for (result, e) in futures::future::join_all(runs)
        .await
        .into_iter()
        .zip(&engines)
    {
        let reports =
            result.unwrap_or_else(|err| panic!("tenant {:?} runs: {err}", e.settings.tenant));
        assert_eq!(reports.len(), names.len());
    }

    // Windows end where the lags put them, for both; each started at its local midnight.
    let end = t("2024-03-01T17:00:00Z");
    let cases = [
        (
            "acme",
            &engines[0],
            &acme,
            Singapore,
            t("2024-02-29T16:00:00Z"),
        ),
        (
            "globex",
            &engines[1],
            &globex,
            New_York,
            t("2024-03-01T05:00:00Z"),
        ),
    ];
    let stored = stored_keys(&warehouse).await;
    let mut keys = Vec::new();
    for (name, engine, sim, tz, start) in &cases {
        assert_eq!(engine.settings.tenant.as_deref(), Some(*name));
        assert_eq!(engine.settings.timezone, *tz);
        let ds = sim.dataset();
        for truth in [
            truth::talks(&ds, *start, end),
            truth::agent_histories(&ds, *start, end),
        ] {
            let p = pipeline(engine, truth.table);
            // Read through the tenant's engine: its rows, laid out by its zone.
            let table = table::read(engine, &p.table).await;
            truth::assert_exact(&table, &truth, &engine.grid(&p));
            // And the same files, found where a reader of the warehouse finds them.
            let expected: BTreeSet<String> = table
                .files
                .iter()
                .map(|f| {
                    let rest = f
                        .path
                        .strip_prefix(&format!("{}/", p.table))
                        .expect("table");
                    format!("{}/tenant={name}/{rest}", p.table)
                })
                .collect();
            let found: BTreeSet<String> = stored
                .iter()
                .filter(|f| {
                    f.starts_with(&format!("{}/tenant={name}/", p.table)) && f.ends_with(".parquet")
                })
                .cloned()
                .collect();
            assert_eq!(found, expected, "{name} {}: stored files", p.table);
            if truth.table == "talks" {
                keys.push(truth.keys());
            }
            let state = sobot_sync::app::setup::load_state(&engine.state, &p.name)
                .await
                .expect("state readable")
                .expect("state committed");
            assert_eq!(state.watermark, end, "{name} {} watermark", p.name);
            assert_eq!(state.timezone, tz.name());
            let versions = format!("_state/tenants/{name}/{}/state/", p.name);
            assert!(
                stored.iter().any(|k| k.starts_with(&versions)),
                "{name} {}: state under {versions}",
                p.name
            );
        }
    }
    assert_ne!(keys[0], keys[1], "two seeds, two different sets of calls");
    // dt is each tenant's local date: Singapore's day ran into 2 March, New York's did not.
    let day = |d: u32| NaiveDate::from_ymd_opt(2024, 3, d).expect("date");
    assert_eq!(
        partitions(&stored, "talks", "acme"),
        [day(1), day(2)].into()
    );
    assert_eq!(partitions(&stored, "talks", "globex"), [day(1)].into());
    assert_eq!(
        partitions(&stored, "indicator_plans", "acme"),
        [day(2)].into()
    );
    assert_eq!(
        partitions(&stored, "indicator_plans", "globex"),
        [day(1)].into()
    );
    // Singapore's 1 March is over (and past the report's lag) at 18:00Z; New York's is not.
    assert_eq!(
        partitions(&stored, "report_gateway_numbers", "acme"),
        [day(1)].into()
    );
    assert_eq!(
        partitions(&stored, "report_gateway_numbers", "globex"),
        BTreeSet::new()
    );
    // Nothing outside a tenant partition, and no state outside the tenants' folders.
    for f in &stored {
        if f.starts_with("_state/") {
            assert!(
                f.starts_with("_state/tenants/"),
                "state outside a tenant: {f}"
            );
        } else {
            let mut parts = f.split('/');
            let (_table, tenant) = (parts.next(), parts.next().unwrap_or_default());
            assert!(
                tenant == "tenant=acme" || tenant == "tenant=globex",
                "file outside a tenant partition: {f}"
            );
        }
    }
    // Each simulator saw only its own tenant, within its own cap. The client spaces
    // starts 1/max_rps apart, so a half-open second holds at most max_rps of them; a
    // request delayed on the way can land one more in the server's sliding second.
    let (a, g) = (acme.stats(), globex.stats());
    assert!(a.token_requests >= 1 && g.token_requests >= 1);
    assert!(
        a.max_requests_in_one_second <= 5 + 1,
        "acme's simulator saw {} requests in one second (cap 5)",
        a.max_requests_in_one_second
    );
    assert!(
        g.max_requests_in_one_second <= 12 + 1,
        "globex's simulator saw {} requests in one second (cap 12)",
        g.max_requests_in_one_second
    );
    // globex was not held to acme's cap: the caps are per tenant, not shared.
    assert!(
        g.max_requests_in_one_second > 5 + 1,
        "globex's simulator saw at most {} requests in one second; its cap is 12",
        g.max_requests_in_one_second
    );
}

/// Through the binary: a lock held on one tenant's pipeline fails that tenant only;
/// `status` names the tenant; `backfill` needs `--tenant` when several exist; bad
/// tenant settings exit 2 naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tenant_does_not_block_the_other() {
    let now = t("2024-01-03T00:00:00+08:00");
    // acme is the top-level settings CliEnv points at (its simulator, Singapore).
    let mut env = CliEnv::start_with(
        SimConfig {
            now: Some(now),
            ..SimConfig::default()
        },
        "2024-01-02",
    )
    .await;
    let globex = company(7, "globex", New_York, now).await;
    env.set("SOBOT_TIMEZONE", "Asia/Singapore")
        .set("SOBOT_TENANTS", "acme,globex")
        .set("SOBOT_TENANT_GLOBEX_BASE_URL", &globex.base_url())
        .set("SOBOT_TENANT_GLOBEX_APP_ID", "globex-app")
        .set("SOBOT_TENANT_GLOBEX_APP_SECRET", "globex-secret")
        .set("SOBOT_TENANT_GLOBEX_TIMEZONE", "America/New_York");
    let nowarg = env.now_arg();

    // Another run holds acme's talks lock.
    let acme_state = StateStore::new(
        Location::parse(
            &format!("file://{}/_state/tenants/acme", env.warehouse().display()),
            &S3Options::default(),
        )
        .expect("state location"),
    );
    let lock = acme_state
        .acquire_lock("talks", "another-run", Duration::from_secs(120))
        .await
        .expect("lock taken");

    let o = env.run(&["run", "talks", "--now", &nowarg]).await;
    o.expect_code(1);
    assert!(
        o.stderr.contains("tenant acme") && o.stderr.contains("busy"),
        "the failure names the busy tenant\n{}",
        o.all()
    );
    assert!(!o.stderr.contains("tenant globex:"), "{}", o.all());
    assert!(o.stdout.contains("tenant globex: talks:"), "{}", o.all());
    let stored = files_under(&env.warehouse());
    assert!(
        stored
            .iter()
            .any(|f| f.starts_with("talks/tenant=globex/dt=2024-01-02/")),
        "globex's talks are written: {stored:?}"
    );
    assert!(
        !stored.iter().any(|f| f.starts_with("talks/tenant=acme/")),
        "nothing written for the busy tenant: {stored:?}"
    );

    // status: a row per tenant and pipeline, each naming its tenant.
    let rows = env.status().await;
    let row = |tenant: &str| {
        rows.iter()
            .find(|r| r["pipeline"] == "talks" && r["tenant"] == tenant)
            .unwrap_or_else(|| panic!("status has no talks row of {tenant}: {rows:?}"))
    };
    // New York midnight of 2 January to the last whole hour before now - 30 min.
    assert_eq!(row("globex")["watermark"], "2024-01-02T15:00:00Z");
    assert!(row("acme")["watermark"].is_null(), "{:?}", row("acme"));
    let one = env
        .run(&["status", "--json", "--tenant", "globex", "--now", &nowarg])
        .await;
    one.expect_code(0);
    let only: Vec<serde_json::Value> = serde_json::from_str(&one.stdout).expect("JSON array");
    assert!(!only.is_empty() && only.iter().all(|r| r["tenant"] == "globex"));
    let text = env.run(&["status", "--now", &nowarg]).await;
    text.expect_code(0);
    assert!(text.stdout.contains("[acme] talks") && text.stdout.contains("[globex] talks"));

    // backfill works on one tenant.
    let range = [
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
        "--now",
        &nowarg,
    ];
    let o = env
        .run(&[&["backfill", "talks"][..], &range[..]].concat())
        .await;
    o.expect_code(2);
    assert!(o.stderr.contains("--tenant"), "{}", o.all());
    let o = env
        .run(&[&["backfill", "talks", "--tenant", "acme"][..], &range[..]].concat())
        .await;
    o.expect_code(1);
    assert!(o.stderr.contains("busy"), "{}", o.all());
    // compact, like backfill, works on one tenant's partitions.
    let o = env.run(&["compact", "talks", "--now", &nowarg]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("--tenant"), "{}", o.all());
    let o = env
        .run(&["compact", "talks", "--tenant", "acme", "--now", &nowarg])
        .await;
    o.expect_code(1);
    assert!(
        o.stderr.contains("busy"),
        "acme's lock is held: {}",
        o.all()
    );
    let tables = || {
        files_under(&env.warehouse())
            .into_iter()
            .filter(|f| !f.starts_with("_state/"))
            .collect::<BTreeSet<String>>()
    };
    let before = tables();
    env.run(&["compact", "talks", "--tenant", "globex", "--now", &nowarg])
        .await
        .expect_code(0);
    assert_eq!(
        tables(),
        before,
        "nothing of globex is closed yet, and no table file is touched"
    );
    let o = env
        .run(&["run", "--tenant", "initech", "--now", &nowarg])
        .await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("initech") && o.stderr.contains("acme, globex"),
        "{}",
        o.all()
    );

    // Once the lock is gone, acme catches up on its own.
    lock.release().await.expect("lock released");
    env.run(&["run", "talks", "--tenant", "acme", "--now", &nowarg])
        .await
        .expect_code(0);
    let rows = env.status().await;
    let acme_talks = rows
        .iter()
        .find(|r| r["pipeline"] == "talks" && r["tenant"] == "acme")
        .expect("acme talks row");
    assert_eq!(acme_talks["watermark"], "2024-01-02T15:00:00Z");

    // check proves every tenant's own credentials, and names the one that fails.
    let o = env.run(&["check"]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("---- tenant acme") && o.stdout.contains("---- tenant globex"));
    env.set("SOBOT_TENANT_GLOBEX_APP_SECRET", "wrong-secret");
    let o = env.run(&["check"]).await;
    o.expect_code(1);
    assert!(
        o.stdout.contains("FAIL tenant globex: API credentials"),
        "{}",
        o.all()
    );
    assert!(!o.all().contains("wrong-secret"), "{}", o.all());
    let o = env.run(&["check", "--tenant", "acme"]).await;
    o.expect_code(0);
    assert!(!o.stdout.contains("globex"), "{}", o.all());
    env.set("SOBOT_TENANT_GLOBEX_APP_SECRET", "globex-secret");

    // Bad tenant settings: exit 2, naming the setting, secrets never shown.
    env.set("SOBOT_TENANT_GLOBEX_MAX_RPS", "fast");
    let o = env.run(&["status"]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("SOBOT_TENANT_GLOBEX_MAX_RPS"),
        "{}",
        o.all()
    );
    env.unset("SOBOT_TENANT_GLOBEX_MAX_RPS")
        .set("SOBOT_TENANT_INITECH_TOKEN", "tok-123456");
    let o = env.run(&["run", "--now", &nowarg]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("SOBOT_TENANT_INITECH_TOKEN"),
        "{}",
        o.all()
    );
    assert!(!o.all().contains("tok-123456"), "{}", o.all());
    assert_no_panic(&o);
}
