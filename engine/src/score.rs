//! `tidig score --as-of DATE`: the active model, the rule pack and the features as of the
//! date become suggestions for receiving units.
//!
//! Per person: the eligibility rules decide whether they may be scored at all; the model
//! scores and explains; scores from the `elevated` band on are routed to a unit; the
//! output rules decide whether the score may become a suggestion and which factors the
//! unit's viewer role may see; a per-unit weekly capacity keeps the highest need first.
//! The data-stage rules are checked on the model's inputs before anything is scored.
//! Persons excluded or suppressed are only counted per rule, never listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidig_connectors::edge::days;
use tidig_governance::eval::{Deployment, PersonFacts, Request, SuggestionFacts, ViewerFacts};
use tidig_governance::{Decision, Evaluator, RulePack};
use tidig_models::features::FeatureSet;

use crate::features::{build, load_vectors};
use crate::settings::{ScoringSettings, UnitSettings};
use crate::store::{now, Store};

/// One factor of a suggestion's explanation, as the unit's viewer role may see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The feature id; absent when redacted.
    pub feature: Option<String>,
    /// Plain language: "mother: substance-use diagnosis in the past 2 years".
    pub text: String,
    pub source: String,
    pub value: Option<f64>,
    /// Contribution to the log-odds; absent when redacted.
    pub contribution: Option<f64>,
    pub redacted: bool,
    /// The rule that redacted it.
    pub rule: Option<String>,
}

/// One rule decision on a suggestion's way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    pub stage: String,
    pub action: String,
    pub subject: String,
    pub allowed: bool,
    pub rules: Vec<String>,
    pub errors: Vec<String>,
}

/// A suggested intervention from the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggested {
    pub id: String,
    pub title: String,
    /// The factor that called for it (absent for the fallback).
    pub because_of: Option<String>,
}

/// A suggestion as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub id: String,
    pub as_of: String,
    pub person_id: i64,
    pub unit: String,
    pub score: f64,
    pub band: String,
    pub factors: Vec<Factor>,
    pub interventions: Vec<Suggested>,
    pub rule_trace: Vec<TraceEntry>,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
    pub expires_at: String,
    pub status: String,
}

/// Seconds per phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub load: f64,
    pub score: f64,
    pub rules: f64,
    pub write: f64,
    pub total: f64,
}

/// What a scoring run did, with oversight counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScoreReport {
    pub as_of: String,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
    /// Persons with a feature vector on the date.
    pub cohort: usize,
    /// Persons the eligibility rules let be scored.
    pub scored: usize,
    /// Excluded before scoring, per deciding eligibility rule (a person counts once per
    /// rule that excluded them).
    pub excluded: BTreeMap<String, usize>,
    /// Scores below the `elevated` band: no suggestion.
    pub below_band: usize,
    /// Elevated scores without a receiving unit (living outside every unit's area).
    pub unrouted: usize,
    /// Suppressed by the output rules, per deciding rule.
    pub suppressed: BTreeMap<String, usize>,
    /// Persons left out by a rule error (fail closed), and a few of the messages.
    pub rule_errors: usize,
    pub rule_error_samples: Vec<String>,
    /// Allowed but over the unit's weekly capacity, per unit.
    pub deferred_by_capacity: BTreeMap<String, usize>,
    /// Suggestions per unit.
    pub per_unit: BTreeMap<String, usize>,
    pub suggestions: usize,
    /// Of those: written now, already stored identically.
    pub new: usize,
    pub unchanged: usize,
    /// Open suggestions of this date from an earlier run that this run replaced.
    pub superseded: usize,
    pub factors_redacted: usize,
    /// Rule requests made, and how many Cedar evaluated (the rest were memoized).
    pub rule_requests: usize,
    pub rule_evaluations: usize,
    pub seconds: Timings,
}

/// Everything a run needs besides the store.
#[derive(Clone, Copy, Debug)]
pub struct ScoreOptions<'a> {
    pub as_of: NaiveDate,
    pub pack: &'a RulePack,
    pub deployment: &'a Deployment,
    pub scoring: &'a ScoringSettings,
    pub set: &'a FeatureSet,
    pub by: &'a str,
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// The first unit whose municipalities and postcode prefixes both match.
pub fn route<'u>(
    units: &'u [UnitSettings],
    municipality: &str,
    postcode: Option<&str>,
) -> Option<&'u UnitSettings> {
    units.iter().find(|u| {
        (u.municipalities.is_empty() || u.municipalities.iter().any(|m| m == municipality))
            && (u.postcode_prefixes.is_empty()
                || postcode.is_some_and(|p| u.postcode_prefixes.iter().any(|x| p.starts_with(x))))
    })
}

