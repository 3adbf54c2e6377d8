//! What the caseworker service reads (a unit's queue pages, whole suggestions), kept
//! between calls for as long as the audit trail shows that nothing changed them.
//!
//! Why the trail can tell: every change to suggestions or decisions (a scoring run, a
//! decision) appends its audit entry in its own transaction, and every read call's
//! entry is made durable by the group-commit writer before the call reads. So when the
//! writer commits a batch it sees, under the log's write lock, every entry appended
//! since its last batch. Entries this process declared (its own decisions, each with the
//! suggestion it changed) evict just what they changed; any other entry (another
//! process's scoring run or decision, anything undeclared) empties the cache. A call
//! whose entry the writer committed therefore reads a cache that reflects every change
//! committed before that entry: the answer is the state at some instant during the
//! call, as a read from the store would be.
//!
//! Fills are guarded by an epoch that every eviction advances, so a row read from the
//! store before a change and returned after it is never kept. The store stays the only
//! authority for changes: a decision checks the suggestion's row in its own transaction.
//! With the audit trail off (`tidig bench serve`'s baseline) nothing is kept.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::access::AccessPass;
use crate::store::{PageKey, ScoringSwitch, StoredSuggestion, SuggestionSummaryRow};

/// At most this many suggestions and pages are kept; past it the cache starts over.
const MAX_ROWS: usize = 65_536;
const MAX_PAGES: usize = 4_096;

/// One listing query: the unit, today's date (what has expired), where the page starts
/// and how many rows it takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageQuery {
    unit: String,
    today: String,
    after: Option<(String, u64, String, String)>,
    limit: usize,
}

