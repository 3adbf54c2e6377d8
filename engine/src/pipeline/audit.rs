//! The audit trail's use cases for data-protection officers: verify the log (every
//! entry hash, link, the Merkle root, every checkpoint's signature, optionally against
//! a checkpoint archived elsewhere), print the latest checkpoint, prove one entry's
//! inclusion, query and export. Query and export are personal-data reads: each is
//! recorded, durably, before anything is returned.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use tidig_connectors::national_id::parse as parse_id;
use tidig_connectors::pseudonym::Identity;
use tidig_governance::audit::merkle::{self, leaf_hash, Hash};
use tidig_governance::audit::{
    Checkpoint, CompactRange, Entry, EntryLink, EntryView, NoteVerifier,
};

use crate::app::App;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::store::{AuditFilter, AuditRow, AuditRowRef, StoredCheckpoint};

/// The first row verification found wrong, kept to say what happened to it.
struct Scanned {
    seq: u64,
    entry: String,
    leaf_hash: Vec<u8>,
}

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What kind of change verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// An entry's content no longer matches its hash, or its index columns differ.
    Altered,
    /// Entries are missing (a gap, or later entries renumbered down).
    Removed,
    /// An entry that was never appended stands in the chain.
    Inserted,
    /// Entries were swapped or moved.
    Reordered,
    /// The log ends before a signed checkpoint (or the head) says it does.
    Truncated,
    /// The chain is internally consistent but is not the one a signed checkpoint
    /// committed to: rewritten as a whole.
    Rewritten,
    /// A stored checkpoint does not carry a valid signature of the log's key.
    BadCheckpoint,
}

/// The first problem verification found.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The first affected sequence number, when it can be located.
    pub seq: Option<u64>,
    pub kind: Tamper,
    pub detail: String,
}

/// The outcome of `audit verify`.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries: u64,
    /// Base64 Merkle root of all entries.
    pub root: String,
    pub checkpoints: usize,
    /// The latest signed checkpoint, verified.
    pub latest_checkpoint: Option<CheckpointOut>,
    /// Entries appended after the latest checkpoint (signed at the end of the command).
    pub after_checkpoint: u64,
    /// The archived checkpoint given with `--against`, when the log extends it.
    pub against: Option<CheckpointOut>,
    pub problem: Option<Problem>,
    pub retention: Retention,
    pub seconds: f64,
    pub entries_per_second: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckpointOut {
    pub size: u64,
    pub root: String,
    pub note: String,
}

/// What the configured retention means for this log: nothing is ever deleted by tidig.
#[derive(Clone, Debug, Serialize)]
pub struct Retention {
    pub days: u32,
    pub oldest_entry: Option<String>,
    /// Always false: tidig never prunes; a store younger than the retention could not
    /// be pruned even by an operator's own tooling within policy.
    pub pruning: bool,
}

fn cp_out(size: u64, root: &[u8], note: &str) -> CheckpointOut {
    CheckpointOut {
        size,
        root: B64.encode(root),
        note: note.to_string(),
    }
}

/// The log's verifier: the configured signer's, or the one given.
pub fn verifier(app: &App, given: Option<&str>) -> Result<Option<NoteVerifier>> {
    match given {
        Some(text) => NoteVerifier::parse(text)
            .map(Some)
            .map_err(|e| EngineError::invalid("--verifier", e.to_string())),
        None => Ok(app.audit().verifier()),
    }
}

