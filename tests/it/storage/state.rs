//! The state store: create-if-absent, commits in sequence, one winner among concurrent
//! commits, and a corrupt latest state reported.

use super::*;

/// The primitive everything below rests on: the second create of one key fails.
pub(super) async fn create_refuses_an_existing_object(b: Backend) {
    use object_store::{PutMode, PutOptions};
    let key = b.loc.path("_state/probe/state/00000000000000000001.json");
    let create = || PutOptions::from(PutMode::Create);
    b.loc
        .store()
        .put_opts(&key, PutPayload::from_static(b"{}"), create())
        .await
        .expect("first create");
    let err = b
        .loc
        .store()
        .put_opts(&key, PutPayload::from_static(b"[]"), create())
        .await
        .expect_err("second create");
    assert!(
        matches!(
            err,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ),
        "{err:?}"
    );
    assert_eq!(
        fetch(&b.loc, "_state/probe/state/00000000000000000001.json")
            .await
            .as_ref(),
        b"{}"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Watermark {
    until: String,
    windows: u32,
}

fn mark(windows: u32) -> Watermark {
    Watermark {
        until: format!("2024-03-01T{windows:02}:00:00Z"),
        windows,
    }
}

pub(super) async fn state_commits_in_sequence(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    assert!(
        state
            .load::<Watermark>("talks")
            .await
            .expect("load")
            .is_none()
    );
    assert!(state.pipelines().await.expect("pipelines").is_empty());

    assert_eq!(
        state.commit("talks", None, &mark(1)).await.expect("first"),
        1
    );
    assert_eq!(
        state
            .commit("talks", Some(1), &mark(2))
            .await
            .expect("second"),
        2
    );
    let loaded = state
        .load::<Watermark>("talks")
        .await
        .expect("load")
        .expect("some");
    assert_eq!((loaded.version, loaded.value), (2, mark(2)));

    // A stale expectation, and a "first" commit when versions exist, are conflicts.
    for stale in [Some(1), None, Some(5)] {
        let err = state
            .commit("talks", stale, &mark(9))
            .await
            .expect_err("stale");
        assert!(
            matches!(err, StateError::Conflict { ref pipeline, expected } if pipeline == "talks" && expected == stale),
            "{err:?}"
        );
    }
    let loaded = state
        .load::<Watermark>("talks")
        .await
        .expect("load")
        .expect("some");
    assert_eq!((loaded.version, loaded.value), (2, mark(2)));

    // Old versions are pruned to the newest 20.
    for v in 2..30 {
        state
            .commit("talks", Some(v), &mark(v as u32))
            .await
            .expect("commit");
    }
    let dir = b.disk.join("_state/talks/state");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(
        names.first().map(String::as_str),
        Some("00000000000000000011.json")
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("00000000000000000030.json")
    );

    state
        .commit("agents", None, &mark(1))
        .await
        .expect("agents");
    // A lock alone does not make a pipeline.
    let lock = state
        .acquire_lock("parties", "me", Duration::from_secs(60))
        .await
        .expect("lock");
    lock.release().await.expect("release");
    assert_eq!(
        state.pipelines().await.expect("pipelines"),
        vec!["agents", "talks"]
    );

    let err = state
        .commit("Bad/Name", None, &mark(1))
        .await
        .expect_err("invalid");
    assert!(matches!(err, StateError::InvalidPipeline { .. }), "{err:?}");
}

pub(super) async fn concurrent_commits_one_wins(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    state.commit("talks", None, &mark(0)).await.expect("first");
    for round in 1..=4u64 {
        let mut tasks = Vec::new();
        for writer in 0..6u32 {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                state.commit("talks", Some(round), &mark(writer)).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(v) => {
                    assert_eq!(v, round + 1);
                    winners += 1;
                }
                Err(StateError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        let loaded = state
            .load::<Watermark>("talks")
            .await
            .expect("load")
            .expect("some");
        assert_eq!(loaded.version, round + 1);
    }
}

pub(super) async fn corrupt_latest_state_is_reported(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    state.commit("talks", None, &mark(1)).await.expect("first");
    let bad = "talks/state/00000000000000000002.json";
    state
        .location()
        .store()
        .put(
            &state.location().path(bad),
            PutPayload::from_static(b"{\"until\": 12"),
        )
        .await
        .expect("plant corrupt version");
    let err = state.load::<Watermark>("talks").await.expect_err("corrupt");
    match err {
        StateError::Corrupt { pipeline, path, .. } => {
            assert_eq!(pipeline, "talks");
            assert!(path.ends_with(bad), "{path}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Valid JSON of the wrong shape is just as unreadable.
    state
        .location()
        .store()
        .put(
            &state.location().path(bad),
            PutPayload::from_static(b"[1,2]"),
        )
        .await
        .expect("plant wrong shape");
    assert!(matches!(
        state.load::<Watermark>("talks").await,
        Err(StateError::Corrupt { .. })
    ));
}
