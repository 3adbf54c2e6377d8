//! `tidig ingest`: files in, canonical records out, one transaction per file.
//!
//! Parsing runs on its own thread and hands batches to the writer over a bounded
//! channel, so memory stays bounded and parsing overlaps with the database work. A file
//! is loaded completely or not at all: its rows, its quarantine entries and its run
//! record commit together, so a process killed mid-file leaves no trace of that file and
//! a re-run ends with the same store. Files whose content (SHA-256) was loaded before
//! are recorded as `unchanged` and not parsed again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flate2::read::MultiGzDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tidig_connectors::edge::{Edge, EdgeConfig};
use tidig_connectors::pseudonym::Pseudonymizer;
use tidig_connectors::record::{ParseCounts, Record, Rejection, Sink};
use tidig_connectors::social::CodeTable;
use tidig_connectors::{detect, fhir, population, redact, social, Format, ReadError};
use tokio::sync::mpsc;

use crate::app::App;
use crate::domain::FileStatus;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::progress::Progress;
use crate::store::{Batch, RunRecord};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How an ingest runs.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Force one format instead of detecting it per file.
    pub format: Option<Format>,
    /// Parse files again even if the same content was loaded before.
    pub force: bool,
    /// Records per batch handed from parser to writer.
    pub batch_rows: usize,
}

impl Default for IngestOptions {
    fn default() -> IngestOptions {
        IngestOptions {
            format: None,
            force: false,
            batch_rows: 32_768,
        }
    }
}

/// What happened to one file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub format: Option<String>,
    pub sha256: Option<String>,
    pub status: FileStatus,
    pub read: u64,
    pub loaded: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub skipped: u64,
    /// Events kept pending: their patient is not loaded yet.
    pub pending: u64,
    /// Pending events (of this or earlier runs) this file's patients resolved.
    pub resolved: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

/// What one `tidig ingest` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub files: Vec<FileReport>,
    pub read: u64,
    pub loaded: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub skipped: u64,
    pub pending: u64,
    pub resolved: u64,
    /// Events still pending in the store after the run (all runs).
    pub pending_total: u64,
    pub failed_files: u64,
    pub seconds: f64,
    /// FHIR resources (lines) read per second over the whole run.
    pub fhir_lines_per_second: f64,
    pub records_per_second: f64,
}

/// A file to load, with its detected format.
struct Input {
    path: PathBuf,
    display: String,
    format: Option<Format>,
    /// A FHIR NDJSON file whose first resource is a Patient: loaded before other FHIR
    /// files of a run, by content rather than by name.
    patients: bool,
}

/// How a path is shown and stored: any token in it that could be a national ID (CPR
/// extracts are often named after the person) is replaced by a keyed hash, so that the
/// same file keeps one recognisable name without the ID.
pub(crate) fn shown(path: &Path, pseudonymizer: &Pseudonymizer) -> String {
    let text = path.display().to_string();
    redact::replace_id_like(&text, |token| {
        let h = pseudonymizer.key63("file-name", &[token.as_bytes()]);
        format!("id-{:08x}", (h as u64) & 0xffff_ffff)
    })
    .into_owned()
}