/// Verifies the whole log; `against` is a signed checkpoint note archived earlier.
pub async fn verify(
    app: &App,
    verifier: Option<&NoteVerifier>,
    against: Option<&str>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let store = app.store();
    let checkpoints = store.audit_checkpoints().await?;
    let head = store.audit_head().await?;
    let mut problems: Vec<Problem> = Vec::new();
    let mut leaves: Vec<Hash> = Vec::with_capacity(head.size as usize);
    let mut range = CompactRange::new();
    let mut roots_at: Vec<(u64, Hash)> = Vec::new();
    let wanted: std::collections::BTreeSet<u64> = checkpoints
        .iter()
        .map(|c| c.size)
        .chain(against_size(against))
        .collect();
    let mut first: Option<(u64, Scanned)> = None;
    let mut oldest: Option<String> = None;
    let (index_upto, index_rows) = store.audit_index_extent().await?;
    let mut subjects_below = 0u64;
    store
        .audit_for_each(|row| {
            let i = leaves.len() as u64;
            if i == 0 {
                oldest = EntryView::parse(row.entry).ok().map(|v| v.at.into_owned());
            }
            let h = leaf_hash(row.entry.as_bytes());
            let link = EntryLink::read(row.entry);
            if link.is_some_and(|l| l.has_subject && l.seq < index_upto) {
                subjects_below += 1;
            }
            if first.is_none() && !row_ok(i, &row, link.as_ref(), &h, leaves.last()) {
                let scanned = Scanned {
                    seq: row.seq,
                    entry: row.entry.to_string(),
                    leaf_hash: row.leaf_hash.to_vec(),
                };
                first = Some((i, scanned));
            }
            leaves.push(h);
            range.push(h);
            if wanted.contains(&range.size()) {
                roots_at.push((range.size(), range.root()));
            }
            Ok(())
        })
        .await?;
    let count = leaves.len() as u64;
    if let Some((i, row)) = first {
        problems.push(classify(app, i, &row, &leaves).await?);
    }
    // The query index (who acted, whom it concerned) must hold one row per principal
    // and one per person of every entry it reaches: rows removed from it would hide
    // entries from `audit query`.
    if index_upto <= count && index_rows != index_upto + subjects_below {
        problems.push(Problem {
            seq: None,
            kind: Tamper::Altered,
            detail: format!(
                "the query index holds {index_rows} rows where the first {index_upto} entries \
                 give {}: rows were removed from it or added, so queries by principal or \
                 person may miss entries",
                index_upto + subjects_below
            ),
        });
    }
    // What queries select on (time, principal, action, outcome, subject) is generated
    // from each entry by the database and cannot be written on its own, unless the
    // table itself was redefined.
    if !store.audit_query_columns_generated().await? {
        problems.push(Problem {
            seq: None,
            kind: Tamper::Altered,
            detail: "the query columns of audit_log are no longer generated from the entries: \
                     the table was redefined, so queries may not show what the entries say"
                .into(),
        });
    }
    let root_at = |size: u64| roots_at.iter().find(|(s, _)| *s == size).map(|(_, r)| *r);
    // Checkpoints: signature, then what they commit to.
    let mut latest = None;
    for cp in &checkpoints {
        let Some(v) = verifier else { break };
        match Checkpoint::open(&cp.note, v) {
            Err(e) => problems.push(Problem {
                seq: None,
                kind: Tamper::BadCheckpoint,
                detail: format!("the checkpoint of size {}: {e}", cp.size),
            }),
            Ok(c) if c.size != cp.size || c.root.as_slice() != cp.root.as_slice() => {
                problems.push(Problem {
                    seq: None,
                    kind: Tamper::BadCheckpoint,
                    detail: format!(
                        "the stored size or root of checkpoint {} differs from its signed note",
                        cp.size
                    ),
                })
            }
            Ok(c) => {
                check_extends(
                    &c,
                    count,
                    root_at(c.size),
                    "a signed checkpoint",
                    &mut problems,
                );
                latest = Some(cp_out(c.size, &c.root, &cp.note));
            }
        }
    }
    if verifier.is_none() && !checkpoints.is_empty() {
        return Err(EngineError::invalid(
            "--verifier",
            "no audit key is configured: give the log's verifier key to check its checkpoints",
        ));
    }
    if head.size != count || (count > 0 && leaves.last() != Some(&head.last_hash)) {
        let kind = if head.size > count {
            Tamper::Truncated
        } else {
            Tamper::Inserted
        };
        problems.push(Problem {
            seq: Some(head.size.min(count)),
            kind,
            detail: format!(
                "the head row records {} entries; the table holds {count}",
                head.size
            ),
        });
    } else if head.range.root() != range.root() {
        problems.push(Problem {
            seq: None,
            kind: Tamper::Rewritten,
            detail: "the head's Merkle range does not give the entries' root".into(),
        });
    }
    let mut against_out = None;
    if let Some(note) = against {
        let v = verifier.ok_or_else(|| {
            EngineError::invalid(
                "--against",
                "checking a checkpoint needs the log's verifier key",
            )
        })?;
        let c = Checkpoint::open(note, v)
            .map_err(|e| EngineError::invalid("--against", e.to_string()))?;
        let before = problems.len();
        check_extends(
            &c,
            count,
            root_at(c.size),
            "the archived checkpoint",
            &mut problems,
        );
        if problems.len() == before {
            // The log extends it: show the consistency proof a third party would check.
            let proof =
                merkle::consistency_proof(&leaves, c.size).map_err(EngineError::internal)?;
            merkle::verify_consistency(c.size, count, &c.root, &range.root(), &proof)
                .map_err(|e| EngineError::internal(format_args!("consistency proof: {e}")))?;
            against_out = Some(cp_out(c.size, &c.root, note));
        }
    }
    // The first problem by sequence number (unlocated ones last).
    problems.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    let seconds = started.elapsed().as_secs_f64();
    Ok(VerifyReport {
        ok: problems.is_empty(),
        entries: count,
        root: B64.encode(range.root()),
        checkpoints: checkpoints.len(),
        after_checkpoint: count
            - latest
                .as_ref()
                .map_or(0, |l: &CheckpointOut| l.size.min(count)),
        latest_checkpoint: latest,
        against: against_out,
        problem: problems.into_iter().next(),
        retention: Retention {
            days: app.settings().audit.retention_days,
            oldest_entry: oldest,
            pruning: false,
        },
        seconds,
        entries_per_second: count as f64 / seconds.max(1e-9),
    })
}