fn trace(stage: &str, action: &str, subject: &str, d: &Decision) -> TraceEntry {
    TraceEntry {
        stage: stage.into(),
        action: action.into(),
        subject: subject.into(),
        allowed: d.allowed,
        rules: d.rules.clone(),
        errors: d.errors.clone(),
    }
}

/// Counts a deny under each deciding rule (or under `rule-error` / `no-permit`).
pub(crate) fn count_deny(map: &mut BTreeMap<String, usize>, d: &Decision) {
    if !d.errors.is_empty() {
        *map.entry("rule-error".into()).or_default() += 1;
    } else if d.rules.is_empty() {
        *map.entry("no-permit".into()).or_default() += 1;
    }
    for r in &d.rules {
        *map.entry(r.clone()).or_default() += 1;
    }
}

/// Whole years between two dates.
pub(crate) fn age_years(birth: NaiveDate, on: NaiveDate) -> i64 {
    let mut y = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        y -= 1;
    }
    y as i64
}

pub(crate) fn date_of(days_since_epoch: i64) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(Duration::days(days_since_epoch))
}

/// Person facts on the date, loaded in bulk.
struct Population {
    birth: HashMap<i64, i64>,
    /// person → (municipality, postcode, household)
    residence: HashMap<i64, (String, Option<String>, Option<i64>)>,
    objections: HashSet<i64>,
    /// Households (and lone persons) with an active child-welfare case on the date.
    active_households: HashSet<i64>,
    active_persons: HashSet<i64>,
}

/// How long a point-event (no end date) child-welfare intervention counts as active.
const ACTIVE_CASE_DAYS: i64 = 180;

/// Every person's birth date (days since the epoch), where known.
pub(crate) async fn births(store: &Store) -> Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, Option<i64>)> = crate::on_pool!(store, |p| sqlx::query_as(
        "SELECT id, birth_date FROM persons"
    )
    .fetch_all(p)
    .await?);
    Ok(rows
        .into_iter()
        .filter_map(|(id, b)| b.map(|b| (id, b)))
        .collect())
}

async fn population(store: &Store, as_of: NaiveDate) -> Result<Population> {
    let d = days(as_of) as i64;
    let birth = births(store).await?;
    let rows: Vec<(i64, String, Option<String>, Option<i64>)> =
        crate::on_pool!(store, |p| sqlx::query_as(
            "SELECT person_id, municipality, postcode, household_key FROM residences \
             WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1) \
             ORDER BY person_id, valid_from, record_key"
        )
        .bind(d)
        .fetch_all(p)
        .await?);
    let residence = rows
        .into_iter()
        .map(|(id, m, pc, hh)| (id, (m, pc, hh)))
        .collect::<HashMap<_, _>>();
    let objections = crate::train::objections(store).await?;
    let secs = d * 86_400;
    let active: Vec<i64> = crate::on_pool!(store, |p| {
        sqlx::query_scalar(
        "SELECT DISTINCT e.person_id FROM events e JOIN codes c ON c.id = e.code_id \
         WHERE e.kind = $1 AND c.system = $2 AND c.code = 'child_welfare_intervention' \
         AND e.start_time <= $3 AND (e.end_time >= $3 OR (e.end_time IS NULL AND e.start_time > $4))"
    )
    .bind(tidig_connectors::record::EventKind::SocialCase.code())
    .bind(tidig_connectors::social::CATEGORY_SYSTEM)
    .bind(secs)
    .bind(secs - ACTIVE_CASE_DAYS * 86_400)
    .fetch_all(p)
    .await?
    });
    let active_persons: HashSet<i64> = active.into_iter().collect();
    let active_households = active_persons
        .iter()
        .filter_map(|p| residence.get(p).and_then(|r| r.2))
        .collect();
    Ok(Population {
        birth,
        residence,
        objections,
        active_households,
        active_persons,
    })
}

