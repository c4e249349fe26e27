//! The shutdown signal every task of an edge listens to: a `watch` flag that turns true, or whose
//! sender is dropped along with the `RunningEdge`.

use tokio::sync::watch;

/// Resolves once shutdown is asked for.
pub async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
