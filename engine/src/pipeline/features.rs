//! `tidig features build --as-of DATE`: point-in-time feature vectors from the store.
//!
//! One streaming pass over the events inside the widest window (and the label horizon)
//! feeds per-person aggregates for the cohort and its household relations; population
//! facts (age, household, moves, relations) are resolved as they stood on the as-of
//! date. Nothing after the as-of instant reaches a feature; nothing older than a
//! feature's window counts. Memory grows with the number of persons, never with the
//! number of events. The vectors are written in one transaction per (feature set, as-of
//! date), replacing an earlier build of the same pair, so rebuilding is idempotent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;
use tidig_connectors::edge::days;
use tidig_connectors::record::Relation;
use tidig_models::features::{
    Aggregation, CodePattern, FeatureDef, FeatureSet, StatusFilter, Subject,
};

use crate::app::App;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::progress::Progress;
use crate::store::{BuildRecord, EventRow, Store, StoredVector, VectorRow};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What one build did.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureReport {
    pub feature_set: String,
    pub version: String,
    pub as_of: String,
    /// Persons in the cohort on the as-of date (one vector each).
    pub persons: u64,
    pub features: usize,
    pub events_scanned: u64,
    /// Cohort members with a positive label (outcome inside the horizon).
    pub label_positive: u64,
    /// Whether the store holds data past the label horizon (labels are observed).
    pub label_complete: bool,
    pub seconds: f64,
    /// Per feature: share of persons with no value.
    pub missing_rate: BTreeMap<String, f64>,
    /// Declared but never materialised (prohibited).
    pub not_materialised: Vec<String>,
}

/// Per-person aggregate of one event base, kept small: there is one per person and base
/// the person's roles need.
#[derive(Clone, Copy, Debug)]
struct Agg {
    sum: f64,
    /// Value of the most recent event; NaN when it had none.
    last_value: f64,
    /// Start of the most recent event; `i64::MIN` when there was none.
    last_time: i64,
    count: u32,
    duration_minutes: u32,
}

impl Default for Agg {
    fn default() -> Agg {
        Agg {
            sum: 0.0,
            last_value: f64::NAN,
            last_time: i64::MIN,
            count: 0,
            duration_minutes: 0,
        }
    }
}

impl Agg {
    fn last(&self) -> Option<(i64, Option<f64>)> {
        (self.last_time != i64::MIN).then_some((
            self.last_time,
            Some(self.last_value).filter(|v| !v.is_nan()),
        ))
    }
}

/// The role bit of a subject kind: which relation makes a person's events matter.
fn role_bit(s: Subject) -> u8 {
    match s {
        Subject::Person => 1,
        Subject::Mother => 2,
        Subject::Father => 4,
        Subject::Guardian => 8,
        Subject::AnyParent => 16,
        Subject::Sibling => 32,
    }
}

/// For each combination of roles, which base goes to which slot of a person's aggregates.
struct Slots {
    need: Vec<u8>,
    maps: HashMap<u8, Vec<Option<u16>>>,
}