/// A candidate on its way to the capacity step.
struct Candidate {
    person: i64,
    unit: usize,
    score: f64,
    band: &'static str,
    factors: Vec<Factor>,
    interventions: Vec<Suggested>,
    trace: Vec<TraceEntry>,
}

/// Runs the pipeline for one date and writes the suggestions (idempotently).
pub async fn score(store: &Store, o: ScoreOptions<'_>) -> Result<(ScoreReport, Vec<Suggestion>)> {
    let started = Instant::now();
    let mut t = Timings::default();
    let Some((model_row, artifact)) = crate::train::active(store).await? else {
        bail!("no active model: approve one (`tidig models approve`) and activate it (`tidig models activate`)");
    };
    if o.set.hash() != artifact.feature_set_version {
        bail!(
            "the active model `{}` needs feature set version {}; the given set is {}",
            &model_row.id[..16],
            &artifact.feature_set_version[..12],
            &o.set.hash()[..12]
        );
    }
    let model_facts = crate::train::model_facts(&model_row.id, &artifact);
    // Stage data: every input, at every scoring run.
    let data = crate::rules::check_inputs(
        o.pack,
        o.deployment,
        &model_facts,
        o.set,
        &artifact.features,
    )
    .with_context(|| {
        format!(
            "the active model `{}` may not be used for scoring",
            &model_row.id[..16]
        )
    })?;
    let mut data_rules: Vec<String> = data.iter().flat_map(|(_, d)| d.rules.clone()).collect();
    data_rules.sort();
    data_rules.dedup();
    let data_trace = TraceEntry {
        stage: "data".into(),
        action: "use_feature".into(),
        subject: format!("{} model inputs", data.len()),
        allowed: true,
        rules: data_rules,
        errors: Vec::new(),
    };

    let version = o.set.hash();
    let mut vectors = load_vectors(store, &version, o.as_of).await?;
    if vectors.is_empty() {
        build(store, o.set, o.as_of, &indicatif::ProgressBar::hidden()).await?;
        vectors = load_vectors(store, &version, o.as_of).await?;
    }
    let pop = population(store, o.as_of).await?;
    t.load = started.elapsed().as_secs_f64();

    let defs: Vec<&tidig_models::features::FeatureDef> = artifact
        .features
        .iter()
        .map(|id| {
            o.set
                .features
                .iter()
                .find(|f| &f.id == id)
                .with_context(|| format!("model input `{id}` is not in the feature set"))
        })
        .collect::<Result<_>>()?;
    let facts: Vec<tidig_governance::eval::FeatureFacts> = defs
        .iter()
        .map(|f| crate::rules::feature_facts(f))
        .collect();

    let mut report = ScoreReport {
        as_of: o.as_of.to_string(),
        model_id: model_row.id.clone(),
        rules_version: o.pack.version().into(),
        feature_set_version: version.clone(),
        cohort: vectors.len(),
        ..ScoreReport::default()
    };
    let mut ev = Evaluator::new(o.pack);
    let mut rules_time = std::time::Duration::ZERO;
    let mut score_time = std::time::Duration::ZERO;
    let mut candidates: Vec<Candidate> = Vec::new();
    let units = &o.scoring.units;
    let k = o.scoring.top_factors.max(1);
    let note_error = |report: &mut ScoreReport, d: &Decision| {
        if !d.errors.is_empty() {
            report.rule_errors += 1;
            if report.rule_error_samples.len() < 5 {
                report
                    .rule_error_samples
                    .extend(d.errors.iter().take(1).cloned());
            }
        }
    };
    for (pid, (vals, _, _)) in &vectors {
        // Stage eligibility.
        let age = pop
            .birth
            .get(pid)
            .and_then(|b| date_of(*b))
            .map_or(-1, |b| age_years(b, o.as_of));
        let clock = Instant::now();
        let eligibility = ev
            .decide(Request::Score {
                model: model_facts.clone(),
                person: PersonFacts {
                    age,
                    objection: pop.objections.contains(pid),
                },
                deployment: o.deployment.clone(),
                intervention: o.scoring.intervention.clone(),
            })
            .clone();
        rules_time += clock.elapsed();
        if !eligibility.allowed {
            note_error(&mut report, &eligibility);
            count_deny(&mut report.excluded, &eligibility);
            continue;
        }
        report.scored += 1;
        let clock = Instant::now();
        let p = artifact.model.probability(vals);
        score_time += clock.elapsed();
        if p < o.scoring.elevated {
            report.below_band += 1;
            continue;
        }
        let Some((unit_index, unit)) = pop.residence.get(pid).and_then(|(m, pc, _)| {
            route(units, m, pc.as_deref())
                .and_then(|u| units.iter().position(|x| x.id == u.id).map(|i| (i, u)))
        }) else {
            report.unrouted += 1;
            continue;
        };
        let clock = Instant::now();
        let e = artifact.model.explain(vals);
        let mut order: Vec<usize> = (0..e.contributions.len()).collect();
        order.sort_by(|a, b| {
            e.contributions[*b]
                .total_cmp(&e.contributions[*a])
                .then(a.cmp(b))
        });
        score_time += clock.elapsed();
        let top: Vec<usize> = order.iter().copied().take(k).collect();
        let evidence: HashSet<&str> = top
            .iter()
            .filter(|&&j| e.contributions[j] >= o.scoring.evidence_min_contribution)
            .map(|&j| facts[j].source.as_str())
            .collect();
        let active_case = pop.active_persons.contains(pid)
            || pop
                .residence
                .get(pid)
                .and_then(|r| r.2)
                .is_some_and(|hh| pop.active_households.contains(&hh));
        let band = if p >= o.scoring.high {
            "high"
        } else {
            "elevated"
        };
        // Stage output: may the score become a suggestion?
        let clock = Instant::now();
        let suggest = ev
            .decide(Request::Suggest {
                unit: unit.id.clone(),
                suggestion: SuggestionFacts {
                    score_permille: (p * 1000.0).round() as i64,
                    band: band.into(),
                    age,
                    evidence_registries: evidence.len() as i64,
                    active_case_at_unit: active_case,
                },
                deployment: o.deployment.clone(),
                intervention: o.scoring.intervention.clone(),
            })
            .clone();
        rules_time += clock.elapsed();
        if !suggest.allowed {
            note_error(&mut report, &suggest);
            count_deny(&mut report.suppressed, &suggest);
            continue;
        }
        // Stage output: which factors the unit's viewer may see.
        let viewer = ViewerFacts {
            unit: unit.id.clone(),
            role: unit.viewer_role.clone(),
            health_authority: unit.viewer_health_authority,
        };
        let mut factors = Vec::with_capacity(top.len());
        let mut trace_entries = vec![
            data_trace.clone(),
            trace("eligibility", "score", "person", &eligibility),
            trace("output", "suggest", "suggestion", &suggest),
        ];
        let clock = Instant::now();
        for &j in &top {
            let view = ev.decide(Request::ViewFactor {
                viewer: viewer.clone(),
                feature: facts[j].clone(),
                deployment: o.deployment.clone(),
            });
            trace_entries.push(trace(
                "output",
                "view_factor",
                &format!("factor {}", defs[j].id),
                view,
            ));
            if view.allowed {
                factors.push(Factor {
                    feature: Some(defs[j].id.clone()),
                    text: defs[j].text.clone(),
                    source: facts[j].source.clone(),
                    value: vals[j],
                    contribution: Some(e.contributions[j]),
                    redacted: false,
                    rule: None,
                });
            } else {
                report.factors_redacted += 1;
                factors.push(Factor {
                    feature: None,
                    text: format!("a {} factor (not shown to this role)", facts[j].source),
                    source: facts[j].source.clone(),
                    value: None,
                    contribution: None,
                    redacted: true,
                    rule: view
                        .rules
                        .first()
                        .cloned()
                        .or_else(|| Some("rule-error".into())),
                });
            }
        }
        rules_time += clock.elapsed();
        // Interventions from the dominant factors the viewer may see: a service named
        // after a redacted factor would disclose it.
        let mut interventions: Vec<Suggested> = Vec::new();
        for f in factors
            .iter()
            .filter(|f| !f.redacted && f.contribution.is_some_and(|c| c > 0.0))
        {
            let Some(id) = f.feature.as_deref() else {
                continue;
            };
            for c in &o.scoring.catalogue {
                if c.factors.iter().any(|pat| glob(pat, id))
                    && !interventions.iter().any(|s| s.id == c.id)
                {
                    interventions.push(Suggested {
                        id: c.id.clone(),
                        title: c.title.clone(),
                        because_of: Some(id.to_string()),
                    });
                }
            }
        }
        if interventions.is_empty() {
            if let Some(c) = o.scoring.catalogue.iter().find(|c| c.factors.is_empty()) {
                interventions.push(Suggested {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    because_of: None,
                });
            }
        }
        candidates.push(Candidate {
            person: *pid,
            unit: unit_index,
            score: p,
            band,
            factors,
            interventions,
            trace: trace_entries,
        });
    }
    t.rules = rules_time.as_secs_f64();
    t.score = score_time.as_secs_f64();
    report.rule_requests = ev.evaluated + ev.memoized;
    report.rule_evaluations = ev.evaluated;

    // Capacity per unit per ISO week, highest need first; suggestions of other dates in
    // the same week count against it.
    let write_started = Instant::now();
    let d = days(o.as_of) as i64;
    let week_start = d - o.as_of.weekday().num_days_from_monday() as i64;
    let used: Vec<(String, i64)> = crate::on_pool!(store, |p| {
        sqlx::query_as(
        "SELECT unit, COUNT(*) FROM suggestions WHERE as_of >= $1 AND as_of < $2 AND as_of <> $3 \
         AND status = 'open' GROUP BY unit"
    )
    .bind(week_start)
    .bind(week_start + 7)
    .bind(d)
    .fetch_all(p)
    .await?
    });
    let used: HashMap<String, i64> = used.into_iter().collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.person.cmp(&b.person)));
    let mut taken: Vec<usize> = vec![0; units.len()];
    let expires = (o.as_of + Duration::days(o.scoring.expiry_days as i64)).to_string();
    let mut out = Vec::new();
    for c in candidates {
        let unit = &units[c.unit];
        let left = unit.weekly_capacity as i64 - used.get(&unit.id).copied().unwrap_or(0);
        if (taken[c.unit] as i64) >= left {
            *report
                .deferred_by_capacity
                .entry(unit.id.clone())
                .or_default() += 1;
            continue;
        }
        taken[c.unit] += 1;
        *report.per_unit.entry(unit.id.clone()).or_default() += 1;
        let mut h = Sha256::new();
        h.update(format!(
            "{}\0{}\0{}\0{}\0{}",
            o.as_of,
            c.person,
            model_row.id,
            o.pack.version(),
            version
        ));
        out.push(Suggestion {
            id: hex::encode(&h.finalize()[..16]),
            as_of: o.as_of.to_string(),
            person_id: c.person,
            unit: unit.id.clone(),
            score: c.score,
            band: c.band.into(),
            factors: c.factors,
            interventions: c.interventions,
            rule_trace: c.trace,
            model_id: model_row.id.clone(),
            rules_version: o.pack.version().into(),
            feature_set_version: version.clone(),
            expires_at: expires.clone(),
            status: "open".into(),
        });
    }
    report.suggestions = out.len();
    write(store, d, &out, &mut report, o.by).await?;
    t.write = write_started.elapsed().as_secs_f64();
    t.total = started.elapsed().as_secs_f64();
    report.seconds = t;
    Ok((report, out))
}

