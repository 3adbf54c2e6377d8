//! The application core: one `App` per process, opened once, shared by the command line
//! and (later) the gRPC server. Every use case in `pipeline` takes `&App`.

use std::collections::HashMap;
use std::sync::Mutex;
use tidig_connectors::edge::EdgeConfig;
use tidig_connectors::social::CodeTable;

use tidig_governance::access::{AccessPolicy, AccessRequest};
use tidig_governance::RulePack;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::EngineError;
use crate::settings::Settings;
use crate::store::Store;

/// Everything an operation needs besides its arguments.
#[derive(Debug)]
pub struct App {
    /// The one connection pool of this process.
    store: Store,
    /// Validated settings (defaults → file → environment → flags).
    settings: Settings,
    /// The rule pack the settings name (or the built-in one), loaded and validated once.
    pack: RulePack,
    /// Where "now" comes from.
    clock: Clock,
    /// The audit log of the store (its writer and checkpoint signer).
    audit: Audit,
    /// Who may call which operation of the service (deny by default).
    access: AccessPolicy,
    /// What the service asks on every call and may remember for the process.
    memo: std::sync::Arc<Memo>,
}

/// Answers kept between calls. Each is a pure function of its key for the process's
/// lifetime, so remembering one never changes an answer.
#[derive(Debug, Default)]
struct Memo {
    /// The rule pack's decisions on what readers may see (the pack is fixed for the
    /// process).
    view: Mutex<HashMap<tidig_governance::Request, tidig_governance::Decision>>,
    /// The access policy's decisions (the policy is fixed for the process).
    access: Mutex<HashMap<AccessRequest, tidig_governance::Decision>>,
    /// Suggestions' unit and pseudonym by id: written once with the suggestion and never
    /// changed, so a listed or checked suggestion needs no read to be checked again.
    targets: Mutex<HashMap<String, (String, String)>>,
    /// Readers' views of stored rows, by the row's address and the viewer's facts. The
    /// weak reference keeps the address from being reused and says whether the row is
    /// still the one the read cache holds.
    views: Mutex<HashMap<(usize, ViewerKey), RememberedView>>,
}

/// What decides a reader's view of a suggestion: unit, role, health authority.
pub(crate) type ViewerKey = (String, String, bool);
type RememberedView = (
    std::sync::Weak<crate::store::StoredSuggestion>,
    std::sync::Arc<crate::pipeline::casework::SuggestionView>,
);

/// At most this many remembered answers of each kind; past it the memo starts over.
const MEMO_MAX: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bounded<K, V>(map: &mut HashMap<K, V>) -> &mut HashMap<K, V> {
    if map.len() >= MEMO_MAX {
        map.clear();
    }
    map
}

fn access_policy() -> AccessPolicy {
    // The built-in policy is validated by the governance tests; a failure here is a
    // broken build, reported at the first call rather than as a panic.
    AccessPolicy::builtin().unwrap_or_else(|e| {
        tracing::error!("the built-in access policy does not load: {e}");
        AccessPolicy::deny_all()
    })
}

impl App {
    /// Opens the store at `db` and loads the rule pack the settings name.
    pub async fn open(db: &str, settings: Settings, clock: Clock) -> Result<App, EngineError> {
        let pack = crate::pipeline::rules::load_pack(settings.rules.pack.as_deref())?;
        let signer = crate::settings::audit_signer(&settings.keys.dir)?;
        let store = Store::open(db).await?;
        let audit = Audit::new(store.clone(), signer, settings.audit_interval(), clock);
        Ok(App {
            store,
            settings,
            pack,
            clock,
            audit,
            access: access_policy(),
            memo: Default::default(),
        })
    }

    /// An app over an already open store (tests, benchmarks).
    /// Its audit log has no checkpoint signer unless [`App::with_signer`] gives one.
    pub fn with_store(store: Store, settings: Settings, pack: RulePack, clock: Clock) -> App {
        let audit = Audit::new(store.clone(), None, settings.audit_interval(), clock);
        App {
            store,
            settings,
            pack,
            clock,
            audit,
            access: access_policy(),
            memo: Default::default(),
        }
    }

    /// The same app signing audit checkpoints with `signer`.
    pub fn with_signer(self, signer: tidig_governance::audit::NoteSigner) -> App {
        let audit = Audit::new(
            self.store.clone(),
            Some(signer),
            self.settings.audit_interval(),
            self.clock,
        );
        App { audit, ..self }
    }