/// What is at a path, symlinks followed only to regular files.
enum Entry {
    File,
    Dir,
    /// Skipped, with the reason (special file, symlink to a directory).
    Skip(&'static str),
}

fn entry(path: &Path) -> std::io::Result<Entry> {
    let own = std::fs::symlink_metadata(path)?;
    if own.file_type().is_symlink() {
        let target = std::fs::metadata(path)?;
        return Ok(if target.is_file() {
            Entry::File
        } else if target.is_dir() {
            Entry::Skip("a symlink to a directory: not followed")
        } else {
            Entry::Skip("a symlink to a special file (FIFO, socket or device): skipped")
        });
    }
    Ok(if own.is_dir() {
        Entry::Dir
    } else if own.is_file() {
        Entry::File
    } else {
        Entry::Skip("not a regular file (FIFO, socket or device): skipped")
    })
}

/// Expands paths (directories recursively, skipping `truth/`) into ordered inputs and
/// notes about what is not loaded. A path that cannot be read, or a data file whose
/// format is not recognised, is a failed file: the run goes on and exits non-zero.
fn collect(
    paths: &[PathBuf],
    forced: Option<Format>,
    name: &dyn Fn(&Path) -> String,
) -> (Vec<Input>, Vec<FileReport>) {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match entry(path) {
            Err(e) => notes.push(note(
                name(path),
                FileStatus::Failed,
                Some(format!("cannot read: {e}")),
            )),
            Ok(Entry::Skip(why)) => {
                notes.push(note(name(path), FileStatus::Ignored, Some(why.into())))
            }
            Ok(Entry::File) => files.push((path.clone(), true)),
            Ok(Entry::Dir) => {
                let mut found = Vec::new();
                walk(path, &mut found, &mut notes, name);
                found.sort();
                files.extend(found.into_iter().map(|p| (p, false)));
            }
        }
    }
    for (path, explicit) in files {
        let display = name(&path);
        match sniff(&path) {
            Err(e) => notes.push(note(
                display,
                FileStatus::Failed,
                Some(format!("cannot read: {e}")),
            )),
            // An export with nothing in it (no new records today): nothing to load, and
            // no format to recognise.
            Ok(Sniffed::Empty) => notes.push(note(
                display,
                FileStatus::Ignored,
                Some("empty: no records".into()),
            )),
            Ok(Sniffed::Data(detected, patients)) => match forced.or(detected) {
                Some(format) => inputs.push(Input {
                    path,
                    display,
                    format: Some(format),
                    patients: patients && format == Format::FhirNdjson,
                }),
                None if explicit || detect::looks_like_data(&plain_name(&path)) => {
                    notes.push(note(
                        display,
                        FileStatus::Failed,
                        Some(
                            "format not recognised (expected FHIR NDJSON/Bundle, a population or \
                         case-event CSV/JSONL layout, or a CPR extract; use --format to force one)"
                                .into(),
                        ),
                    ))
                }
                None => notes.push(note(display, FileStatus::NotRecognised, None)),
            },
        }
    }
    // Persons before what refers to them; FHIR files that start with Patients first.
    // The order only saves work: events whose patient comes later are kept pending and
    // resolved when it arrives.
    inputs.sort_by_key(|i| {
        let f = i.format.map_or(9, Format::load_order);
        (f, !i.patients, i.display.clone())
    });
    (inputs, notes)
}

fn note(file: String, status: FileStatus, error: Option<String>) -> FileReport {
    FileReport {
        file,
        format: None,
        sha256: None,
        status,
        read: 0,
        loaded: 0,
        rejected: 0,
        duplicate: 0,
        skipped: 0,
        pending: 0,
        resolved: 0,
        seconds: 0.0,
        error,
    }
}

fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    notes: &mut Vec<FileReport>,
    name: &dyn Fn(&Path) -> String,
) {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) => {
            notes.push(note(
                name(dir),
                FileStatus::Failed,
                Some(format!("cannot list: {e}")),
            ));
            return;
        }
    };
    for item in listing {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                notes.push(note(
                    name(dir),
                    FileStatus::Failed,
                    Some(format!("cannot list: {e}")),
                ));
                continue;
            }
        };
        let path = item.path();
        let file_name = item.file_name().to_string_lossy().to_string();
        if file_name.starts_with('.') {
            continue;
        }
        match entry(&path) {
            Err(e) => notes.push(note(
                name(&path),
                FileStatus::Failed,
                Some(format!("cannot read: {e}")),
            )),
            Ok(Entry::Skip(why)) => {
                notes.push(note(name(&path), FileStatus::Ignored, Some(why.into())))
            }
            Ok(Entry::Dir) if file_name == "truth" => notes.push(note(
                name(&path),
                FileStatus::Ignored,
                Some("ground truth is never ingested".into()),
            )),
            Ok(Entry::Dir) => walk(&path, out, notes, name),
            Ok(Entry::File) => out.push(path),
        }
    }
}

/// Opens a file, decompressing `.gz`.
fn open(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

fn plain_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.strip_suffix(".gz").map(str::to_string).unwrap_or(name)
}

/// What a file's first bytes say.
enum Sniffed {
    /// The detected format and whether a FHIR file starts with Patients.
    Data(Option<Format>, bool),
    /// No bytes but whitespace in the whole file.
    Empty,
}

fn sniff(path: &Path) -> std::io::Result<Sniffed> {
    let mut reader = BufReader::with_capacity(64 * 1024, open(path)?);
    loop {
        let head = reader.fill_buf()?;
        if head.is_empty() {
            return Ok(Sniffed::Empty);
        }
        if !head.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        let n = head.len();
        reader.consume(n);
    }
    let head = reader.fill_buf()?;
    let patients = detect::leading_resource_type(head) == Some("Patient");
    Ok(Sniffed::Data(detect(&plain_name(path), head), patients))
}

/// Times a file is loaded before a deadlock with another load counts as its failure.
const LOAD_ATTEMPTS: u32 = 5;

