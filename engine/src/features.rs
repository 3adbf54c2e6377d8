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

use anyhow::{Context, Result};
use chrono::NaiveDate;
use futures_util::TryStreamExt;
use serde::Serialize;
use tidig_connectors::edge::days;
use tidig_connectors::record::Relation;
use tidig_models::features::{
    Aggregation, CodePattern, FeatureDef, FeatureSet, StatusFilter, Subject,
};

use crate::store::{now, Store};

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

/// Streams the rows of a query through `$body`, on either backend, without holding them.
macro_rules! for_each_row {
    ($store:expr, $ty:ty, $sql:expr, [$($bind:expr),*], |$row:pat_param| $body:block) => {
        match $store {
            Store::Sqlite(p) => {
                let mut rows = sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch(p);
                while let Some($row) = rows.try_next().await? $body
            }
            Store::Postgres(p) => {
                let mut rows = sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch(p);
                while let Some($row) = rows.try_next().await? $body
            }
        }
    };
}

macro_rules! fetch_all {
    ($store:expr, $ty:ty, $sql:expr $(, $bind:expr)*) => {
        match $store {
            Store::Sqlite(p) => sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch_all(p).await?,
            Store::Postgres(p) => sqlx::query_as::<_, $ty>($sql)$(.bind($bind))*.fetch_all(p).await?,
        }
    };
}

