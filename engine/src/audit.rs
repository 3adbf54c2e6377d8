//! The audit trail's shell: a group-commit writer over the store's append, signed
//! checkpoints, and the helpers every use case records its action with.
//!
//! - An action that changes the store appends its entry in its own transaction (the
//!   store's write functions take the [`Record`]), so the two commit together.
//! - Anything else (a read of personal data, a refused attempt, a failure) appends
//!   through [`Audit::append`], which returns once the entry is durable. Concurrent
//!   callers share one transaction: the writer task takes everything queued while the
//!   previous batch committed (group commit), so durability costs one fsync per batch,
//!   not per entry.
//! - A checkpoint (a C2SP `tlog-checkpoint` signed as a `signed-note`) is written at
//!   most every `audit.checkpoint_seconds` while entries arrive, and when the app closes.
//!   The signing key never enters the store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;
use tidig_governance::audit::{
    Actor, Checkpoint, EncodedRecord, NoteSigner, NoteVerifier, Outcome, Record,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::EngineError;
use crate::principal::Principal;
use crate::store::{AuditHead, DecideResult, Decision, Store, StoreError, StoredCheckpoint};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The most entries one group commit takes.
const MAX_BATCH: usize = 4096;

/// What the writer's next transaction takes.
enum Job {
    /// An entry; answered with its sequence number.
    Append {
        record: Box<EncodedRecord>,
        done: oneshot::Sender<Result<u64, String>>,
    },
    /// A caseworker's decision with its entry (the store checks and writes it in the
    /// batch's transaction); answered with what it came to.
    Decide {
        decision: Box<Decision>,
        done: oneshot::Sender<Result<DecideResult, String>>,
    },
}

struct Inner {
    store: Store,
    signer: Option<NoteSigner>,
    every: Duration,
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
    last_checkpoint: Mutex<Instant>,
    clock: crate::clock::Clock,
    /// Records nothing: only `tidig bench serve`'s baseline (what the trail costs).
    off: bool,
    /// What the service reads, kept while the trail shows nothing changed it.
    cache: crate::read_cache::ReadCache,
}

/// The audit log of one store, shared by every operation of the process.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Audit(signer: {:?})", self.inner.signer)
    }
}

fn audit_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(StoreError::Audit(e.to_string()))
}

impl Audit {
    pub fn new(
        store: Store,
        signer: Option<NoteSigner>,
        every: Duration,
        clock: crate::clock::Clock,
    ) -> Audit {
        Audit {
            inner: Arc::new(Inner {
                store,
                signer,
                every,
                queue: Mutex::new(None),
                writer: Mutex::new(None),
                closed: std::sync::atomic::AtomicBool::new(false),
                last_checkpoint: Mutex::new(Instant::now()),
                clock,
                off: false,
                cache: crate::read_cache::ReadCache::new(true),
            }),
        }
    }

    /// A log that records nothing, for a benchmark's baseline only: no setting or
    /// command reaches it.
    pub(crate) fn off(store: Store, clock: crate::clock::Clock) -> Audit {
        let mut audit = Audit::new(store, None, Duration::from_secs(3600), clock);
        if let Some(inner) = Arc::get_mut(&mut audit.inner) {
            inner.off = true;
            inner.cache = crate::read_cache::ReadCache::new(false);
        }
        audit
    }

    /// Whether this log records nothing (a benchmark's baseline).
    /// The service's read cache, which this log's writer keeps honest.
    pub fn read_cache(&self) -> &crate::read_cache::ReadCache {
        &self.inner.cache
    }

    pub fn is_off(&self) -> bool {
        self.inner.off
    }

    /// The public key that checks this log's checkpoints, when a signer is configured.
    pub fn verifier(&self) -> Option<NoteVerifier> {
        self.inner.signer.as_ref().map(NoteSigner::verifier)
    }

    pub fn origin(&self) -> Option<&str> {
        self.inner.signer.as_ref().map(NoteSigner::name)
    }

