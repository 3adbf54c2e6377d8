//! `tidig score --as-of DATE`: the batch shell around [`decide`]. It loads the active
//! model, the features and the population as of the date, runs every person through the
//! pure per-person decision, applies each unit's weekly capacity (highest need first),
//! and writes the suggestions and the run in one transaction.
//!
//! The data-stage rules are checked on the model's inputs before anything is scored.
//! Persons excluded or suppressed are only counted per rule, never listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidig_governance::{Decision, Evaluator, Stage};
use tidig_models::features::FeatureSet;

use crate::app::App;
use crate::dates;
use crate::domain::{Band, SuggestionStatus};
use crate::error::{EngineError, Precondition};
use crate::pipeline::decide::{
    count_deny, decide, view_for, Candidate, Context, Factor, Outcome, Person, Phases,
    StoredFactor, Suggested, TraceEntry,
};
use crate::pipeline::features::{build, load_vectors};
use crate::principal::Principal;
use crate::progress::Quiet;
use crate::store::{
    Capacity, ScoringRunRecord, ScoringSwitch, StoredSuggestion, SuggestionRow, WriteCounts,
    Written,
};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A suggestion as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub id: String,
    pub as_of: String,
    pub person_id: i64,
    pub unit: String,
    pub score: f64,
    pub band: Band,
    /// The whole explanation as stored (never printed: readers see it through the rules).
    #[serde(skip)]
    pub explanation: Vec<StoredFactor>,
    /// The explanation as the unit's configured viewer sees it.
    pub factors: Vec<Factor>,
    pub interventions: Vec<Suggested>,
    pub rule_trace: Vec<TraceEntry>,
    pub model_id: String,
    pub rules_version: String,
    pub feature_set_version: String,
    pub expires_at: String,
    pub status: SuggestionStatus,
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
    /// Of those, per unit whose area they live in (the denominator of a unit's flag
    /// rate).
    pub cohort_per_unit: BTreeMap<String, usize>,
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
    /// The population's drift from the model's training distribution (absent for a
    /// model trained before tidig measured it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

/// The population stability index of each input and of the score against the training
/// distribution, with the ones above [`tidig_models::drift::WARN`] named.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Drift {
    pub score_psi: f64,
    pub features: BTreeMap<String, f64>,
    /// `score` and the inputs whose PSI is above the warning threshold, highest first.
    pub warnings: Vec<String>,
}

/// The drift of the scoring cohort's `vectors` (inputs in model order).
pub fn drift(
    reference: &tidig_models::drift::DriftReference,
    inputs: &[String],
    model: &tidig_models::logistic::Logistic,
    vectors: &BTreeMap<i64, crate::store::StoredVector>,
) -> Drift {
    let warn = tidig_models::drift::WARN;
    let scores: Vec<Option<f64>> = vectors
        .values()
        .map(|v| Some(model.probability(&v.values)))
        .collect();
    let score_psi = reference.score.psi(&scores);
    let features: BTreeMap<String, f64> = inputs
        .iter()
        .zip(&reference.features)
        .enumerate()
        .map(|(j, (id, bins))| {
            let column: Vec<Option<f64>> = vectors
                .values()
                .map(|v| v.values.get(j).copied().flatten())
                .collect();
            (id.clone(), bins.psi(&column))
        })
        .collect();
    let mut high: Vec<(&str, f64)> = features
        .iter()
        .filter(|(_, p)| **p > warn)
        .map(|(f, p)| (f.as_str(), *p))
        .collect();
    if score_psi > warn {
        high.push(("score", score_psi));
    }
    high.sort_by(|a, b| b.1.total_cmp(&a.1));
    Drift {
        score_psi,
        warnings: high.into_iter().map(|(f, _)| f.to_string()).collect(),
        features,
    }
}