impl PageQuery {
    pub fn new(unit: &str, today: &str, after: Option<&PageKey>, limit: usize) -> PageQuery {
        PageQuery {
            unit: unit.to_string(),
            today: today.to_string(),
            after: after.map(|k| {
                (
                    k.band.clone(),
                    k.score.to_bits(),
                    k.created_at.clone(),
                    k.id.clone(),
                )
            }),
            limit,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Every audit entry below this sequence number is accounted for.
    through: u64,
    /// Advanced by every eviction: a fill whose read began before it is dropped.
    epoch: u64,
    /// Entries this process appended outside the writer, whose changes are already
    /// evicted (at or past `through`).
    declared: BTreeSet<u64>,
    rows: HashMap<String, Arc<StoredSuggestion>>,
    pages: HashMap<PageQuery, Arc<Vec<SuggestionSummaryRow>>>,
    /// The stop switch as stored (`Some(None)`: never used).
    switch: Option<Option<ScoringSwitch>>,
}

impl State {
    fn clear(&mut self) {
        self.rows.clear();
        self.pages.clear();
        self.switch = None;
        self.epoch += 1;
    }
}

/// The service's read cache (see the module documentation).
#[derive(Debug)]
pub struct ReadCache {
    enabled: bool,
    state: Mutex<State>,
}

impl ReadCache {
    pub(crate) fn new(enabled: bool) -> ReadCache {
        ReadCache {
            enabled,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer committed entries `first..end`: every entry between the last batch and
    /// `first` that this process did not declare is a change the cache cannot see, so
    /// the cache empties.
    pub(crate) fn advance(&self, first: u64, end: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.state();
        if first > s.through {
            let gap = first - s.through;
            let declared = s.declared.range(s.through..first).count() as u64;
            if declared != gap {
                s.clear();
            }
        }
        s.through = s.through.max(end);
        let through = s.through;
        s.declared = s.declared.split_off(&through);
    }

    /// This process appended entry `seq` with a change to suggestion `id` of `unit`:
    /// evicts the suggestion and the unit's pages.
    pub(crate) fn declare(&self, seq: u64, unit: &str, id: &str) {
        if !self.enabled {
            return;
        }
        let mut s = self.state();
        s.rows.remove(id);
        s.pages.retain(|q, _| q.unit != unit);
        s.epoch += 1;
        if seq >= s.through {
            s.declared.insert(seq);
        }
    }

    /// Where a read from the store begins: fills carry it. `None` when nothing is kept
    /// for `pass` (no cache, or its entry was not committed by the writer).
    pub(crate) fn begin(&self, pass: &AccessPass) -> Option<u64> {
        let seq = pass.audit_seq()?;
        let s = self.state();
        (self.enabled && seq < s.through).then_some(s.epoch)
    }

    /// The pass's suggestion, when kept.
    pub(crate) fn row(&self, pass: &AccessPass) -> Option<Arc<StoredSuggestion>> {
        let id = pass.suggestion()?;
        self.begin(pass)?;
        self.state().rows.get(id).cloned()
    }

    /// A page of the pass's unit, when kept.
    pub(crate) fn page(
        &self,
        pass: &AccessPass,
        query: &PageQuery,
    ) -> Option<Arc<Vec<SuggestionSummaryRow>>> {
        if query.unit != pass.unit() {
            return None;
        }
        self.begin(pass)?;
        self.state().pages.get(query).cloned()
    }

    /// The stop switch, when kept (`Some(None)`: never used).
    pub(crate) fn switch(&self, pass: &AccessPass) -> Option<Option<ScoringSwitch>> {
        self.begin(pass)?;
        self.state().switch.clone()
    }

    /// Keeps the stop switch read since `epoch` (a change to it is another process's
    /// entry or this process's own transaction, both of which empty the cache).
    pub(crate) fn fill_switch(&self, epoch: Option<u64>, switch: Option<ScoringSwitch>) {
        let mut s = self.state();
        if epoch == Some(s.epoch) {
            s.switch = Some(switch);
        }
    }

    /// Keeps a suggestion read since `epoch`, unless something was evicted meanwhile.
    pub(crate) fn fill_row(&self, epoch: Option<u64>, row: Arc<StoredSuggestion>) {
        let mut s = self.state();
        if epoch == Some(s.epoch) {
            if s.rows.len() >= MAX_ROWS {
                s.rows.clear();
            }
            s.rows.insert(row.id.clone(), row);
        }
    }

    /// Keeps a page read since `epoch`, unless something was evicted meanwhile.
    pub(crate) fn fill_page(
        &self,
        epoch: Option<u64>,
        query: PageQuery,
        rows: Arc<Vec<SuggestionSummaryRow>>,
    ) {
        let mut s = self.state();
        if epoch == Some(s.epoch) {
            if s.pages.len() >= MAX_PAGES {
                s.pages.clear();
            }
            s.pages.insert(query, rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Arc<StoredSuggestion> {
        Arc::new(StoredSuggestion {
            pseudonym: "p".into(),
            id: id.into(),
            day: 0,
            person_id: 1,
            unit: "u".into(),
            score: 0.5,
            band: crate::domain::Band::Elevated,
            factors_json: "[]".into(),
            interventions_json: "[]".into(),
            trace_json: "[]".into(),
            model_id: "m".into(),
            rules_version: "r".into(),
            feature_set_version: "f".into(),
            expires_at: "2099-01-01".into(),
            status: crate::domain::SuggestionStatus::Open,
            created_at: "2026-01-01".into(),
        })
    }

    fn kept(c: &ReadCache, id: &str) -> bool {
        c.state().rows.contains_key(id)
    }

    #[test]
    fn undeclared_entries_empty_the_cache_and_declared_ones_evict_what_they_changed() {
        let c = ReadCache::new(true);
        c.advance(0, 3);
        let e = Some(c.state().epoch);
        c.fill_row(e, row("a"));
        c.fill_row(e, row("b"));
        // This process decided on `a` (entry 3), then the writer committed 4..6.
        c.declare(3, "u", "a");
        c.advance(4, 6);
        assert!(!kept(&c, "a") && kept(&c, "b"));
        // Entry 6 came from elsewhere (another process, or nothing declared it).
        c.advance(7, 8);
        assert!(!kept(&c, "b"));
    }

    #[test]
    fn a_read_that_began_before_an_eviction_is_not_kept() {
        let c = ReadCache::new(true);
        c.advance(0, 1);
        let before = Some(c.state().epoch);
        c.declare(1, "u", "a");
        c.fill_row(before, row("a"));
        assert!(!kept(&c, "a"));
        let now = Some(c.state().epoch);
        c.fill_row(now, row("a"));
        assert!(kept(&c, "a"));
        // With the trail off nothing is kept or reported kept.
        let off = ReadCache::new(false);
        off.advance(0, 1);
        assert_eq!(off.state().through, 0);
    }
}