fn against_size(note: Option<&str>) -> Option<u64> {
    let text = note?;
    let body = &text[..text.find("\n\n")? + 1];
    Checkpoint::parse(body).ok().map(|c| c.size)
}

/// Whether a checkpoint of `c.size` entries with root `c.root` is a prefix of the log.
fn check_extends(
    c: &Checkpoint,
    count: u64,
    computed: Option<Hash>,
    what: &str,
    problems: &mut Vec<Problem>,
) {
    if c.size > count {
        problems.push(Problem {
            seq: Some(count),
            kind: Tamper::Truncated,
            detail: format!(
                "{what} covers {} entries but the log holds {count}: entries {count}..{} are gone",
                c.size,
                c.size - 1
            ),
        });
    } else if computed != Some(c.root) {
        problems.push(Problem {
            seq: None,
            kind: Tamper::Rewritten,
            detail: format!(
                "the first {} entries do not have the root {what} signed: the log was rewritten \
                 (it is not an extension of that checkpoint)",
                c.size
            ),
        });
    }
}

/// Whether row `i` (whose entry hashes to `h`) is exactly what was appended at `i`: its
/// number, its stored hash and its link to the entry before. (The query columns are
/// generated from the entry by the database; [`verify`] checks that they still are.)
fn row_ok(
    i: u64,
    row: &AuditRowRef<'_>,
    link: Option<&EntryLink<'_>>,
    h: &Hash,
    prev: Option<&Hash>,
) -> bool {
    if row.seq != i || row.leaf_hash != h.as_slice() {
        return false;
    }
    let Some(link) = link else {
        return false;
    };
    // The link as the encoding writes it: lowercase hex of the previous leaf hash.
    let mut want = [0u8; 64];
    const_hex::encode_to_slice(prev.copied().unwrap_or([0u8; 32]), &mut want).is_ok()
        && link.v == 1
        && link.seq == i
        && link.prev.as_bytes() == want.as_slice()
}

/// Whether the entry written at `i` now stands, intact, at `i + 1`: something was put
/// before it.
async fn shifted_up(app: &App, i: u64) -> Result<bool> {
    let Some(next) = app.store().audit_entry(i + 1).await? else {
        return Ok(false);
    };
    let intact = leaf_hash(next.entry.as_bytes()).as_slice() == next.leaf_hash.as_slice();
    Ok(intact && EntryView::parse(&next.entry).is_ok_and(|v| v.seq == i))
}

fn inserted_at(i: u64) -> Problem {
    Problem {
        seq: Some(i),
        kind: Tamper::Inserted,
        detail: format!(
            "entry {i} was never appended: it was inserted, moving the entry written as {i} \
             to {}",
            i + 1
        ),
    }
}