    /// The same store and pack under other settings (benchmarks lift capacities).
    pub fn with_settings(&self, settings: Settings) -> App {
        App {
            store: self.store.clone(),
            settings,
            pack: self.pack.clone(),
            clock: self.clock,
            audit: self.audit.clone(),
            access: self.access.clone(),
            memo: Default::default(),
        }
    }

    /// The same app recording nothing in the audit trail: `tidig bench serve` measures
    /// the service without it to show what the trail costs. Nothing else may call this.
    pub(crate) fn unaudited_for_benchmark(self) -> App {
        let audit = Audit::off(self.store.clone(), self.clock);
        App { audit, ..self }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn pack(&self) -> &RulePack {
        &self.pack
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn access(&self) -> &AccessPolicy {
        &self.access
    }

    /// Runs `f` with an evaluator of the app's pack that remembers decisions across
    /// calls (what readers may see is asked on every read).
    pub fn with_view_evaluator<T>(
        &self,
        f: impl FnOnce(&mut tidig_governance::Evaluator<'_>) -> T,
    ) -> T {
        let mut memo = lock(&self.memo.view);
        let mut ev =
            tidig_governance::Evaluator::with_memo(&self.pack, std::mem::take(bounded(&mut memo)));
        let out = f(&mut ev);
        *memo = ev.into_memo();
        out
    }

    /// The access policy's decision on `request` (remembered: the policy is fixed).
    pub fn decide_access(&self, request: &AccessRequest) -> tidig_governance::Decision {
        if let Some(d) = lock(&self.memo.access).get(request) {
            return d.clone();
        }
        let d = self.access.decide(request);
        bounded(&mut lock(&self.memo.access)).insert(request.clone(), d.clone());
        d
    }

    /// `viewer`'s view of `row`, made by `make` unless it was made for this very row
    /// before (a view is a function of the row, the viewer, and the pack and settings,
    /// which are fixed for the process).
    pub(crate) fn view_of<E>(
        &self,
        row: &std::sync::Arc<crate::store::StoredSuggestion>,
        viewer: ViewerKey,
        make: impl FnOnce() -> Result<crate::pipeline::casework::SuggestionView, E>,
    ) -> Result<std::sync::Arc<crate::pipeline::casework::SuggestionView>, E> {
        let key = (std::sync::Arc::as_ptr(row) as usize, viewer);
        if let Some((weak, view)) = lock(&self.memo.views).get(&key) {
            if weak
                .upgrade()
                .is_some_and(|r| std::sync::Arc::ptr_eq(&r, row))
            {
                return Ok(view.clone());
            }
        }
        let view = std::sync::Arc::new(make()?);
        // Only a row someone else holds (the read cache) can be met again.
        if std::sync::Arc::strong_count(row) > 1 {
            bounded(&mut lock(&self.memo.views))
                .insert(key, (std::sync::Arc::downgrade(row), view.clone()));
        }
        Ok(view)
    }

    /// A suggestion's unit and pseudonym, when this process has seen them.
    pub(crate) fn known_target(&self, id: &str) -> Option<(String, String)> {
        lock(&self.memo.targets).get(id).cloned()
    }

    /// Remembers suggestions' units and pseudonyms (`(id, unit, pseudonym)`), which never
    /// change once written.
    pub(crate) fn remember_targets<'a>(
        &self,
        targets: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        let mut memo = lock(&self.memo.targets);
        for (id, unit, pseudonym) in targets {
            bounded(&mut memo).insert(id.to_string(), (unit.to_string(), pseudonym.to_string()));
        }
    }

    /// The edge (pseudonym and vault keys, ID rules) for ingesting, with the keys loaded
    /// now: commands that never see a national ID do not need them.
    pub fn edge(&self) -> Result<EdgeConfig, EngineError> {
        self.settings.edge(self.clock.today())
    }

    /// The social-services code table the settings name.
    pub fn code_table(&self) -> Result<CodeTable, EngineError> {
        self.settings.code_table()
    }

    /// Writes what the audit writer holds, signs the final checkpoint, and closes the
    /// pool (SQLite checkpoints its WAL on the last close). The pool is closed even when
    /// the checkpoint fails; that failure is returned.
    pub async fn close(self) -> Result<(), EngineError> {
        let audit = self.audit.close().await;
        self.store.close().await;
        audit
    }
}
