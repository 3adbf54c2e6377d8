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
