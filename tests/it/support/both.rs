//! One scenario, two warehouses: [`local_and_s3!`] emits a scenario's `_local` and `_s3`
//! tests from one body, so no scenario can drift into running on one backend only.

use super::rig::Warehouse;
use std::future::Future;

/// Runs `scenario` against a warehouse in a temporary directory.
pub async fn on_local<F, Fut>(scenario: F)
where
    F: FnOnce(Warehouse) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(Warehouse::local().await).await;
}

/// Runs `scenario` against a warehouse in an in-process S3 server.
pub async fn on_s3<F, Fut>(scenario: F)
where
    F: FnOnce(Warehouse) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario(Warehouse::s3().await).await;
}

/// `local_and_s3!(name_local, name_s3 => scenario);` emits two multi-threaded tokio tests
/// that hand `scenario` (an async fn, or a closure, taking a [`Warehouse`]) a local and an
/// S3 warehouse. Both names are spelled out because `macro_rules!` cannot join identifiers,
/// and the names stay the ones test filters already use. Doc comments before the names go
/// on both tests.
macro_rules! local_and_s3 {
    ($(#[$meta:meta])* $local:ident, $s3:ident => $scenario:expr $(,)?) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            $crate::support::both::on_local($scenario).await;
        }

        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $s3() {
            $crate::support::both::on_s3($scenario).await;
        }
    };
}
pub(crate) use local_and_s3;