    /// Appends one entry; returns its sequence number once it is durable. If the entry
    /// cannot be written the caller's action must fail.
    pub async fn append(&self, record: Record) -> Result<u64> {
        if self.inner.off {
            return Ok(0);
        }
        // Encoded here, by the caller, so the writer only splices in `seq` and `prev`.
        let record = EncodedRecord::new(record);
        let Some(queue) = self.queue() else {
            let seqs = self
                .inner
                .store
                .audit_append(std::slice::from_ref(&record))
                .await
                .map_err(audit_error)?;
            return Ok(seqs[0]);
        };
        let (done, wait) = oneshot::channel();
        queue
            .send(Job::Append {
                record: Box::new(record),
                done,
            })
            .map_err(|_| audit_error("the audit writer has stopped"))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(audit_error(e)),
            Err(_) => Err(audit_error("the audit writer has stopped")),
        }
    }

    /// Records a caseworker's decision with its audit entry: in the writer's next group
    /// commit (one transaction and one fsync with the entries queued beside it), or in a
    /// transaction of its own once the writer is closed or when nothing is recorded.
    /// A recorded decision is evicted from the read cache before this returns.
    pub async fn decide(&self, decision: Decision) -> Result<DecideResult> {
        let queue = if self.inner.off { None } else { self.queue() };
        let Some(queue) = queue else {
            let (unit, id) = (
                decision.unit().to_string(),
                decision.suggestion().to_string(),
            );
            let batch = self
                .inner
                .store
                .commit_batch(&[], std::slice::from_ref(&decision))
                .await?;
            let result = batch
                .results
                .into_iter()
                .next()
                .unwrap_or(DecideResult::NotFound);
            if let DecideResult::Recorded { audit_seq, .. } = &result {
                self.inner.cache.declare(*audit_seq, &unit, &id);
            }
            return Ok(result);
        };
        let (done, wait) = oneshot::channel();
        queue
            .send(Job::Decide {
                decision: Box::new(decision),
                done,
            })
            .map_err(|_| audit_error("the audit writer has stopped"))?;
        match wait.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(audit_error(e)),
            Err(_) => Err(audit_error("the audit writer has stopped")),
        }
    }

    /// Appends `records` in one transaction of their own (a bulk import, or a caller
    /// that batches itself); returns their sequence numbers once durable.
    pub async fn append_many(&self, records: &[Record]) -> Result<Vec<u64>> {
        let encoded: Vec<EncodedRecord> = records.iter().cloned().map(EncodedRecord::new).collect();
        self.inner
            .store
            .audit_append(&encoded)
            .await
            .map_err(audit_error)
    }

    /// The writer's queue, starting the writer on first use; none once closed.
    fn queue(&self) -> Option<mpsc::UnboundedSender<Job>> {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = q.as_ref() {
            return Some(s.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(writer(self.clone(), rx));
        *self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        *q = Some(tx.clone());
        Some(tx)
    }

    /// Signs and stores a checkpoint of the current head unless one of that size exists.
    /// Returns the latest checkpoint; `None` when there is no signer or no entry yet.
    pub async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let Some(signer) = &self.inner.signer else {
            return Ok(None);
        };
        let head = self.inner.store.audit_head().await?;
        if head.size == 0 {
            return Ok(None);
        }
        let cp = Checkpoint {
            origin: signer.name().to_string(),
            size: head.size,
            root: head.range.root(),
        };
        let note = signer
            .sign(&cp.to_text())
            .map_err(|e| EngineError::internal(format_args!("cannot sign a checkpoint: {e}")))?;
        let stored = StoredCheckpoint {
            size: cp.size,
            root: cp.root.to_vec(),
            note,
            at: self.inner.clock.stamp(),
        };
        self.inner.store.audit_add_checkpoint(&stored).await?;
        *self
            .inner
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(Some(stored))
    }

    /// Stops the writer (its queued entries are written first) and signs the final
    /// checkpoint of this process.
    pub async fn close(&self) -> Result<()> {
        if self.inner.off {
            return Ok(());
        }
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        drop(
            self.inner
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.index().await;
        if self.inner.signer.is_none() {
            let head = self.inner.store.audit_head().await?;
            if head.size > 0 {
                tracing::warn!(
                    "no audit signing key (run `tidig keys generate` or set TIDIG_AUDIT_KEY): \
                     the {} audit entries are hash-linked but no checkpoint was signed",
                    head.size
                );
            }
            return Ok(());
        }
        self.checkpoint().await?;
        Ok(())
    }

    /// Brings the query index up to the head. A failure leaves queries reading the
    /// entries not yet indexed directly (slower, never wrong), so it is only logged.
    async fn index(&self) {
        if let Err(e) = self.inner.store.audit_index_catch_up().await {
            tracing::warn!("audit query index not brought up to date: {e}");
        }
    }

    fn checkpoint_due(&self) -> bool {
        self.inner.signer.is_some()
            && self
                .inner
                .last_checkpoint
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= self.inner.every
    }
}

/// The group-commit loop: every job queued while the last batch committed goes into the
/// next transaction. Two decisions on one suggestion, or with one principal's
/// idempotency key, never share a batch: the later waits for the next, where it sees the
/// first one's result.
async fn writer(audit: Audit, mut rx: mpsc::UnboundedReceiver<Job>) {
    // The head the last batch left: the next batch's guess (see `commit`).
    let mut head: Option<AuditHead> = None;
    let mut waiting: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(j) => waiting.push_back(j),
                None => break,
            }
        }
        // Let callers woken by the last commit queue their next entries before this
        // batch is cut (a yield costs microseconds; a lone caller loses nothing).
        tokio::task::yield_now().await;
        while let Ok(j) = rx.try_recv() {
            waiting.push_back(j);
        }
        let mut records = Vec::new();
        let mut appended = Vec::new();
        let mut decisions = Vec::new();
        let mut decided = Vec::new();
        let mut later = std::collections::VecDeque::new();
        let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut keys: std::collections::HashSet<(String, String)> =
            std::collections::HashSet::new();
        while let Some(job) = waiting.pop_front() {
            if records.len() + decisions.len() >= MAX_BATCH {
                later.push_back(job);
                continue;
            }
            match job {
                Job::Append { record, done } => {
                    records.push(*record);
                    appended.push(done);
                }
                Job::Decide { decision, done } => {
                    let (by, key) = decision.key();
                    let key = (by.to_string(), key.to_string());
                    if taken.contains(decision.suggestion()) || keys.contains(&key) {
                        later.push_back(Job::Decide { decision, done });
                        continue;
                    }
                    taken.insert(decision.suggestion().to_string());
                    keys.insert(key);
                    decisions.push(*decision);
                    decided.push(done);
                }
            }
        }
        waiting = later;
        match commit(&audit.inner.store, &mut head, &records, &decisions).await {
            Ok((seqs, results)) => {
                // Before any waiter reads: the cache has evicted what the decisions
                // changed and seen every entry up to the batch's last.
                let mut range: Option<(u64, u64)> = None;
                let mut cover = |seq: u64| {
                    range = Some(match range {
                        Some((a, b)) => (a.min(seq), b.max(seq + 1)),
                        None => (seq, seq + 1),
                    });
                };
                for (d, r) in decisions.iter().zip(&results) {
                    if let DecideResult::Recorded { audit_seq, .. } = *r {
                        audit
                            .inner
                            .cache
                            .declare(audit_seq, d.unit(), d.suggestion());
                        cover(audit_seq);
                    }
                }
                for s in &seqs {
                    cover(*s);
                }
                if let Some((first, end)) = range {
                    audit.inner.cache.advance(first, end);
                }
                for (w, s) in appended.into_iter().zip(seqs) {
                    let _ = w.send(Ok(s));
                }
                for (w, r) in decided.into_iter().zip(results) {
                    let _ = w.send(Ok(r));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for w in appended {
                    let _ = w.send(Err(msg.clone()));
                }
                for w in decided {
                    let _ = w.send(Err(msg.clone()));
                }
            }
        }
        if audit.checkpoint_due() {
            if let Err(e) = audit.checkpoint().await {
                tracing::warn!("audit checkpoint not written: {e}");
            }
            audit.index().await;
        }
    }
}