impl Slots {
    fn map(&mut self, roles: u8) -> &[Option<u16>] {
        let need = &self.need;
        self.maps.entry(roles).or_insert_with(|| {
            let mut next = 0u16;
            need.iter()
                .map(|n| {
                    (n & roles != 0).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        })
    }

    fn len(&mut self, roles: u8) -> usize {
        self.map(roles).iter().flatten().count()
    }
}

/// A distinct event filter + window; several features (for different subjects) share one.
#[derive(Clone, Debug, PartialEq)]
struct Base {
    kind: i64,
    codes: Option<HashSet<i64>>,
    details: Option<HashSet<i64>>,
    status: i64,
    window_secs: i64,
}

#[derive(Clone, Copy, Debug)]
struct PersonInfo {
    birth: Option<i32>,
    death: Option<i32>,
}

fn resolve(patterns: &[CodePattern], codes: &[(i64, String, String)]) -> Option<HashSet<i64>> {
    if patterns.is_empty() {
        return None;
    }
    Some(
        codes
            .iter()
            .filter(|(_, system, code)| patterns.iter().any(|p| p.matches(system, code)))
            .map(|(id, _, _)| *id)
            .collect(),
    )
}

fn age_on(birth: i32, d: i32) -> Option<f64> {
    let b = NaiveDate::from_num_days_from_ce_opt(birth + 719_163)?;
    let t = NaiveDate::from_num_days_from_ce_opt(d + 719_163)?;
    let mut years = t.years_since(b)? as f64;
    if years < 0.0 {
        years = 0.0;
    }
    Some(years)
}

/// Everything about the population on the as-of date that features need.
struct World {
    persons: HashMap<i64, PersonInfo>,
    /// person → (household key, municipality index) of the residence valid on the date.
    residence: HashMap<i64, (Option<i64>, u32)>,
    /// Municipality codes, interned.
    municipalities: Vec<String>,
    /// child → [(parent, relation)] valid on the date.
    parents: HashMap<i64, Vec<(i64, Relation)>>,
    /// parent → children (mother/father relations valid on the date).
    children: HashMap<i64, Vec<i64>>,
    household_size: HashMap<i64, u32>,
    /// person → residence start days (for moves).
    moves: HashMap<i64, Vec<i32>>,
}

impl World {
    async fn load(store: &Store, d: i32, moves_window: i32) -> Result<World> {
        let d64 = d as i64;
        let persons: HashMap<i64, PersonInfo> = store
            .person_dates()
            .await?
            .into_iter()
            .map(|(id, p)| {
                (
                    id,
                    PersonInfo {
                        birth: p.birth.map(|b| b as i32),
                        death: p.death.map(|x| x as i32),
                    },
                )
            })
            .collect();
        let alive = |id: &i64| {
            persons
                .get(id)
                .is_some_and(|p| p.birth.is_none_or(|b| b <= d) && p.death.is_none_or(|x| x > d))
        };
        let mut residence = HashMap::new();
        let mut municipalities: Vec<String> = Vec::new();
        for r in store.residences_on(d64).await? {
            if alive(&r.person) {
                let m = match municipalities.iter().position(|x| *x == r.municipality) {
                    Some(i) => i,
                    None => {
                        municipalities.push(r.municipality);
                        municipalities.len() - 1
                    }
                };
                residence.insert(r.person, (r.household, m as u32));
            }
        }
        let mut household_size: HashMap<i64, u32> = HashMap::new();
        for (hh, _) in residence.values() {
            if let Some(hh) = hh {
                *household_size.entry(*hh).or_default() += 1;
            }
        }
        let mut parents: HashMap<i64, Vec<(i64, Relation)>> = HashMap::new();
        let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
        for (child, parent, relation) in store.relations_on(d64).await? {
            let Some(relation) = Relation::parse(&relation) else {
                continue;
            };
            if relation != Relation::Guardian {
                children.entry(parent).or_default().push(child);
            }
            parents.entry(child).or_default().push((parent, relation));
        }
        let mut moves: HashMap<i64, Vec<i32>> = HashMap::new();
        for (pid, from) in store.moves_between((d - moves_window) as i64, d64).await? {
            moves.entry(pid).or_default().push(from as i32);
        }
        Ok(World {
            persons,
            residence,
            municipalities,
            parents,
            children,
            household_size,
            moves,
        })
    }

    fn household(&self, id: i64) -> Option<i64> {
        self.residence.get(&id).and_then(|(hh, _)| *hh)
    }

    fn co_resident(&self, a: i64, b: i64) -> bool {
        matches!((self.household(a), self.household(b)), (Some(x), Some(y)) if x == y)
    }

    /// The protected attributes of the cohort (and sex from the persons table).
    async fn protected(
        &self,
        store: &Store,
        cohort: &HashSet<i64>,
    ) -> Result<HashMap<i64, BTreeMap<String, String>>> {
        let mut out: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
        for (pid, attrs) in store.protected_attributes(cohort).await? {
            out.entry(pid).or_default().extend(attrs);
        }
        for (pid, sex) in store.sexes().await? {
            if cohort.contains(&pid) {
                out.entry(pid).or_default().insert("sex".into(), sex);
            }
        }
        for &c in cohort {
            if let Some((_, m)) = self.residence.get(&c) {
                let name = self.municipalities[*m as usize].clone();
                out.entry(c)
                    .or_default()
                    .insert("municipality".into(), name);
            }
        }
        Ok(out)
    }

    /// The persons a subject names for `c`, as of the date (co-resident and alive).
    fn subjects(&self, c: i64, subject: Subject) -> Vec<i64> {
        let parents = |want: &[Relation]| -> Vec<i64> {
            let mut v: Vec<i64> = self
                .parents
                .get(&c)
                .into_iter()
                .flatten()
                .filter(|(p, r)| want.contains(r) && self.co_resident(c, *p))
                .map(|(p, _)| *p)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        match subject {
            Subject::Person => vec![c],
            Subject::Mother => parents(&[Relation::Mother]),
            Subject::Father => parents(&[Relation::Father]),
            Subject::Guardian => parents(&[Relation::Guardian]),
            Subject::AnyParent => {
                parents(&[Relation::Mother, Relation::Father, Relation::Guardian])
            }
            Subject::Sibling => {
                let mut v: Vec<i64> = self
                    .parents
                    .get(&c)
                    .into_iter()
                    .flatten()
                    .filter(|(_, r)| *r != Relation::Guardian)
                    .flat_map(|(p, _)| self.children.get(p).into_iter().flatten().copied())
                    .filter(|s| *s != c && self.co_resident(c, *s))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }
}

/// Builds (or rebuilds) the vectors of `set` as of `as_of`.
pub async fn build(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
    progress: &dyn Progress,
) -> Result<FeatureReport> {
    let mut record = app.record(by, "features.build").with(serde_json::json!({
        "feature_set": set.name, "as_of": as_of.to_string(),
    }));
    record.versions.feature_set = Some(set.hash());
    let result = build_inner(app, set, as_of, progress, &record).await;
    app.audited(record, result).await
}

async fn build_inner(
    app: &App,
    set: &FeatureSet,
    as_of: NaiveDate,
    progress: &dyn Progress,
    record: &tidig_governance::audit::Record,
) -> Result<FeatureReport> {
    let store = app.store();
    let started = Instant::now();
    let d = days(as_of);
    let cutoff = d as i64 * 86_400;
    let version = set.hash();
    let numeric: Vec<&FeatureDef> = set.numeric().collect();
    let moves_window = set
        .features
        .iter()
        .filter(|f| f.aggregation == Aggregation::Moves)
        .filter_map(|f| f.window_days)
        .max()
        .unwrap_or(0) as i32;
    progress.start("population", None);
    let world = World::load(store, d, moves_window).await?;

    // The cohort: alive, resident and in the age range on the date.
    let mut cohort: Vec<i64> = world
        .residence
        .keys()
        .copied()
        .filter(|id| {
            world
                .persons
                .get(id)
                .and_then(|p| p.birth)
                .and_then(|b| age_on(b, d))
                .is_some_and(|a| a >= set.cohort.min_age as f64 && a <= set.cohort.max_age as f64)
        })
        .collect();
    cohort.sort_unstable();

    // Who matters, and in which roles: the cohort itself and its relatives.
    let used: Vec<Subject> = {
        let mut v: Vec<Subject> = numeric.iter().map(|f| f.subject).collect();
        v.sort_by_key(|s| role_bit(*s));
        v.dedup();
        v
    };
    let mut roles: HashMap<i64, u8> = HashMap::new();
    for &c in &cohort {
        for &s in &used {
            for p in world.subjects(c, s) {
                *roles.entry(p).or_default() |= role_bit(s);
            }
        }
    }

    // Event bases, shared between features that differ only in subject.
    let codes = store.codes().await?;
    let mut bases: Vec<Base> = Vec::new();
    let mut feature_base: Vec<Option<usize>> = Vec::new();
    for f in &numeric {
        let Some(kind) = f.event else {
            feature_base.push(None);
            continue;
        };
        let base = Base {
            kind,
            codes: resolve(&f.codes, &codes),
            details: resolve(&f.detail_codes, &codes),
            status: match f.status {
                StatusFilter::Occurred => 0,
                StatusFilter::NotDone => 1,
            },
            window_secs: f.window_days.unwrap_or(0) as i64 * 86_400,
        };
        let idx = match bases.iter().position(|b| *b == base) {
            Some(i) => i,
            None => {
                bases.push(base);
                bases.len() - 1
            }
        };
        feature_base.push(Some(idx));
    }
    let mut need = vec![0u8; bases.len()];
    for (f, b) in numeric.iter().zip(&feature_base) {
        if let Some(b) = b {
            need[*b] |= role_bit(f.subject);
        }
    }
    let mut slots = Slots {
        need,
        maps: HashMap::new(),
    };
    let mut by_kind: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, b) in bases.iter().enumerate() {
        by_kind.entry(b.kind).or_default().push(i);
    }
    let label_codes = resolve(&set.label.codes, &codes).unwrap_or_default();
    let horizon = set.label.horizon_days as i64 * 86_400;
    let max_window = set.max_window_days() as i64 * 86_400;
    let cohort_set: HashSet<i64> = cohort.iter().copied().collect();

    // One pass over the events that can matter.
    progress.start("events", None);
    let mut aggs: HashMap<i64, Box<[Agg]>> = HashMap::new();
    let mut label_hit: HashSet<i64> = HashSet::new();
    let mut scanned = 0u64;
    let (lo, hi) = (cutoff - max_window, cutoff + horizon);
    {
        let consume = |row: EventRow| {
            let EventRow {
                person_id: pid,
                kind,
                code_id: code,
                detail_id: detail,
                status,
                start_time: start,
                end_time: end,
                value,
            } = row;
            scanned += 1;
            if scanned.is_multiple_of(65_536) {
                progress.position(scanned);
            }
            if start > cutoff {
                if kind == set.label.event
                    && label_codes.contains(&code)
                    && cohort_set.contains(&pid)
                {
                    label_hit.insert(pid);
                }
                return;
            }
            let Some(&role) = roles.get(&pid) else {
                return;
            };
            let Some(candidates) = by_kind.get(&kind) else {
                return;
            };
            for &bi in candidates {
                let b = &bases[bi];
                if b.status != status
                    || start <= cutoff - b.window_secs
                    || b.codes.as_ref().is_some_and(|s| !s.contains(&code))
                    || b.details
                        .as_ref()
                        .is_some_and(|s| detail.is_none_or(|x| !s.contains(&x)))
                {
                    continue;
                }
                let Some(slot) = slots.map(role)[bi] else {
                    continue;
                };
                let len = slots.len(role);
                let a = &mut aggs
                    .entry(pid)
                    .or_insert_with(|| vec![Agg::default(); len].into_boxed_slice())
                    [slot as usize];
                a.count += 1;
                a.sum += value.unwrap_or(0.0);
                let v = value.unwrap_or(f64::NAN);
                if start > a.last_time || (start == a.last_time && v > a.last_value) {
                    a.last_time = start;
                    a.last_value = v;
                }
                if let Some(end) = end {
                    let from = start.max(cutoff - b.window_secs);
                    let to = end.min(cutoff);
                    a.duration_minutes += ((to - from).max(0) / 60) as u32;
                }
            }
        };
        store.for_each_event(lo, hi, consume).await?;
    }
    let latest = store.latest_event_time().await?;
    // Observed when the data reach the horizon's last day: registries record dates, so
    // data "as of" a date end on the day before it.
    let label_complete = latest.is_some_and(|t| t >= hi - 86_400);

    // Vectors.
    progress.start("vectors", None);
    let protected = world.protected(store, &cohort_set).await?;
    let mut missing = vec![0u64; numeric.len()];
    let mut rows: Vec<VectorRow> = Vec::with_capacity(cohort.len());
    for &c in &cohort {
        let mut vals = Vec::with_capacity(numeric.len());
        let mut subjects: HashMap<Subject, Vec<i64>> = HashMap::new();
        for (i, f) in numeric.iter().enumerate() {
            let subj = subjects
                .entry(f.subject)
                .or_insert_with(|| world.subjects(c, f.subject));
            let parts: Vec<Agg> = match feature_base[i] {
                None => Vec::new(),
                Some(bi) => subj
                    .iter()
                    .map(|p| {
                        let role = roles.get(p).copied().unwrap_or(0);
                        let slot = slots.map(role)[bi];
                        slot.and_then(|s| aggs.get(p).map(|a| a[s as usize]))
                            .unwrap_or_default()
                    })
                    .collect(),
            };
            let v = value(f, subj, &parts, c, d, cutoff, &world);
            if v.is_none() {
                missing[i] += 1;
            }
            vals.push(v);
        }
        let mut prot = BTreeMap::new();
        for f in set.protected() {
            let attr = f.attribute.as_deref().unwrap_or("");
            prot.insert(
                f.id.clone(),
                protected.get(&c).and_then(|m| m.get(attr)).cloned(),
            );
        }
        let label = label_complete.then(|| if label_hit.contains(&c) { 1.0 } else { 0.0 });
        rows.push(VectorRow {
            person: c,
            values_json: serde_json::to_string(&vals)?,
            protected_json: serde_json::to_string(&prot)?,
            label,
        });
    }
    drop(aggs);

    progress.start("writing", None);
    let definition = serde_json::to_string(set)?;
    let created = app.clock().stamp();
    store
        .replace_vectors(
            &version,
            &set.name,
            &definition,
            &created,
            d as i64,
            label_complete,
            &rows,
            &record.clone().with(serde_json::json!({
                "persons": cohort.len(),
                "label_complete": label_complete,
                "events_scanned": scanned,
            })),
        )
        .await?;
    let n = cohort.len().max(1) as f64;
    let report = FeatureReport {
        feature_set: set.name.clone(),
        version: version.clone(),
        as_of: as_of.to_string(),
        persons: cohort.len() as u64,
        features: numeric.len(),
        events_scanned: scanned,
        label_positive: label_hit.len() as u64,
        label_complete,
        seconds: started.elapsed().as_secs_f64(),
        missing_rate: numeric
            .iter()
            .zip(&missing)
            .map(|(f, m)| (f.id.clone(), *m as f64 / n))
            .collect(),
        not_materialised: set
            .features
            .iter()
            .filter(|f| f.sensitivity == tidig_models::features::Sensitivity::Prohibited)
            .map(|f| f.id.clone())
            .collect(),
    };
    store
        .record_build(&BuildRecord {
            feature_set: &version,
            day: d as i64,
            persons: report.persons as i64,
            built_at: &app.clock().stamp(),
            report_json: &serde_json::to_string(&report)?,
        })
        .await?;
    progress.finish();
    Ok(report)
}

/// One feature's value for cohort member `c`, from the aggregates of its subjects.
fn value(
    f: &FeatureDef,
    subj: &[i64],
    parts: &[Agg],
    c: i64,
    d: i32,
    cutoff: i64,
    world: &World,
) -> Option<f64> {
    match f.aggregation {
        Aggregation::Age => {
            let p = *subj.first()?;
            age_on(world.persons.get(&p)?.birth?, d)
        }
        Aggregation::HouseholdSize => {
            let hh = world.household(c)?;
            world.household_size.get(&hh).map(|n| *n as f64)
        }
        Aggregation::Moves => {
            let birth = world.persons.get(&c).and_then(|p| p.birth);
            let n = world
                .moves
                .get(&c)
                .into_iter()
                .flatten()
                .filter(|from| {
                    Some(**from) != birth && **from > d - f.window_days.unwrap_or(0) as i32
                })
                .count();
            Some(n as f64)
        }
        Aggregation::ParentsInHousehold => Some(world.subjects(c, Subject::AnyParent).len() as f64),
        Aggregation::SiblingsInHousehold => Some(world.subjects(c, Subject::Sibling).len() as f64),
        Aggregation::Attribute => None,
        _ => {
            if subj.is_empty() {
                return None;
            }
            let count: u32 = parts.iter().map(|a| a.count).sum();
            let last = parts.iter().filter_map(Agg::last).max_by(|x, y| {
                x.0.cmp(&y.0)
                    .then(x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal))
            });
            match f.aggregation {
                Aggregation::Count => Some(count as f64),
                Aggregation::Exists => Some((count > 0) as u8 as f64),
                Aggregation::Sum => Some(parts.iter().map(|a| a.sum).sum()),
                Aggregation::Latest => last.and_then(|(_, v)| v),
                Aggregation::DaysSinceLast => last.map(|(t, _)| ((cutoff - t) / 86_400) as f64),
                Aggregation::Duration => Some(
                    (parts.iter().map(|a| a.duration_minutes as u64).sum::<u64>() / 1_440) as f64,
                ),
                _ => None,
            }
        }
    }
}

/// The stored vectors of one build: person → vector.
pub async fn load_vectors(
    app: &App,
    version: &str,
    as_of: NaiveDate,
) -> Result<BTreeMap<i64, StoredVector>> {
    Ok(app
        .store()
        .vectors(version, crate::dates::days(as_of))
        .await?)
}