/// Writes one date's suggestions in one transaction: identical ones stay (with their
/// creation time), earlier open ones not produced again are superseded, new ones are
/// inserted; the run and its counts are recorded.
async fn write(
    store: &Store,
    d: i64,
    out: &[Suggestion],
    report: &mut ScoreReport,
    by: &str,
) -> Result<()> {
    let at = now();
    let mut rows = Vec::with_capacity(out.len());
    for s in out {
        rows.push((
            s,
            serde_json::to_string(&s.factors)?,
            serde_json::to_string(&s.interventions)?,
            serde_json::to_string(&s.rule_trace)?,
        ));
    }
    macro_rules! go {
        ($tx:expr) => {{
            let existing: Vec<(String, String)> =
                sqlx::query_as("SELECT id, status FROM suggestions WHERE as_of = $1")
                    .bind(d)
                    .fetch_all(&mut *$tx)
                    .await?;
            let existing: HashMap<String, String> = existing.into_iter().collect();
            let new_ids: HashSet<&str> = out.iter().map(|s| s.id.as_str()).collect();
            for (id, status) in &existing {
                if status == "open" && !new_ids.contains(id.as_str()) {
                    sqlx::query("UPDATE suggestions SET status = 'superseded' WHERE id = $1")
                        .bind(id)
                        .execute(&mut *$tx)
                        .await?;
                    report.superseded += 1;
                }
            }
            for (s, factors, interventions, trace) in &rows {
                if existing.contains_key(&s.id) {
                    report.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO suggestions (id, as_of, person_id, unit, score, band, factors, \
                     interventions, rule_trace, model_id, rules_version, feature_set_version, \
                     created_at, expires_at, status) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'open')",
                )
                .bind(&s.id)
                .bind(d)
                .bind(s.person_id)
                .bind(&s.unit)
                .bind(s.score)
                .bind(&s.band)
                .bind(factors)
                .bind(interventions)
                .bind(trace)
                .bind(&s.model_id)
                .bind(&s.rules_version)
                .bind(&s.feature_set_version)
                .bind(&at)
                .bind(&s.expires_at)
                .execute(&mut *$tx)
                .await?;
                report.new += 1;
            }
            let text = serde_json::to_string(&*report)?;
            sqlx::query(
                "INSERT INTO scoring_runs (as_of, model_id, rules_version, feature_set_version, at, by_whom, report) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(d)
            .bind(&report.model_id)
            .bind(&report.rules_version)
            .bind(&report.feature_set_version)
            .bind(&at)
            .bind(by)
            .bind(text)
            .execute(&mut *$tx)
            .await?;
        }};
    }
    crate::in_write_tx!(store, |tx| {
        go!(tx);
    });
    Ok(())
}

