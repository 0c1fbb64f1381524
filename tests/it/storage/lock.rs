//! Pipeline locks: busy for another owner, taken over after expiry, renewed and released,
//! one winner among concurrent acquirers.

use super::*;

const LONG: Duration = Duration::from_secs(600);

pub(super) async fn lock_is_busy_for_another_owner(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let held = state
        .acquire_lock("talks", "run-a", LONG)
        .await
        .expect("acquire");
    assert_eq!(held.owner(), "run-a");
    let err = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect_err("busy");
    match err {
        StateError::Busy {
            pipeline,
            holder,
            expires_at,
        } => {
            assert_eq!(pipeline, "talks");
            assert_eq!(holder, "run-a");
            assert_eq!(expires_at, held.expires_at());
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Other pipelines are independent.
    state
        .acquire_lock("parties", "run-b", LONG)
        .await
        .expect("other pipeline");
}

pub(super) async fn lock_is_taken_over_after_expiry(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let mut stale = state
        .acquire_lock("talks", "run-a", Duration::from_millis(300))
        .await
        .expect("acquire");
    // Let the wall clock pass the expiry; the outcome is checked below, not assumed.
    while Utc::now() <= stale.expires_at() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect("takeover");
    assert_eq!(fresh.owner(), "run-b");
    assert!(fresh.generation() > stale.generation());

    let err = stale.renew().await.expect_err("lost");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-b"),
        "{err:?}"
    );
    // Releasing a lost lock must not free the new holder's lock.
    stale
        .release()
        .await
        .expect("release of a lost lock is a no-op");
    let err = state
        .acquire_lock("talks", "run-c", LONG)
        .await
        .expect_err("busy");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-b"),
        "{err:?}"
    );
}

pub(super) async fn lock_renew_and_release(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let mut lock = state
        .acquire_lock("talks", "run-a", Duration::from_secs(30))
        .await
        .expect("acquire");
    let (gen0, exp0) = (lock.generation(), lock.expires_at());
    for _ in 0..8 {
        lock.renew().await.expect("renew");
    }
    assert_eq!(lock.generation(), gen0 + 8);
    assert!(lock.expires_at() >= exp0);
    let lock_dir = b.disk.join("_state/talks/lock");
    assert_eq!(std::fs::read_dir(&lock_dir).expect("lock dir").count(), 5);

    let err = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect_err("busy");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-a"),
        "{err:?}"
    );
    lock.release().await.expect("release");
    let next = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect("after release");
    assert_eq!(next.owner(), "run-b");
}

pub(super) async fn concurrent_acquirers_one_wins(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    for round in 0..4 {
        let pipeline = format!("p{round}");
        let winners = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for racer in 0..6 {
            let (state, pipeline) = (state.clone(), pipeline.clone());
            tasks.push(tokio::spawn(async move {
                let owner = format!("racer-{racer}");
                state
                    .acquire_lock(&pipeline, &owner, LONG)
                    .await
                    .map(|l| l.owner().to_string())
            }));
        }
        let mut winner = None;
        let mut holders = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(owner) => {
                    winners.fetch_add(1, Ordering::SeqCst);
                    winner = Some(owner);
                }
                Err(StateError::Busy { holder, .. }) => holders.push(holder),
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
        let winner = winner.expect("a winner");
        assert!(
            holders.iter().all(|h| *h == winner),
            "{holders:?} vs {winner}"
        );
    }
}
