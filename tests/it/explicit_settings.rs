//! issue 13, explicit settings: a `SOBOT_SYNC_PIPELINES` or `SOBOT_SYNC_SCHEMAS` that
//! names a folder which does not exist stops every command with exit 2 naming the
//! setting; the built-in copies serve only when the setting is unset and the default
//! folder (`./pipelines`, `./schemas`) is absent.

use crate::support::cli_proc::{CliEnv, REPO};
use crate::support::truth::{self, TALKS};
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;

const NOW: &str = "2024-01-03T00:00:00+08:00";
const START: &str = "2024-01-02";
const WATERMARK: &str = "2024-01-02T23:00:00+08:00";

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

/// The repository's folders for both settings, then `key` set to `value` (or unset).
fn point(env: &mut CliEnv, key: &str, value: Option<&str>) {
    env.set("SOBOT_SYNC_PIPELINES", &format!("{REPO}/pipelines"));
    env.set("SOBOT_SYNC_SCHEMAS", &format!("{REPO}/schemas"));
    match value {
        Some(v) => env.set(key, v),
        None => env.unset(key),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_folder_that_does_not_exist_exits_2_naming_the_setting() {
    let mut env = CliEnv::start(t(NOW), START).await;
    let now = env.now_arg();
    let typo = env.path().join("pipelnes").display().to_string();
    let commands: [&[&str]; 3] = [
        &["run", "--now", &now],
        &["check"],
        &["daemon", "--now", &now],
    ];
    for key in ["SOBOT_SYNC_PIPELINES", "SOBOT_SYNC_SCHEMAS"] {
        point(&mut env, key, Some(&typo));
        for args in commands {
            let o = env.run(args).await;
            o.expect_code(2);
            for needle in [key, "environment", "pipelnes", "does not exist"] {
                assert!(
                    o.stderr.contains(needle),
                    "{args:?} with {key} missing: stderr does not name {needle:?}\n{}",
                    o.all()
                );
            }
            assert!(
                // `check` prints its failed settings row; nothing may have loaded.
                !o.all().contains("built-in defaults") && !o.stdout.contains("ok "),
                "{args:?} fell back to the built-in copies\n{}",
                o.all()
            );
        }
        // The same from a settings file: the message names the file.
        point(&mut env, key, None);
        let config = env.path().join("settings.toml");
        let file_key = key.trim_start_matches("SOBOT_").to_ascii_lowercase();
        std::fs::write(&config, format!("{file_key} = {typo:?}\n")).expect("write settings");
        let config = config.display().to_string();
        let o = env.run(&["run", "--config", &config, "--now", &now]).await;
        o.expect_code(2);
        assert!(
            o.stderr.contains(key) && o.stderr.contains("settings.toml"),
            "{}",
            o.all()
        );
    }
    // Nothing was written: the run stopped before touching the warehouse.
    assert!(
        !env.warehouse().exists(),
        "a refused run wrote the warehouse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_folders_use_the_local_ones_else_the_built_ins() {
    let mut env = CliEnv::start(t(NOW), START).await;
    env.unset("SOBOT_SYNC_PIPELINES")
        .unset("SOBOT_SYNC_SCHEMAS");

    // No ./pipelines or ./schemas in the working directory: the built-in copies.
    let o = env.run(&["check"]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("built-in defaults"), "{}", o.all());
    env.run(&["run", "--now", &env.now_arg(), "talks"])
        .await
        .expect_code(0);
    let want = truth::visible_rows(&env.sim.dataset(), &TALKS, t(START), t(WATERMARK), env.now);
    let table = truth::read_rows(&env.warehouse(), &TALKS, Singapore);
    assert!(table.duplicate_keys().is_empty());
    truth::assert_rows_exact(&table, &want, "talks from the built-in definitions");

    // A ./pipelines folder in the working directory is used when the setting is unset.
    let local = env.path().join("pipelines");
    std::fs::create_dir(&local).expect("create ./pipelines");
    std::fs::copy(
        format!("{REPO}/pipelines/talks.toml"),
        local.join("talks.toml"),
    )
    .expect("copy talks.toml");
    let o = env.run(&["check"]).await;
    o.expect_code(0);
    assert!(
        o.stdout.contains("./pipelines") && !o.stdout.contains("built-in defaults"),
        "{}",
        o.all()
    );
}