/// The SHA-256 of each file, in order, each computed on a blocking thread while the
/// file before it loads: a file's digest (which decides whether it was loaded before) is
/// ready when its turn comes instead of costing a pass over it while nothing else runs.
struct Digests {
    paths: std::vec::IntoIter<PathBuf>,
    next: Option<tokio::task::JoinHandle<Result<String, String>>>,
}

impl Digests {
    fn ahead_of(inputs: &[Input]) -> Digests {
        let paths: Vec<PathBuf> = inputs
            .iter()
            .filter(|i| i.format.is_some())
            .map(|i| i.path.clone())
            .collect();
        let mut d = Digests {
            paths: paths.into_iter(),
            next: None,
        };
        d.next = d.start();
        d
    }

    fn start(&mut self) -> Option<tokio::task::JoinHandle<Result<String, String>>> {
        let path = self.paths.next()?;
        Some(tokio::task::spawn_blocking(move || sha256_file(&path)))
    }

    /// The digest of the next file; the one after it starts.
    async fn next(&mut self) -> Result<String, String> {
        let current = self.next.take();
        self.next = self.start();
        match current {
            Some(h) => h
                .await
                .unwrap_or_else(|e| Err(format!("hashing stopped: {e}"))),
            None => Err("no digest was started for this file".into()),
        }
    }
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A reader that counts the bytes read and can be stopped from outside.
struct Tracked<R> {
    inner: R,
    read: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped: the writer failed"));
        }
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Collects records into batches and hands full ones to the writer.
struct BatchSink {
    batch: Batch,
    limit: usize,
    tx: mpsc::Sender<Batch>,
    stop: Arc<AtomicBool>,
}

impl Sink for BatchSink {
    fn record(&mut self, record: Record) {
        self.batch.push(record);
    }
    fn reject(&mut self, rejection: Rejection) {
        self.batch.rejections.push(rejection);
    }
    fn line_done(&mut self, _bytes: u64) {
        if self.batch.len() >= self.limit {
            self.flush();
        }
    }
}

impl BatchSink {
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.tx.blocking_send(batch).is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Everything a parse needs, moved to the parser thread.
struct ParseJob {
    path: PathBuf,
    format: Format,
    edge: EdgeConfig,
    table: CodeTable,
    aliases: HashMap<i64, i64>,
    read: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    limit: usize,
}

fn run_parse(
    job: ParseJob,
    tx: mpsc::Sender<Batch>,
) -> (Result<ParseCounts, ReadError>, HashMap<i64, i64>) {
    let raw = match File::open(&job.path) {
        Ok(f) => f,
        Err(e) => return (Err(ReadError::Io(e)), job.aliases),
    };
    let tracked = Tracked {
        inner: raw,
        read: job.read.clone(),
        stop: job.stop.clone(),
    };
    let reader: Box<dyn Read> = if job.path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(tracked))
    } else {
        Box::new(tracked)
    };
    let reader = BufReader::with_capacity(256 * 1024, reader);
    let mut sink = BatchSink {
        batch: Batch::default(),
        limit: job.limit,
        tx,
        stop: job.stop.clone(),
    };
    let mut edge = Edge::new(&job.edge).with_aliases(job.aliases);
    let result = match job.format {
        Format::FhirNdjson => fhir::parse_ndjson(reader, &mut edge, &mut sink),
        Format::FhirBundle => fhir::parse_bundle(reader, &mut edge, &mut sink),
        Format::PopulationCsv => population::parse_csv(reader, &mut edge, &mut sink),
        Format::Cpr => population::parse_cpr(reader, &mut edge, &mut sink),
        Format::SocialCsv => social::parse_csv(reader, &job.table, &mut edge, &mut sink),
        Format::SocialJsonl => social::parse_jsonl(reader, &job.table, &mut edge, &mut sink),
        Format::FhirBulkLog | _ => Ok(ParseCounts::default()),
    };
    sink.flush();
    (result, edge.into_aliases())
}

/// Loads `paths` into the app's store, with the edge (keys, ID rules) and code table
/// its settings name.
pub async fn ingest(
    app: &App,
    by: &Principal,
    paths: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let edge = app.edge()?;
    let table = app.code_table()?;
    ingest_with(app, by, &edge, &table, paths, opts, progress).await
}