/// Says what happened at the first row that is not what was appended there.
async fn classify(app: &App, i: u64, row: &Scanned, leaves: &[Hash]) -> Result<Problem> {
    let problem = |kind, detail: String| Problem {
        seq: Some(i),
        kind,
        detail,
    };
    if row.seq != i {
        return Ok(problem(
            Tamper::Removed,
            format!("entries {i}..{} are missing", row.seq - 1),
        ));
    }
    let h = leaf_hash(row.entry.as_bytes());
    let view = EntryView::parse(&row.entry).ok();
    let Some(view) = view else {
        if shifted_up(app, i).await? {
            return Ok(inserted_at(i));
        }
        return Ok(problem(
            Tamper::Altered,
            format!("entry {i} is not a valid entry encoding any more"),
        ));
    };
    let written_at = view.seq;
    if written_at != i && row.leaf_hash.as_slice() == h.as_slice() {
        // An intact entry from another position.
        if let Some(other) = app.store().audit_entry(written_at).await? {
            let back = EntryView::parse(&other.entry).map(|v| v.seq).ok();
            if back == Some(i) {
                return Ok(problem(
                    Tamper::Reordered,
                    format!("entries {i} and {written_at} were swapped"),
                ));
            }
        }
        return Ok(if written_at > i {
            problem(
                Tamper::Removed,
                format!(
                    "entry {i} holds the entry written as {written_at}: entries were removed \
                     before it and the rest renumbered"
                ),
            )
        } else {
            Problem {
                seq: Some(written_at),
                kind: Tamper::Inserted,
                detail: format!(
                    "the entry written as {written_at} now stands at {i}: an entry was inserted \
                     before it"
                ),
            }
        });
    }
    if shifted_up(app, i).await? {
        return Ok(inserted_at(i));
    }
    if row.leaf_hash.as_slice() != h.as_slice() || written_at != i {
        return Ok(problem(
            Tamper::Altered,
            format!("entry {i} was changed: its content no longer matches its hash"),
        ));
    }
    let prev = i.checked_sub(1).map(|p| leaves[p as usize]);
    let want_prev = prev.map_or_else(|| hex::encode([0u8; 32]), hex::encode);
    if view.prev != want_prev {
        // Entry i is intact but commits to another predecessor: either i-1 was changed
        // and its hash recomputed, or i-1 was inserted.
        return Ok(Problem {
            seq: Some(i.saturating_sub(1)),
            kind: Tamper::Altered,
            detail: format!(
                "entry {i} commits to a different entry {}: that one was changed (its hash \
                 recomputed) or put in its place",
                i.saturating_sub(1)
            ),
        });
    }
    Ok(problem(
        Tamper::Altered,
        format!("entry {i} is not in the canonical encoding (version or link written otherwise)"),
    ))
}

/// Signs a checkpoint of the current head (unless one exists) and returns the latest.
pub async fn checkpoint(app: &App) -> Result<StoredCheckpoint> {
    if app.audit().verifier().is_none() {
        return Err(EngineError::invalid(
            "audit key",
            "no audit signing key: run `tidig keys generate` or set TIDIG_AUDIT_KEY",
        ));
    }
    app.audit().checkpoint().await?;
    let all = app.store().audit_checkpoints().await?;
    all.into_iter().last().ok_or_else(|| EngineError::NotFound {
        what: "checkpoint (the log is empty)",
        id: "0".into(),
    })
}

/// An inclusion proof of one entry in the latest checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub proof: Vec<String>,
    pub root: String,
    pub checkpoint: String,
    pub entry: Value,
    /// The entry exactly as hashed (its leaf hash is SHA-256 of 0x00 and this).
    #[serde(skip)]
    pub entry_text: String,
}

pub async fn prove(app: &App, seq: u64) -> Result<InclusionProof> {
    let cp = checkpoint(app).await?;
    if seq >= cp.size {
        return Err(EngineError::NotFound {
            what: "entry in the latest checkpoint",
            id: seq.to_string(),
        });
    }
    let leaves: Vec<Hash> = app
        .store()
        .audit_leaf_hashes(cp.size)
        .await?
        .into_iter()
        .filter_map(|h| h.try_into().ok())
        .collect();
    let proof = merkle::inclusion_proof(&leaves, seq).map_err(EngineError::internal)?;
    let leaf = leaves[seq as usize];
    merkle::verify_inclusion(seq, cp.size, &leaf, &proof, &cp.root).map_err(|e| {
        EngineError::internal(format_args!(
            "the stored hashes do not prove entry {seq}: {e}; run `tidig audit verify`"
        ))
    })?;
    let row = app
        .store()
        .audit_entry(seq)
        .await?
        .ok_or_else(|| EngineError::NotFound {
            what: "entry",
            id: seq.to_string(),
        })?;
    Ok(InclusionProof {
        seq,
        tree_size: cp.size,
        leaf_hash: B64.encode(leaf),
        proof: proof.iter().map(|p| B64.encode(p)).collect(),
        root: B64.encode(&cp.root),
        checkpoint: cp.note,
        entry: serde_json::from_str(&row.entry)?,
        entry_text: row.entry,
    })
}