/// The open suggestions of a date with their pseudonyms, highest score first.
pub async fn open_suggestions(
    store: &Store,
    as_of: NaiveDate,
) -> Result<Vec<(String, Suggestion)>> {
    let d = days(as_of) as i64;
    type Row = (
        String,
        i64,
        String,
        f64,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = crate::on_pool!(store, |p| {
        sqlx::query_as(
        "SELECT s.id, s.person_id, s.unit, s.score, s.band, s.factors, s.interventions, s.rule_trace, \
         s.model_id, s.rules_version, s.feature_set_version, s.expires_at, s.status, p.pseudonym \
         FROM suggestions s JOIN persons p ON p.id = s.person_id \
         WHERE s.as_of = $1 AND s.status = 'open' ORDER BY s.score DESC, s.person_id"
    )
    .bind(d)
    .fetch_all(p)
    .await?
    });
    rows.into_iter()
        .map(|r| {
            Ok((
                r.13,
                Suggestion {
                    id: r.0,
                    as_of: as_of.to_string(),
                    person_id: r.1,
                    unit: r.2,
                    score: r.3,
                    band: r.4,
                    factors: serde_json::from_str(&r.5)?,
                    interventions: serde_json::from_str(&r.6)?,
                    rule_trace: serde_json::from_str(&r.7)?,
                    model_id: r.8,
                    rules_version: r.9,
                    feature_set_version: r.10,
                    expires_at: r.11,
                    status: r.12,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_anywhere() {
        assert!(glob("*substance*", "mother_substance_use_dx_24m"));
        assert!(glob(
            "immunizations_not_done*",
            "immunizations_not_done_36m"
        ));
        assert!(!glob("immunizations_not_done*", "x_immunizations_not_done"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("*_24m", "mother_substance_use_dx_24m"));
        assert!(!glob("*_12m", "mother_substance_use_dx_24m"));
    }

    #[test]
    fn routing_takes_the_first_matching_unit() {
        let s = ScoringSettings::default();
        assert_eq!(
            route(&s.units, "091", Some("00250")).map(|u| u.id.as_str()),
            Some("family-services-central")
        );
        assert_eq!(
            route(&s.units, "091", Some("00920")).map(|u| u.id.as_str()),
            Some("family-services-outer")
        );
        assert_eq!(
            route(&s.units, "091", None).map(|u| u.id.as_str()),
            Some("family-services-outer")
        );
        assert!(route(&s.units, "049", Some("02100")).is_none());
    }

    #[test]
    fn ages_are_whole_years() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_years(d("2008-01-02"), d("2026-01-01")), 17);
        assert_eq!(age_years(d("2008-01-01"), d("2026-01-01")), 18);
        assert_eq!(age_years(d("2026-01-01"), d("2026-01-01")), 0);
    }
}