/// Writes one batch. Plain entries go after the head the last batch left in one
/// statement without a transaction when the store can (PostgreSQL: a round trip instead
/// of four), and through the locking transaction when it cannot or another writer
/// appended since. `head` follows what was written; it is forgotten on any error.
async fn commit(
    store: &Store,
    head: &mut Option<AuditHead>,
    records: &[EncodedRecord],
    decisions: &[Decision],
) -> std::result::Result<(Vec<u64>, Vec<DecideResult>), StoreError> {
    if let (Some(h), true) = (head.as_ref(), decisions.is_empty()) {
        match store.audit_append_after(h, records).await {
            Ok(Some((seqs, after))) => {
                *head = Some(after);
                return Ok((seqs, Vec::new()));
            }
            Ok(None) => {}
            Err(e) => {
                *head = None;
                return Err(e);
            }
        }
    }
    match store.commit_batch(records, decisions).await {
        Ok(batch) => {
            if batch.head.is_some() {
                *head = batch.head;
            }
            Ok((batch.seqs, batch.results))
        }
        Err(e) => {
            *head = None;
            Err(e)
        }
    }
}

/// The recorded form of a principal.
pub fn actor(p: &Principal) -> Actor {
    Actor {
        id: p.id().to_string(),
        role: p.role.as_str().to_string(),
        unit: p.unit.clone(),
        auth: p.auth.as_str().to_string(),
    }
}