impl World {
    async fn load(store: &Store, d: i32, moves_window: i32) -> Result<World> {
        let d64 = d as i64;
        let mut persons = HashMap::new();
        for_each_row!(
            store,
            (i64, Option<i64>, Option<i64>),
            "SELECT id, birth_date, death_date FROM persons",
            [],
            |(id, birth, death)| {
                persons.insert(
                    id,
                    PersonInfo {
                        birth: birth.map(|b| b as i32),
                        death: death.map(|x| x as i32),
                    },
                );
            }
        );
        let alive = |id: &i64| {
            persons
                .get(id)
                .is_some_and(|p| p.birth.is_none_or(|b| b <= d) && p.death.is_none_or(|x| x > d))
        };
        let mut residence = HashMap::new();
        let mut municipalities: Vec<String> = Vec::new();
        for_each_row!(
            store,
            (i64, Option<i64>, String),
            "SELECT person_id, household_key, municipality FROM residences \
             WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1) \
             ORDER BY person_id, valid_from, record_key",
            [d64],
            |(pid, hh, municipality)| {
                if alive(&pid) {
                    let m = match municipalities.iter().position(|x| *x == municipality) {
                        Some(i) => i,
                        None => {
                            municipalities.push(municipality);
                            municipalities.len() - 1
                        }
                    };
                    residence.insert(pid, (hh, m as u32));
                }
            }
        );
        let mut household_size: HashMap<i64, u32> = HashMap::new();
        for (hh, _) in residence.values() {
            if let Some(hh) = hh {
                *household_size.entry(*hh).or_default() += 1;
            }
        }
        let mut parents: HashMap<i64, Vec<(i64, Relation)>> = HashMap::new();
        let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
        for_each_row!(
            store,
            (i64, i64, String),
            "SELECT child_id, parent_id, relation FROM relations \
             WHERE (valid_from IS NULL OR valid_from <= $1) AND (valid_to IS NULL OR valid_to > $1) \
             ORDER BY child_id, parent_id, relation",
            [d64],
            |(child, parent, relation)| {
                let Some(relation) = Relation::parse(&relation) else { continue };
                if relation != Relation::Guardian {
                    children.entry(parent).or_default().push(child);
                }
                parents.entry(child).or_default().push((parent, relation));
            }
        );
        let mut moves: HashMap<i64, Vec<i32>> = HashMap::new();
        for_each_row!(
            store,
            (i64, i64),
            "SELECT person_id, valid_from FROM residences WHERE valid_from > $1 AND valid_from <= $2",
            [(d - moves_window) as i64, d64],
            |(pid, from)| {
                moves.entry(pid).or_default().push(from as i32);
            }
        );
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
        for_each_row!(
            store,
            (i64, String, String),
            "SELECT person_id, attribute, value FROM protected_attributes",
            [],
            |(pid, attribute, value)| {
                if cohort.contains(&pid) {
                    out.entry(pid).or_default().insert(attribute, value);
                }
            }
        );
        for_each_row!(
            store,
            (i64, Option<String>),
            "SELECT id, sex FROM persons",
            [],
            |(pid, sex)| {
                if let (true, Some(sex)) = (cohort.contains(&pid), sex) {
                    out.entry(pid).or_default().insert("sex".into(), sex);
                }
            }
        );
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
    store: &Store,
    set: &FeatureSet,
    as_of: NaiveDate,
    bar: &indicatif::ProgressBar,
) -> Result<FeatureReport> {
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
    bar.set_message("population");
    let world = World::load(store, d, moves_window)
        .await
        .context("loading the population as of the date")?;

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
    let codes: Vec<(i64, String, String)> = fetch_all!(
        store,
        (i64, String, String),
        "SELECT id, system, code FROM codes"
    );
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
    bar.set_message("events");
    let mut aggs: HashMap<i64, Box<[Agg]>> = HashMap::new();
    let mut label_hit: HashSet<i64> = HashSet::new();
    let mut scanned = 0u64;
    let sql = "SELECT person_id, kind, code_id, detail_id, status, start_time, end_time, value \
               FROM events WHERE start_time > $1 AND start_time <= $2";
    type Row = (
        i64,
        i64,
        i64,
        Option<i64>,
        i64,
        i64,
        Option<i64>,
        Option<f64>,
    );
    let (lo, hi) = (cutoff - max_window, cutoff + horizon);
    {
        let mut consume = |row: Row| {
            let (pid, kind, code, detail, status, start, end, value) = row;
            scanned += 1;
            if scanned.is_multiple_of(65_536) {
                bar.inc(65_536);
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
        match store {
            Store::Sqlite(p) => {
                let mut rows = sqlx::query_as::<_, Row>(sql).bind(lo).bind(hi).fetch(p);
                while let Some(row) = rows.try_next().await? {
                    consume(row);
                }
            }
            Store::Postgres(p) => {
                let mut rows = sqlx::query_as::<_, Row>(sql).bind(lo).bind(hi).fetch(p);
                while let Some(row) = rows.try_next().await? {
                    consume(row);
                }
            }
        }
    }
    let latest: Option<i64> = match store {
        Store::Sqlite(p) => {
            sqlx::query_scalar("SELECT MAX(start_time) FROM events")
                .fetch_one(p)
                .await?
        }
        Store::Postgres(p) => {
            sqlx::query_scalar("SELECT MAX(start_time) FROM events")
                .fetch_one(p)
                .await?
        }
    };
    // Observed when the data reach the horizon's last day: registries record dates, so
    // data "as of" a date end on the day before it.
    let label_complete = latest.is_some_and(|t| t >= hi - 86_400);

    // Vectors.
    bar.set_message("vectors");
    let protected = world.protected(store, &cohort_set).await?;
    let mut missing = vec![0u64; numeric.len()];
    let mut rows: Vec<(i64, String, String, Option<f64>)> = Vec::with_capacity(cohort.len());
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
        rows.push((
            c,
            serde_json::to_string(&vals)?,
            serde_json::to_string(&prot)?,
            label,
        ));
    }
    drop(aggs);

    bar.set_message("writing");
    write(store, set, &version, d, &rows, label_complete).await?;
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
    record_build(store, &version, d, &report).await?;
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

async fn write(
    store: &Store,
    set: &FeatureSet,
    version: &str,
    d: i32,
    rows: &[(i64, String, String, Option<f64>)],
    label_complete: bool,
) -> Result<()> {
    let definition = serde_json::to_string(set)?;
    let created = now();
    let d64 = d as i64;
    let complete = label_complete as i64;
    macro_rules! go {
        ($tx:expr, $ph:expr) => {{
            sqlx::query("INSERT INTO feature_sets (hash, name, definition, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING")
                .bind(version).bind(&set.name).bind(&definition).bind(&created)
                .execute(&mut *$tx).await?;
            sqlx::query("DELETE FROM feature_vectors WHERE feature_set = $1 AND as_of = $2")
                .bind(version).bind(d64)
                .execute(&mut *$tx).await?;
            for chunk in rows.chunks(500) {
                let mut sql = String::from("INSERT INTO feature_vectors (feature_set, as_of, person_id, vals, protected, label, label_complete) VALUES ");
                for (i, _) in chunk.iter().enumerate() {
                    if i > 0 { sql.push(','); }
                    sql.push_str(&$ph(i * 7));
                }
                let mut q = sqlx::query(&sql);
                for (pid, vals, prot, label) in chunk {
                    q = q.bind(version).bind(d64).bind(*pid).bind(vals).bind(prot).bind(*label).bind(complete);
                }
                q.execute(&mut *$tx).await?;
            }
        }};
    }
    let pg_row = |o: usize| {
        format!(
            "(${},${},${},${},${},${},${})",
            o + 1,
            o + 2,
            o + 3,
            o + 4,
            o + 5,
            o + 6,
            o + 7
        )
    };
    let lite_row = |_: usize| "(?,?,?,?,?,?,?)".to_string();
    match store {
        Store::Sqlite(p) => {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            go!(tx, lite_row);
            tx.commit().await?;
        }
        Store::Postgres(p) => {
            let mut tx = p.begin().await?;
            go!(tx, pg_row);
            tx.commit().await?;
        }
    }
    Ok(())
}

async fn record_build(store: &Store, version: &str, d: i32, report: &FeatureReport) -> Result<()> {
    let sql = "INSERT INTO feature_builds (feature_set, as_of, persons, built_at, report) VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (feature_set, as_of) DO UPDATE SET persons = excluded.persons, \
               built_at = excluded.built_at, report = excluded.report";
    let text = serde_json::to_string(report)?;
    crate::on_pool!(store, |p| {
        sqlx::query(sql)
            .bind(version)
            .bind(d as i64)
            .bind(report.persons as i64)
            .bind(now())
            .bind(&text)
            .execute(p)
            .await?;
    });
    Ok(())
}

/// The stored vectors of one build: person → (values, protected, label), for tests,
/// training and parity checks.
pub async fn load_vectors(
    store: &Store,
    version: &str,
    as_of: NaiveDate,
) -> Result<
    BTreeMap<
        i64,
        (
            Vec<Option<f64>>,
            BTreeMap<String, Option<String>>,
            Option<f64>,
        ),
    >,
> {
    let d = days(as_of) as i64;
    let rows: Vec<(i64, String, String, Option<f64>)> = fetch_all!(
        store,
        (i64, String, String, Option<f64>),
        "SELECT person_id, vals, protected, label FROM feature_vectors WHERE feature_set = $1 AND as_of = $2",
        version,
        d
    );
    let mut out = BTreeMap::new();
    for (pid, vals, prot, label) in rows {
        out.insert(
            pid,
            (
                serde_json::from_str(&vals)?,
                serde_json::from_str(&prot)?,
                label,
            ),
        );
    }
    Ok(out)
}
