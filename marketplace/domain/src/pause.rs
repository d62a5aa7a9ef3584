//! Places where a test may stop a real server (`NEXUS_TEST_PAUSE_AT=<point>`) to kill it
//! exactly there: the process prints `paused at <point>` and that task never goes on.
//! Nothing happens without the variable.

use std::sync::LazyLock;

/// Stops here forever when `NEXUS_TEST_PAUSE_AT` names `point`.
pub async fn at(point: &str) {
    static AT: LazyLock<Option<String>> = LazyLock::new(|| std::env::var("NEXUS_TEST_PAUSE_AT").ok());
    if AT.as_deref() == Some(point) {
        println!("paused at {point}");
        std::future::pending::<()>().await;
    }
}
