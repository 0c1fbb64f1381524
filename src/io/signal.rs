//! Shutdown by signal, the same for every long-running command (daemon, receiver,
//! metrics stream): containers stop with SIGTERM, terminals with SIGINT.

/// Resolves on SIGTERM or SIGINT, naming it.
pub async fn shutdown_signal() -> Result<&'static str, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT")
                .map_err(|e| format!("cannot listen for SIGINT: {e}")),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map(|()| "Ctrl-C")
            .map_err(|e| (format!("cannot listen for Ctrl-C: {e}")))
    }
}
