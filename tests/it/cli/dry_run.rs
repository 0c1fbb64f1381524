//! issue 15 part 4: `--dry-run` on `run` and `backfill` prints the windows and the
//! estimated requests and time, writes nothing, takes no lock, and asks the API only its
//! probes; its estimate for a backfill of talks and parties is close to what the real
//! backfill then makes.

use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every file under `dir` (state included) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read warehouse file");
            out.insert(path, bytes);
        }
    }
    out
}

/// The number after `prefix` on the first line holding it (digits only, up to the
/// first character that is not one).
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
    let digits: String = text[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|e| panic!("{prefix:?} is not followed by a number ({e}) in\n{text}"))
}

/// Data requests the simulator served, per endpoint name (`maincdrs`, `partycdrs`, ...).
fn data_requests(env: &CliEnv) -> (u64, BTreeMap<String, u64>) {
    let s = env.sim.stats();
    let mut by = BTreeMap::new();
    for (k, n) in &s.by_endpoint_status {
        if let Some((endpoint, _)) = k.rsplit_once(' ') {
            *by.entry(endpoint.to_string()).or_default() += n;
        }
    }
    (s.requests, by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_asks_only_its_probes() {
    let env = CliEnv::start(t(NOW), START).await;
    // A warehouse with committed state, so that "unchanged" means something.
    env.sync().await.expect_code(0);
    let before = snapshot(&env.warehouse());
    assert!(!before.is_empty());
    let (requests0, by0) = data_requests(&env);
    let tokens0 = env.sim.stats().token_requests;

    let now = env.now_arg();
    let run = env
        .run(&["run", "talks", "parties", "--dry-run", "--now", &now])
        .await;
    run.expect_code(0);
    assert_no_panic(&run);
    let backfill = env
        .run(&[
            "backfill",
            "parties",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--dry-run",
            "--now",
            &now,
        ])
        .await;
    backfill.expect_code(0);
    let out = &backfill.stdout;
    for line in [
        "dry run: nothing is written, no lock is taken, no state is committed",
        "parties: 24 windows 2024-01-01..2024-01-02; ",
        " records\n",
        "/callservice/tm/tm-reports/maincdrs/{id}/partycdrs ~",
        "backfill parties 2024-01-01..2024-01-02: ~",
        " at 5000 rps; raise SOBOT_MAX_RPS if your contract allows",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{}", backfill.all());
    }
    // The incremental dry run: the lookback windows of a warehouse already caught up.
    assert!(run.stdout.contains("run talks+parties: ~"), "{}", run.all());

    // Nothing written: every file, state included, byte for byte, and no new one.
    assert_eq!(
        snapshot(&env.warehouse()),
        before,
        "a dry run changed the warehouse"
    );

    // Only the probes reached the API: search requests of one record, one per local day,
    // and not one child request.
    let (requests1, by1) = data_requests(&env);
    let tokens = env.sim.stats().token_requests - tokens0;
    let probes = number_after(&run.stdout, "(probes made: ")
        + number_after(&backfill.stdout, "(probes made: ");
    assert_eq!(
        requests1 - requests0 + tokens,
        probes,
        "the simulator's data and token requests are the probes the dry runs counted\n{}\n{}",
        run.all(),
        backfill.all()
    );
    for (endpoint, n) in &by1 {
        let grew = n - by0.get(endpoint).copied().unwrap_or(0);
        // Token requests are counted above; the probes are talks searches.
        if endpoint != "maincdrs" && endpoint != "token" {
            assert_eq!(grew, 0, "{endpoint}: a dry run made data requests");
        }
    }
    // The backfill's day: one probe for its 24 windows (parties list talks to find
    // their parents, so talks' search is what is probed).
    let search = "/callservice/tm/tm-reports/maincdrs/_search";
    assert_eq!(
        number_after(out, &format!("probe requests made: {search} ")),
        1,
        "{out}"
    );
    assert_eq!(by1["maincdrs"] - by0["maincdrs"], requests1 - requests0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_estimate_is_close_to_the_backfill() {
    let env = CliEnv::start(t("2024-01-04T00:00:00+08:00"), "2024-01-03").await;
    let now = env.now_arg();
    let range = ["--from", "2024-01-01", "--to", "2024-01-03", "--now", &now];
    let mut estimated = 0;
    let mut made = 0;
    for p in ["talks", "parties"] {
        let mut args = vec!["backfill", p];
        args.extend(range);
        let mut dry = args.clone();
        dry.push("--dry-run");
        let o = env.run(&dry).await;
        o.expect_code(0);
        assert!(
            o.stdout
                .contains(&format!("{p}: 48 windows 2024-01-01..2024-01-03; ")),
            "{}",
            o.all()
        );
        assert!(
            o.stdout
                .contains(&format!("backfill {p} 2024-01-01..2024-01-03: ~")),
            "{}",
            o.all()
        );
        estimated += number_after(&o.stdout, "  total ~");

        let before = env.sim.stats();
        let real = env.run(&args).await;
        real.expect_code(0);
        let counted = number_after(&real.stdout, "api requests: ");
        let after = env.sim.stats();
        // The summary's count is the simulator's (token requests included).
        assert_eq!(
            counted,
            after.requests - before.requests + after.token_requests - before.token_requests,
            "{}",
            real.all()
        );
        made += counted;
    }
    // The stated tolerance (docs/operations.md): within 5%. The estimate spreads a day's
    // calls evenly over its hours and does not see token requests or retries.
    let off = estimated.abs_diff(made) as f64 / made as f64;
    eprintln!("backfill talks+parties: estimated {estimated}, made {made} ({off:.3})");
    assert!(
        off <= 0.05,
        "estimated {estimated} requests, the backfill made {made}"
    );
}
