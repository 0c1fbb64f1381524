//! Spawned tasks that stop with whoever waits for them.

/// A spawned window task that is cancelled when the run stops waiting for it (a failed
/// window, a lost lock): windows after a failure must not keep calling the API.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