/// Loads `paths` with an explicit edge and code table.
/// Every file is recorded in the audit trail in the transaction that records its run:
/// name (IDs in it replaced), SHA-256, format and counts, or the failure.
pub async fn ingest_with(
    app: &App,
    by: &Principal,
    edge: &EdgeConfig,
    table: &CodeTable,
    paths: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let store = app.store();
    let clock = app.clock();
    let started = Instant::now();
    let key_record = app.record(by, "keys.first_use");
    store
        .check_key(
            "pseudonym",
            edge.pseudonymizer.key_fingerprint(),
            &key_record,
        )
        .await?;
    store
        .check_key("vault", edge.vault.key_fingerprint(), &key_record)
        .await?;
    let file_record =
        |file: &str, sha: &str, format: &str, fr: Option<&FileReport>, failure: Option<&str>| {
            let mut r = app.record(by, "ingest.file").with(serde_json::json!({
                "file": file, "sha256": sha, "format": format,
            }));
            if let Some(fr) = fr {
                r = r.with(serde_json::json!({
                    "status": fr.status.as_str(), "read": fr.read, "loaded": fr.loaded,
                    "rejected": fr.rejected, "duplicate": fr.duplicate, "skipped": fr.skipped,
                    "pending": fr.pending,
                }));
            }
            if let Some(f) = failure {
                r = r.with_outcome(tidig_governance::audit::Outcome::Failed {
                    error: "invalid_input".into(),
                    reason: redact::scrub(f).into_owned(),
                });
            }
            r
        };
    let name = |p: &Path| shown(p, &edge.pseudonymizer);
    let (inputs, notes) = collect(paths, opts.format, &name);
    let total_bytes: u64 = inputs
        .iter()
        .map(|i| std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0))
        .sum();
    progress.start("reading", Some(total_bytes));
    let read = Arc::new(AtomicU64::new(0));
    let mut done_bytes = 0u64;
    let mut report = IngestReport {
        failed_files: notes
            .iter()
            .filter(|n| n.status == FileStatus::Failed)
            .count() as u64,
        files: notes,
        ..IngestReport::default()
    };
    let needs_aliases = inputs
        .iter()
        .any(|i| matches!(i.format, Some(Format::FhirNdjson | Format::FhirBundle)));
    let mut aliases = if needs_aliases {
        store.aliases().await?
    } else {
        HashMap::new()
    };
    let abort_at = crate::testkit_hooks::abort_after_batches();
    let mut batches_written = 0u64;
    let mut fhir_lines = 0u64;
    let mut digests = Digests::ahead_of(&inputs);

    for input in inputs {
        let Some(format) = input.format else { continue };
        let file_started = Instant::now();
        let digest = digests.next().await;
        let started_at = clock.stamp();
        let sha = match digest {
            Ok(sha) => sha,
            Err(e) => {
                report.failed_files += 1;
                report
                    .files
                    .push(note(input.display.clone(), FileStatus::Failed, Some(e)));
                continue;
            }
        };
        let mut fr = FileReport {
            file: input.display.clone(),
            format: Some(format.name().into()),
            sha256: Some(sha.clone()),
            status: FileStatus::Loaded,
            read: 0,
            loaded: 0,
            rejected: 0,
            duplicate: 0,
            skipped: 0,
            pending: 0,
            resolved: 0,
            seconds: 0.0,
            error: None,
        };
        let size = std::fs::metadata(&input.path).map(|m| m.len()).unwrap_or(0);
        if format == Format::FhirBulkLog {
            fr.status = FileStatus::Ignored;
            fr.error = Some("Bulk Data export log: recognised, nothing to load".into());
            done_bytes += size;
            progress.position(done_bytes);
            report.files.push(fr);
            continue;
        }
        if !opts.force && store.loaded_run(&sha).await?.is_some() {
            fr.status = FileStatus::Unchanged;
            store
                .record_run(
                    &RunRecord {
                        file: &input.display,
                        sha256: &sha,
                        format: format.name(),
                        status: FileStatus::Unchanged,
                        error: None,
                        started_at: &started_at,
                        finished_at: &clock.stamp(),
                    },
                    &file_record(&input.display, &sha, format.name(), Some(&fr), None),
                )
                .await?;
            done_bytes += size;
            progress.position(done_bytes);
            report.files.push(fr);
            continue;
        }
        progress.message(input.display.rsplit('/').next().unwrap_or(&input.display));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = store
                .begin_file(&input.display, &sha, format.name(), started_at.clone())
                .await?;
            read.store(0, Ordering::Relaxed);
            let (btx, mut brx) = mpsc::channel::<Batch>(4);
            let stop = Arc::new(AtomicBool::new(false));
            let job = ParseJob {
                path: input.path.clone(),
                format,
                edge: edge.clone(),
                table: table.clone(),
                aliases: aliases.clone(),
                read: read.clone(),
                stop: stop.clone(),
                limit: opts.batch_rows,
            };
            let parser = std::thread::Builder::new()
                .name("tidig-parse".into())
                .spawn(move || run_parse(job, btx))
                .map_err(|e| {
                    EngineError::internal(format_args!("cannot start the parser thread: {e}"))
                })?;
            let mut write_error = None;
            let mut inserted_dup = (0u64, 0u64);
            let mut pending = 0u64;
            while let Some(batch) = brx.recv().await {
                match tx.write(batch).await {
                    Ok(o) => {
                        inserted_dup.0 += o.inserted;
                        inserted_dup.1 += o.duplicate;
                        pending += o.pending;
                        batches_written += 1;
                        progress.position(done_bytes + read.load(Ordering::Relaxed));
                        if abort_at.is_some_and(|n| batches_written >= n) {
                            std::process::abort();
                        }
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        write_error = Some(e);
                        break;
                    }
                }
            }
            drop(brx);
            let joined = tokio::task::spawn_blocking(move || parser.join())
                .await
                .map_err(|e| EngineError::internal(format_args!("joining the parser: {e}")))?;
            let (parsed, new_aliases) = match joined {
                Ok(v) => v,
                Err(_) => {
                    return Err(EngineError::internal(format_args!(
                        "{}: the parser thread panicked",
                        input.display
                    )))
                }
            };
            let failure = match (write_error, parsed) {
                // Another load held rows this one needed while it waited for this one's
                // (PostgreSQL broke the deadlock by failing this transaction): nothing of
                // it was kept, so the file is loaded again from the start.
                (Some(e), _) if e.is_conflict() && attempt < LOAD_ATTEMPTS => {
                    tracing::warn!("{}: {e}; loading it again", input.display);
                    continue;
                }
                (Some(e), _) => Err(format!("database error: {e}")),
                (None, Err(e)) => Err(redact::scrub(&e.to_string()).into_owned()),
                (None, Ok(c)) => Ok(c),
            };
            match failure {
                Ok(c) => {
                    let counts = crate::store::RunCounts {
                        read: c.read,
                        loaded: c.accepted.saturating_sub(inserted_dup.1 + pending),
                        rejected: c.rejected,
                        duplicate: inserted_dup.1,
                        skipped: c.skipped,
                        pending,
                    };
                    fr.pending = pending;
                    fr.read = counts.read;
                    fr.loaded = counts.loaded;
                    fr.rejected = counts.rejected;
                    fr.duplicate = counts.duplicate;
                    fr.skipped = counts.skipped;
                    let record = file_record(&input.display, &sha, format.name(), Some(&fr), None);
                    let finished = clock.stamp();
                    let committed = tx.commit(&counts, &finished, &record).await;
                    let resolved = match committed {
                        Ok(n) => n,
                        Err(e) if e.is_conflict() && attempt < LOAD_ATTEMPTS => {
                            tracing::warn!("{}: {e}; loading it again", input.display);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    fr.resolved = resolved;
                    aliases = new_aliases;
                    if matches!(format, Format::FhirNdjson | Format::FhirBundle) {
                        fhir_lines += c.read;
                    }
                }
                Err(message) => {
                    drop(tx);
                    let message = format!("{}: {message}", input.display);
                    fr.status = FileStatus::Failed;
                    store
                        .record_run(
                            &RunRecord {
                                file: &input.display,
                                sha256: &sha,
                                format: format.name(),
                                status: FileStatus::Failed,
                                error: Some(&message),
                                started_at: &started_at,
                                finished_at: &clock.stamp(),
                            },
                            &file_record(
                                &input.display,
                                &sha,
                                format.name(),
                                Some(&fr),
                                Some(&message),
                            ),
                        )
                        .await?;
                    fr.error = Some(message);
                    report.failed_files += 1;
                }
            }
            break;
        }
        done_bytes += size;
        progress.position(done_bytes);
        fr.seconds = file_started.elapsed().as_secs_f64();
        report.read += fr.read;
        report.loaded += fr.loaded;
        report.rejected += fr.rejected;
        report.duplicate += fr.duplicate;
        report.skipped += fr.skipped;
        report.pending += fr.pending;
        report.resolved += fr.resolved;
        report.files.push(fr);
    }
    report.pending_total = store.pending_events().await?;
    report.seconds = started.elapsed().as_secs_f64();
    let secs = report.seconds.max(1e-9);
    report.fhir_lines_per_second = fhir_lines as f64 / secs;
    report.records_per_second = report.read as f64 / secs;
    progress.finish();
    Ok(report)
}