/// A query's filters as given (a person by national ID or pseudonym).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub from: Option<String>,
    pub to: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub person: Option<String>,
    pub page_size: u32,
    pub page_token: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryPage {
    pub entries: Vec<Value>,
    pub next_page_token: Option<String>,
}

/// The pseudonym a `--person` value stands for: a pseudonym as given, or a national ID
/// pseudonymized now (never echoed, never stored).
pub(crate) fn person_pseudonym(app: &App, field: &str, person: &str) -> Result<String> {
    let p = person.trim();
    if p.len() == 33 && p.starts_with('p') && p[1..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(p.to_ascii_lowercase());
    }
    let edge = app.edge()?;
    let id = parse_id(edge.country, p, &edge.id_rules).map_err(|_| {
        EngineError::invalid(
            field,
            format!(
                "not a pseudonym (p + 32 hex) nor a valid {} national ID (the value is not shown)",
                edge.country.code()
            ),
        )
    })?;
    Ok(edge
        .pseudonymizer
        .person(Identity::National(&id))
        .pseudonym())
}

fn time_bound(field: &str, v: &Option<String>) -> Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(Some(format!("{d}T00:00:00.000Z")));
    }
    Err(EngineError::invalid(
        field,
        format!("`{v}` is not a date (YYYY-MM-DD) or an RFC 3339 time"),
    ))
}

/// A query checked: the filter (a person as their pseudonym) and where the page starts.
/// `flag` names a field as the caller spelled it (`--page-size` or `page_size`).
pub(crate) fn checked_query(
    app: &App,
    q: &Query,
    flag: fn(&'static str) -> &'static str,
) -> Result<(AuditFilter, Option<u64>)> {
    if q.page_size == 0 || q.page_size > 1000 {
        return Err(EngineError::invalid(flag("page_size"), "must be 1..=1000"));
    }
    let after = match &q.page_token {
        None => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            EngineError::invalid(flag("page_token"), "not a token a query returned")
        })?),
    };
    if let Some(o) = &q.outcome {
        if !["allowed", "denied", "failed"].contains(&o.as_str()) {
            return Err(EngineError::invalid(
                flag("outcome"),
                format!("`{o}` is not allowed, denied or failed"),
            ));
        }
    }
    let filter = AuditFilter {
        from: time_bound(flag("from"), &q.from)?,
        to: time_bound(flag("to"), &q.to)?,
        principal: q.principal.clone(),
        action: q.action.clone(),
        outcome: q.outcome.clone(),
        subject: q
            .person
            .as_deref()
            .map(|p| person_pseudonym(app, flag("person"), p))
            .transpose()?,
    };
    Ok((filter, after))
}

/// What an audit entry records of a query.
pub(crate) fn query_details(filter: &AuditFilter, after: Option<u64>) -> Value {
    json!({
        "filter": {
            "from": filter.from, "to": filter.to, "principal": filter.principal,
            "action": filter.action, "outcome": filter.outcome, "subject": filter.subject,
        },
        "page_token": after,
    })
}

/// One page of `rows` read with `page_size + 1`.
pub(crate) fn query_page(mut rows: Vec<AuditRow>, page_size: u32) -> Result<QueryPage> {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    Ok(QueryPage {
        next_page_token: more
            .then(|| rows.last().map(|r| r.seq.to_string()))
            .flatten(),
        entries: rows
            .iter()
            .map(|r| serde_json::from_str(&r.entry))
            .collect::<Result<_, _>>()?,
    })
}

