//! Fault hooks the test kit switches on. Without the `testkit` feature they compile to
//! nothing, so a release binary cannot be made to abort by an environment variable.

/// Abort the process (no unwinding, no cleanup, like a SIGKILL) after this many ingest
/// batches have been written: the kill-and-rerun test's fault
/// (`TIDIG_FAULT_ABORT_AFTER_BATCHES`).
#[cfg(feature = "testkit")]
pub fn abort_after_batches() -> Option<u64> {
    std::env::var("TIDIG_FAULT_ABORT_AFTER_BATCHES")
        .ok()?
        .parse()
        .ok()
}

#[cfg(not(feature = "testkit"))]
pub fn abort_after_batches() -> Option<u64> {
    None
}

/// Make every audit append fail, as a full disk or a lost connection would
/// (`TIDIG_FAULT_AUDIT=1`): the failing-audit-write test's fault.
#[cfg(feature = "testkit")]
pub fn audit_fault() -> Result<(), crate::store::StoreError> {
    if std::env::var_os("TIDIG_FAULT_AUDIT").is_some() {
        return Err(crate::store::StoreError::Sql(sqlx::Error::Io(
            std::io::Error::other("audit write failed (injected fault)"),
        )));
    }
    Ok(())
}

#[cfg(not(feature = "testkit"))]
pub fn audit_fault() -> Result<(), crate::store::StoreError> {
    Ok(())
}

/// Hold a scoring run just before the transaction that writes its suggestions
/// (`TIDIG_PAUSE_BEFORE_SCORE_WRITE=<file>`): the run creates `<file>.reached` and goes
/// on once `<file>` exists (at most two minutes). The stop-switch test stops scoring
/// while a run is held there.
#[cfg(feature = "testkit")]
pub async fn pause_before_score_write() {
    pause("TIDIG_PAUSE_BEFORE_SCORE_WRITE").await;
}

#[cfg(not(feature = "testkit"))]
pub async fn pause_before_score_write() {}

/// Hold a research run once it has read its data, before it fits or registers
/// (`TIDIG_PAUSE_RESEARCH=<file>`, as [`pause_before_score_write`]): the test that
/// revokes a permit while a run is under way holds it there.
#[cfg(feature = "testkit")]
pub async fn pause_during_research() {
    pause("TIDIG_PAUSE_RESEARCH").await;
}

#[cfg(not(feature = "testkit"))]
pub async fn pause_during_research() {}

/// Creates `<file>.reached` for the file variable `var` names and waits (at most two
/// minutes) until `<file>` exists.
#[cfg(feature = "testkit")]
async fn pause(var: &str) {
    let Some(gate) = std::env::var_os(var) else {
        return;
    };
    let gate = std::path::PathBuf::from(gate);
    let mut reached = gate.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !gate.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