impl ScoreReport {
    /// Takes in what the writing transaction decided: which candidates fit their unit's
    /// capacity, and what changed.
    fn apply(&mut self, counts: &WriteCounts, candidates: &[Suggestion]) {
        let kept: HashSet<&str> = counts.kept.iter().map(String::as_str).collect();
        self.per_unit.clear();
        for s in candidates.iter().filter(|s| kept.contains(s.id.as_str())) {
            *self.per_unit.entry(s.unit.clone()).or_default() += 1;
        }
        self.deferred_by_capacity = counts.deferred.clone();
        self.suggestions = counts.kept.len();
        (self.new, self.unchanged, self.superseded) =
            (counts.new, counts.unchanged, counts.superseded);
    }
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

async fn population(app: &App, as_of: NaiveDate) -> Result<Population> {
    let store = app.store();
    let d = dates::days(as_of);
    let birth = store.births().await?;
    let residence: HashMap<i64, (String, Option<String>, Option<i64>)> = store
        .residences_on(d)
        .await?
        .into_iter()
        .map(|r| (r.person, (r.municipality, r.postcode, r.household)))
        .collect();
    let objections = store.objectors().await?;
    let active_persons = store
        .active_case_persons(
            "child_welfare_intervention",
            d * 86_400,
            ACTIVE_CASE_DAYS * 86_400,
        )
        .await?;
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

/// Runs the pipeline for one date and writes the suggestions (idempotently).
pub async fn score(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
) -> Result<(ScoreReport, Vec<Suggestion>)> {
    let mut record = app
        .record(by, "score.run")
        .with(serde_json::json!({"as_of": as_of.to_string()}));
    record.versions.feature_set = Some(set.hash());
    let result = score_inner(app, by, set, as_of).await;
    app.audited(record, result).await
}

/// The refusal of a run while scoring is stopped.
fn stopped(stop: &ScoringSwitch) -> EngineError {
    Precondition::ScoringStopped {
        since: stop.at.clone(),
        by: stop.by.clone(),
        reason: tidig_connectors::redact::scrub(&stop.reason).into_owned(),
    }
    .into()
}

async fn score_inner(
    app: &App,
    by: &Principal,
    set: &FeatureSet,
    as_of: NaiveDate,
) -> Result<(ScoreReport, Vec<Suggestion>)> {
    let started = Instant::now();
    let (pack, deployment, scoring) = (
        app.pack(),
        &app.settings().deployment,
        &app.settings().scoring,
    );
    let mut t = Timings::default();
    // Stopped: refuse before any work (and again inside the writing transaction, which
    // a stop arriving meanwhile reaches).
    if let Some(stop) = app.store().scoring_switch().await?.filter(|s| s.stopped) {
        return Err(stopped(&stop));
    }
    let Some(active) = crate::pipeline::registry::active(app).await? else {
        return Err(Precondition::NoActiveModel.into());
    };
    let (model_row, artifact) = (active.row, active.artifact);
    if set.hash() != artifact.feature_set_version {
        return Err(Precondition::FeatureSetMismatch {
            model: model_row.id[..16].to_string(),
            needed: artifact.feature_set_version[..12].to_string(),
            given: set.hash()[..12].to_string(),
        }
        .into());
    }
    let model_facts = crate::pipeline::registry::model_facts(&model_row.id, &artifact);
    // Stage data: every input, at every scoring run.
    let data = crate::pipeline::rules::check_inputs(
        pack,
        deployment,
        &model_facts,
        set,
        &artifact.features,
    )?;
    let mut data_rules: Vec<String> = data.iter().flat_map(|(_, d)| d.rules.clone()).collect();
    data_rules.sort();
    data_rules.dedup();
    let data_trace = TraceEntry {
        stage: Stage::Data,
        action: "use_feature".into(),
        subject: format!("{} model inputs", data.len()),
        allowed: true,
        rules: data_rules,
        errors: Vec::new(),
    };

    let version = set.hash();
    let mut vectors = load_vectors(app, &version, as_of).await?;
    if vectors.is_empty() {
        build(app, by, set, as_of, &Quiet).await?;
        vectors = load_vectors(app, &version, as_of).await?;
    }
    let pop = population(app, as_of).await?;
    t.load = started.elapsed().as_secs_f64();

    let defs: Vec<&tidig_models::features::FeatureDef> = artifact
        .features
        .iter()
        .map(|id| {
            set.features.iter().find(|f| &f.id == id).ok_or_else(|| {
                EngineError::from(Precondition::UnknownInput {
                    feature: id.clone(),
                    set: set.name.clone(),
                })
            })
        })
        .collect::<Result<_>>()?;
    let facts: Vec<tidig_governance::eval::FeatureFacts> = defs
        .iter()
        .map(|f| crate::pipeline::rules::feature_facts(f))
        .collect();

    let mut report = ScoreReport {
        as_of: as_of.to_string(),
        model_id: model_row.id.clone(),
        rules_version: pack.version().into(),
        feature_set_version: version.clone(),
        cohort: vectors.len(),
        drift: artifact
            .drift
            .as_ref()
            .map(|r| drift(r, &artifact.features, &artifact.model, &vectors)),
        ..ScoreReport::default()
    };
    let ctx = Context {
        model: &artifact.model,
        model_facts: &model_facts,
        defs: &defs,
        facts: &facts,
        deployment,
        scoring,
        data_trace: &data_trace,
    };
    let mut ev = Evaluator::new(pack);
    let mut phases = Phases::default();
    let mut top = Vec::with_capacity(scoring.top_factors.max(1));
    let mut candidates: Vec<Candidate> = Vec::new();
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
    for (pid, v) in &vectors {
        let residence = pop.residence.get(pid);
        let person = Person {
            id: *pid,
            values: &v.values,
            age: pop
                .birth
                .get(pid)
                .and_then(|b| dates::from_days(*b))
                .map_or(-1, |b| dates::age_years(b, as_of)),
            objection: pop.objections.contains(pid),
            residence: residence.map(|(m, pc, _)| (m.as_str(), pc.as_deref())),
            active_case: pop.active_persons.contains(pid)
                || residence
                    .and_then(|r| r.2)
                    .is_some_and(|hh| pop.active_households.contains(&hh)),
        };
        if let Some(u) = residence
            .and_then(|(m, pc, _)| crate::pipeline::decide::route(&scoring.units, m, pc.as_deref()))
        {
            *report.cohort_per_unit.entry(u.id.clone()).or_default() += 1;
        }
        match decide(&mut ev, &ctx, &person, &mut top, &mut phases) {
            Outcome::Excluded(d) => {
                note_error(&mut report, &d);
                count_deny(&mut report.excluded, &d);
            }
            Outcome::BelowBand => {
                report.scored += 1;
                report.below_band += 1;
            }
            Outcome::Unrouted => {
                report.scored += 1;
                report.unrouted += 1;
            }
            Outcome::Suppressed(d) => {
                report.scored += 1;
                note_error(&mut report, &d);
                count_deny(&mut report.suppressed, &d);
            }
            Outcome::Suggest(c) => {
                report.scored += 1;
                report.factors_redacted += c.factors.iter().filter(|f| f.redacted).count();
                candidates.push(c);
            }
        }
    }
    t.rules = phases.rules.as_secs_f64();
    t.score = phases.score.as_secs_f64();
    report.rule_requests = ev.evaluated + ev.memoized;
    report.rule_evaluations = ev.evaluated;

    // Candidates in priority order (highest need first); the store applies each unit's
    // weekly capacity inside the writing transaction, counting the week's other dates.
    let write_started = Instant::now();
    let units = &scoring.units;
    let d = dates::days(as_of);
    let week_start = dates::days(dates::week_start(as_of));
    let capacity = Capacity {
        week: (week_start, week_start + 7),
        per_unit: units
            .iter()
            .map(|u| (u.id.clone(), u.weekly_capacity))
            .collect(),
    };
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.person.cmp(&b.person)));
    // A suggestion waits `expiry_days` from when it is written (a run for a past date
    // must not write suggestions that are already expired).
    let expires = app
        .clock()
        .today()
        .checked_add_days(Days::new(u64::from(scoring.expiry_days)))
        .unwrap_or(as_of)
        .max(as_of)
        .to_string();
    let mut out = Vec::new();
    for c in candidates {
        let unit = &units[c.unit];
        out.push(Suggestion {
            id: suggestion_id(as_of, c.person, &model_row.id, pack.version(), &version),
            as_of: as_of.to_string(),
            person_id: c.person,
            unit: unit.id.clone(),
            score: c.score,
            band: c.band,
            explanation: c.explanation,
            factors: c.factors,
            interventions: c.interventions,
            rule_trace: c.trace,
            model_id: model_row.id.clone(),
            rules_version: pack.version().into(),
            feature_set_version: version.clone(),
            expires_at: expires.clone(),
            status: SuggestionStatus::Open,
        });
    }
    let rows = out
        .iter()
        .map(|s| {
            Ok(SuggestionRow {
                id: &s.id,
                person_id: s.person_id,
                unit: &s.unit,
                score: s.score,
                band: s.band,
                factors_json: serde_json::to_string(&s.explanation)?,
                interventions_json: serde_json::to_string(&s.interventions)?,
                trace_json: serde_json::to_string(&s.rule_trace)?,
                model_id: &s.model_id,
                rules_version: &s.rules_version,
                feature_set_version: &s.feature_set_version,
                expires_at: &s.expires_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let at = app.clock().stamp();
    crate::testkit_hooks::pause_before_score_write().await;
    let written = app
        .store()
        .write_suggestions(
            &ScoringRunRecord {
                day: d,
                model_id: &report.model_id,
                rules_version: &report.rules_version,
                feature_set_version: &report.feature_set_version,
                at: &at,
                by: by.id(),
                auth: by.auth.as_str(),
            },
            &rows,
            &capacity,
            |c| {
                let mut r = report.clone();
                r.apply(c, &out);
                serde_json::to_string(&r).unwrap_or_default()
            },
            |c| {
                let mut r = report.clone();
                r.apply(c, &out);
                run_record(app, by, &r)
            },
        )
        .await?;
    let counts = match written {
        Written::Suggestions(counts) => counts,
        Written::Stopped(stop) => return Err(stopped(&stop)),
    };
    drop(rows);
    report.apply(&counts, &out);
    let kept: HashSet<&str> = counts.kept.iter().map(String::as_str).collect();
    out.retain(|s| kept.contains(s.id.as_str()));
    t.write = write_started.elapsed().as_secs_f64();
    t.total = started.elapsed().as_secs_f64();
    report.seconds = t;
    Ok((report, out))
}

/// The audit record of a scoring run: its versions and per-rule counts, never who was
/// scored, excluded or suggested.
fn run_record(app: &App, by: &Principal, r: &ScoreReport) -> tidig_governance::audit::Record {
    let mut record = app.record(by, "score.run").with(serde_json::json!({
        "as_of": r.as_of,
        "cohort": r.cohort,
        "cohort_per_unit": r.cohort_per_unit,
        "scored": r.scored,
        "excluded": r.excluded,
        "below_band": r.below_band,
        "unrouted": r.unrouted,
        "suppressed": r.suppressed,
        "rule_errors": r.rule_errors,
        "deferred_by_capacity": r.deferred_by_capacity,
        "per_unit": r.per_unit,
        "suggestions": r.suggestions,
        "new": r.new,
        "unchanged": r.unchanged,
        "superseded": r.superseded,
        "factors_redacted": r.factors_redacted,
        "drift": r.drift,
    }));
    record.versions.model = Some(r.model_id.clone());
    record.versions.rules = Some(r.rules_version.clone());
    record.versions.feature_set = Some(r.feature_set_version.clone());
    record
}

/// A suggestion's id: the same date, person and versions give the same id, so
/// re-scoring with the same versions changes nothing.
fn suggestion_id(
    as_of: NaiveDate,
    person: i64,
    model: &str,
    rules: &str,
    features: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(format!("{as_of}\0{person}\0{model}\0{rules}\0{features}"));
    hex::encode(&h.finalize()[..16])
}

/// The open suggestions of a date with their pseudonyms, highest score first, each as
/// its unit's configured viewer sees it.
pub async fn open_suggestions(app: &App, as_of: NaiveDate) -> Result<Vec<(String, Suggestion)>> {
    let rows = app.store().open_suggestions(dates::days(as_of)).await?;
    let mut ev = Evaluator::new(app.pack());
    let settings = app.settings();
    rows.into_iter()
        .map(|r: StoredSuggestion| {
            let explanation: Vec<StoredFactor> = serde_json::from_str(&r.factors_json)?;
            let stored_trace: Vec<TraceEntry> = serde_json::from_str(&r.trace_json)?;
            let (factors, interventions, rule_trace) = view_for(
                &mut ev,
                &settings.deployment,
                &settings.scoring.catalogue,
                &settings.scoring.unit_viewer(&r.unit),
                &explanation,
                &stored_trace,
            );
            Ok((
                r.pseudonym,
                Suggestion {
                    id: r.id,
                    as_of: as_of.to_string(),
                    person_id: r.person_id,
                    unit: r.unit,
                    score: r.score,
                    band: r.band,
                    explanation,
                    factors,
                    interventions,
                    rule_trace,
                    model_id: r.model_id,
                    rules_version: r.rules_version,
                    feature_set_version: r.feature_set_version,
                    expires_at: r.expires_at,
                    status: r.status,
                },
            ))
        })
        .collect()
}