/// The command line's spelling of a query field.
fn cli_flag(field: &'static str) -> &'static str {
    match field {
        "page_size" => "--page-size",
        "page_token" => "--page-token",
        "outcome" => "--outcome",
        "from" => "--from",
        "to" => "--to",
        "person" => "--person",
        other => other,
    }
}

/// Entries matching the query, oldest first, one page. Recorded before it returns.
pub async fn query(app: &App, by: &Principal, q: &Query) -> Result<QueryPage> {
    let mut record = app.record(by, "audit.query");
    let result = async {
        let (filter, after) = checked_query(app, q, cli_flag)?;
        record = record.clone().with(query_details(&filter, after));
        record.subject = filter.subject.clone();
        let rows = app
            .store()
            .audit_query(&filter, after, q.page_size + 1)
            .await?;
        Ok(rows)
    }
    .await;
    let rows = app.audited(record.clone(), result).await?;
    let page = query_page(rows, q.page_size)?;
    // Durable first: the read is recorded before anything is returned.
    app.audit()
        .append(record.with(json!({"returned": page.entries.len()})))
        .await?;
    Ok(page)
}

/// The export format's first line.
pub const EXPORT_FORMAT: &str = "tidig-audit-export-v1";

/// Writes the log up to its latest checkpoint as JSON Lines to `out`: a header line
/// (format, origin, verifier key, signed checkpoint), then every entry's canonical
/// encoding, one per line, exactly as hashed. Recorded before the first byte is written.
pub async fn export(
    app: &App,
    by: &Principal,
    out: &mut dyn std::io::Write,
) -> Result<ExportReport> {
    let record = app.record(by, "audit.export");
    let result = checkpoint(app).await;
    let cp = app.audited(record.clone(), result).await?;
    let verifier = app
        .audit()
        .verifier()
        .ok_or_else(|| EngineError::internal("checkpoint without a key"))?;
    app.audit()
        .append(record.with(json!({"size": cp.size})))
        .await?;
    let header = export_header(&verifier, &cp);
    let io = |e: std::io::Error| EngineError::internal(format_args!("writing the export: {e}"));
    writeln!(out, "{header}").map_err(io)?;
    let mut written = 0u64;
    let mut failed: Option<std::io::Error> = None;
    app.store()
        .audit_scan(0, i64::try_from(cp.size).unwrap_or(i64::MAX), |row| {
            if failed.is_none() {
                if let Err(e) = writeln!(out, "{}", row.entry) {
                    failed = Some(e);
                }
                written += 1;
            }
            Ok(())
        })
        .await?;
    if let Some(e) = failed {
        return Err(io(e));
    }
    out.flush().map_err(io)?;
    Ok(ExportReport {
        entries: written,
        checkpoint: cp_out(cp.size, &cp.root, &cp.note),
    })
}

/// The export's header line (format, origin, verifier key, size, signed checkpoint).
pub(crate) fn export_header(verifier: &NoteVerifier, cp: &StoredCheckpoint) -> Value {
    json!({
        "format": EXPORT_FORMAT,
        "origin": verifier.name(),
        "verifier": verifier.to_text(),
        "size": cp.size,
        "checkpoint": cp.note,
    })
}

/// The entries `from <= seq < to` exactly as hashed, one export line each.
pub async fn export_lines(app: &App, from: u64, to: u64) -> Result<Vec<String>> {
    let mut lines = Vec::with_capacity(to.saturating_sub(from) as usize);
    app.store()
        .audit_scan(
            i64::try_from(from).unwrap_or(i64::MAX),
            i64::try_from(to).unwrap_or(i64::MAX),
            |row| {
                lines.push(row.entry.to_string());
                Ok(())
            },
        )
        .await?;
    Ok(lines)
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub entries: u64,
    pub checkpoint: CheckpointOut,
}

/// Verifies an export file without any store: every line's hash, the chain, the Merkle
/// root against the signed checkpoint in the header, checked with `verifier` (given
/// separately: a verifier key from inside the file proves nothing).
pub fn verify_export(text: &str, verifier: &NoteVerifier) -> Result<CheckpointOut> {
    let bad = |why: String| EngineError::invalid("export", why);
    let mut lines = text.lines();
    let header: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| bad("line 1 is not the export header".into()))?;
    if header["format"] != EXPORT_FORMAT {
        return Err(bad(format!("line 1: the format is not {EXPORT_FORMAT}")));
    }
    let note = header["checkpoint"]
        .as_str()
        .ok_or_else(|| bad("line 1: no checkpoint".into()))?;
    let cp = Checkpoint::open(note, verifier).map_err(|e| bad(format!("line 1: {e}")))?;
    let mut range = CompactRange::new();
    let mut prev = [0u8; 32];
    for (n, line) in lines.enumerate() {
        let e = Entry::parse(line).map_err(|e| bad(format!("line {}: {e}", n + 2)))?;
        if e.seq != n as u64 || e.prev != prev {
            return Err(bad(format!(
                "line {}: entry {} is out of order or not linked to the one before",
                n + 2,
                e.seq
            )));
        }
        prev = leaf_hash(line.as_bytes());
        range.push(prev);
    }
    if range.size() != cp.size || range.root() != cp.root {
        return Err(bad(format!(
            "the {} entries do not have the signed root of size {}",
            range.size(),
            cp.size
        )));
    }
    Ok(cp_out(cp.size, &cp.root, note))
}

/// How many entries the log holds (its head).
pub async fn entries(app: &App) -> Result<u64> {
    Ok(app.store().audit_head().await?.size)
}
