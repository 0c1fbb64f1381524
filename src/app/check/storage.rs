//! The storage step: proves `check` can write where state lives and read the warehouse,
//! as every run must.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use object_store::ObjectStoreExt;

/// Writes and removes a probe object where state lives and lists the warehouse.
pub(super) async fn prove_storage(settings: &Settings) -> Result<String, CommandError> {
    let (warehouse, state) = crate::app::setup::locations(settings)?;
    let probe = state.location().path("_check/probe");
    let store = state.location().store().clone();
    store
        .put(
            &probe,
            bytes::Bytes::from_static(b"sobot-sync check").into(),
        )
        .await
        .map_err(|e| {
            CommandError::Failed(format!(
                "state storage {}: cannot write: {e}",
                state.location().url()
            ))
        })?;
    let _ = store.delete(&probe).await;
    if let Err(e) = warehouse
        .store()
        .list_with_delimiter(Some(warehouse.prefix()))
        .await
    {
        return Err(CommandError::Failed(format!(
            "warehouse {}: cannot list: {e}",
            warehouse.url()
        )));
    }
    Ok(format!(
        "warehouse {} and state {}",
        warehouse.url(),
        state.location().url()
    ))
}