/// What an error means for the audit trail: refused by a rule (with the deciding rules)
/// or failed (with the error kind). The reason never carries a national ID.
pub fn outcome_of(e: &EngineError) -> Outcome {
    let reason = tidig_connectors::redact::scrub(&e.to_string()).into_owned();
    match e.deciding_rules() {
        Some(rules) => Outcome::Denied { rules, reason },
        None => Outcome::Failed {
            error: e.kind().to_string(),
            reason,
        },
    }
}

impl crate::app::App {
    /// A record of `action` by `by` now, under the app's rule pack.
    pub fn record(&self, by: &Principal, action: &str) -> Record {
        let mut r = Record::new(self.clock().stamp(), actor(by), &by.purpose, action);
        r.versions.rules = Some(self.pack().version().to_string());
        r
    }

    /// Passes `result` through; a failure is recorded first (with `record`'s action and
    /// details) and, if even that cannot be written, the audit failure is returned.
    pub async fn audited<T>(&self, record: Record, result: Result<T>) -> Result<T> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.audit()
                    .append(record.with_outcome(outcome_of(&e)))
                    .await?;
                Err(e)
            }
        }
    }

    /// Records the first use of facts that must be traceable: the rule pack's version,
    /// the deployment settings (legal footing and the stop switch).
    pub async fn record_first_seen(&self, by: &Principal) -> Result<()> {
        let pack = self.pack().version().to_string();
        let record = self
            .record(by, "rules.pack_seen")
            .with(json!({"rules_version": pack, "rules": self.pack().rules().len()}));
        self.store()
            .audit_first_seen("rules", &pack, &record)
            .await
            .map_err(audit_error)?;
        let deployment = serde_json::to_value(&self.settings().deployment)?;
        let digest = hex::encode(sha2::Sha256::digest(
            tidig_governance::audit::entry::canonical_json(&deployment).as_bytes(),
        ));
        let record = self
            .record(by, "deployment.settings_seen")
            .with(json!({"deployment": deployment, "digest": digest}));
        self.store()
            .audit_first_seen("deployment", &digest, &record)
            .await
            .map_err(audit_error)?;
        Ok(())
    }
}
