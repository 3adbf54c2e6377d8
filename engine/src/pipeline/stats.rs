//! The oversight statistics: what tidig suggested, what people decided, what the rules
//! held back and how the active model treats groups, in aggregates only. Every count of
//! persons below the minimum cell size (`[statistics] min_cell`, default 5) and above
//! zero is suppressed (`null`), and so is every rate or median computed from one.
//!
//! [`tabulate`] is pure (facts in, tables out) so that it can be checked against values
//! computed by hand; [`statistics`] reads the facts under the access policy.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate};
use serde::Serialize;
use tidig_governance::access::Operation;
use tidig_models::fairness::FairnessReport;

use crate::access::Target;
use crate::app::App;
use crate::dates;
use crate::error::EngineError;
use crate::principal::Principal;
use crate::store::{RunFact, SuggestionFact};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A count of persons (or of their suggestions and decisions): `None` when it is above
/// zero and below the minimum cell size (the same rule research releases follow).
pub use tidig_models::research::{cell, Cell};

/// Everything `tidig stats` and `GetStatistics` report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statistics {
    /// Counts above zero and below this are suppressed.
    pub min_cell: u64,
    /// The day expiry is judged against.
    pub today: String,
    /// Suggestions (superseded ones left out) per unit and ISO week of their scoring
    /// date.
    pub suggestions_per_week: Vec<WeekCount>,
    /// Decisions by outcome and reason code.
    pub decisions: Vec<DecisionCount>,
    /// Declined or not relevant ÷ decided, per unit and band.
    pub override_rates: Vec<OverrideRate>,
    /// Median hours from a suggestion's creation to its decision, overall (unit
    /// `"all"`) and per unit.
    pub time_to_decision: Vec<TimeToDecision>,
    /// Suggestions whose expiry passed without a decision, per unit.
    pub expired_undecided: Vec<UnitCount>,
    /// Every scoring run: exclusions and suppressions per rule, and the flag rate per
    /// 1,000 children per unit.
    pub runs: Vec<RunStats>,
    /// The active model's fairness table (groups below the gate's minimum group size
    /// are suppressed by the table itself).
    pub fairness: Option<ModelFairness>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeekCount {
    pub unit: String,
    /// `2026-W01`.
    pub week: String,
    pub suggestions: Cell,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionCount {
    pub outcome: String,
    pub reason_code: String,
    pub decisions: Cell,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverrideRate {
    pub unit: String,
    pub band: String,
    pub decided: Cell,
    /// Declined or not relevant.
    pub overridden: Cell,
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeToDecision {
    /// A unit, or `"all"`.
    pub unit: String,
    pub decided: Cell,
    pub median_hours: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitCount {
    pub unit: String,
    pub count: Cell,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleCount {
    pub rule: String,
    pub persons: Cell,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlagRate {
    pub unit: String,
    /// Children of the scoring cohort living in the unit's area.
    pub children: Cell,
    /// Suggestions the run made for the unit.
    pub flagged: Cell,
    pub per_1000: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunStats {
    pub id: i64,
    pub as_of: String,
    pub at: String,
    pub model_id: String,
    pub cohort: Cell,
    pub excluded: Vec<RuleCount>,
    pub suppressed: Vec<RuleCount>,
    /// Empty for runs recorded before tidig counted children per unit.
    pub flag_rates: Vec<FlagRate>,
    /// The score's population stability index against the model's training
    /// distribution (absent for models trained before tidig measured drift).
    pub score_psi: Option<f64>,
    /// The inputs (and `score`) whose PSI was above 0.25 in this run.
    pub drift_warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelFairness {
    pub model_id: String,
    pub tables: Vec<FairnessTable>,
}

/// A fairness table of the model card with its group sizes subject to the minimum cell
/// size too.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FairnessTable {
    pub attribute: String,
    pub groups: Vec<FairnessGroup>,
    pub demographic_parity_difference: Option<f64>,
    pub demographic_parity_ratio: Option<f64>,
    pub equalized_odds_difference: Option<f64>,
    pub equalized_odds_ratio: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FairnessGroup {
    pub group: String,
    pub count: Cell,
    /// Below the gate's minimum group size: no rates.
    pub suppressed: bool,
    pub selection_rate: Option<f64>,
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
}

fn fairness_table(r: &FairnessReport, min: u64) -> FairnessTable {
    FairnessTable {
        attribute: r.attribute.clone(),
        groups: r
            .groups
            .iter()
            .map(|g| FairnessGroup {
                group: g.group.clone(),
                count: cell(g.count as u64, min),
                suppressed: g.suppressed,
                selection_rate: g.selection_rate,
                tpr: g.tpr,
                fpr: g.fpr,
            })
            .collect(),
        demographic_parity_difference: r.demographic_parity_difference,
        demographic_parity_ratio: r.demographic_parity_ratio,
        equalized_odds_difference: r.equalized_odds_difference,
        equalized_odds_ratio: r.equalized_odds_ratio,
    }
}

/// `num ÷ den × scale`, unless either count is a small cell or `den` is zero.
fn rate(num: u64, den: u64, min: u64, scale: f64) -> Option<f64> {
    (den > 0 && cell(num, min).is_some() && cell(den, min).is_some())
        .then(|| num as f64 / den as f64 * scale)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn hours_between(from: &str, to: &str) -> Option<f64> {
    let a = DateTime::parse_from_rfc3339(from).ok()?;
    let b = DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds() as f64 / 3_600_000.0)
}

fn iso_week(day: i64) -> String {
    dates::from_days(day).map_or_else(
        || "unknown".into(),
        |d| {
            let w = d.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        },
    )
}

/// The part of a stored scoring-run report the statistics read.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RunReport {
    cohort: u64,
    cohort_per_unit: BTreeMap<String, u64>,
    excluded: BTreeMap<String, u64>,
    suppressed: BTreeMap<String, u64>,
    per_unit: BTreeMap<String, u64>,
    drift: Option<crate::pipeline::score::Drift>,
}

/// The tables, from the facts. Pure: the same facts give the same tables.
pub fn tabulate(
    suggestions: &[SuggestionFact],
    runs: &[RunFact],
    fairness: Option<(&str, &[FairnessReport])>,
    today: NaiveDate,
    min_cell: u64,
) -> Result<Statistics> {
    let min = min_cell;
    let today_text = today.format("%Y-%m-%d").to_string();

    let mut weeks: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut decisions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut overrides: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut hours: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut expired: BTreeMap<String, u64> = BTreeMap::new();
    for s in suggestions {
        *weeks
            .entry((s.unit.clone(), iso_week(s.as_of)))
            .or_default() += 1;
        expired.entry(s.unit.clone()).or_default();
        match &s.decision {
            Some(d) => {
                *decisions
                    .entry((d.outcome.clone(), d.reason_code.clone()))
                    .or_default() += 1;
                let o = overrides
                    .entry((s.unit.clone(), s.band.clone()))
                    .or_default();
                o.0 += 1;
                if d.outcome == "declined" || d.outcome == "not_relevant" {
                    o.1 += 1;
                }
                let h = hours_between(&s.created_at, &d.decided_at).ok_or_else(|| {
                    EngineError::internal(format_args!(
                        "a decision's or its suggestion's time is not RFC 3339: `{}`, `{}`",
                        s.created_at, d.decided_at
                    ))
                })?;
                hours.entry(s.unit.clone()).or_default().push(h);
            }
            None => {
                // A suggestion expires at the start of its expiry day.
                let passed = s.status == "expired"
                    || (s.status == "open" && s.expires_at.as_str() <= today_text.as_str());
                if passed {
                    *expired.entry(s.unit.clone()).or_default() += 1;
                }
            }
        }
    }

    let mut time_to_decision = Vec::new();
    let mut all: Vec<f64> = hours.values().flatten().copied().collect();
    let summary = |unit: &str, v: &mut Vec<f64>| TimeToDecision {
        unit: unit.into(),
        decided: cell(v.len() as u64, min),
        median_hours: cell(v.len() as u64, min).and_then(|_| median(v)),
    };
    time_to_decision.push(summary("all", &mut all));
    for (unit, v) in &mut hours {
        time_to_decision.push(summary(unit, v));
    }

    let mut run_stats = Vec::new();
    for r in runs {
        let report: RunReport = serde_json::from_str(&r.report).map_err(|e| {
            EngineError::internal(format_args!("scoring run {}'s report: {e}", r.id))
        })?;
        let rules = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(rule, &n)| RuleCount {
                    rule: rule.clone(),
                    persons: cell(n, min),
                })
                .collect()
        };
        run_stats.push(RunStats {
            id: r.id,
            as_of: dates::from_days(r.as_of).map_or_else(String::new, |d| d.to_string()),
            at: r.at.clone(),
            model_id: r.model_id.clone(),
            cohort: cell(report.cohort, min),
            excluded: rules(&report.excluded),
            suppressed: rules(&report.suppressed),
            flag_rates: report
                .cohort_per_unit
                .iter()
                .map(|(unit, &children)| {
                    let flagged = report.per_unit.get(unit).copied().unwrap_or(0);
                    FlagRate {
                        unit: unit.clone(),
                        children: cell(children, min),
                        flagged: cell(flagged, min),
                        per_1000: rate(flagged, children, min, 1000.0),
                    }
                })
                .collect(),
            score_psi: report.drift.as_ref().map(|d| d.score_psi),
            drift_warnings: report.drift.map(|d| d.warnings).unwrap_or_default(),
        });
    }

    Ok(Statistics {
        min_cell: min,
        today: today_text,
        suggestions_per_week: weeks
            .into_iter()
            .map(|((unit, week), n)| WeekCount {
                unit,
                week,
                suggestions: cell(n, min),
            })
            .collect(),
        decisions: decisions
            .into_iter()
            .map(|((outcome, reason_code), n)| DecisionCount {
                outcome,
                reason_code,
                decisions: cell(n, min),
            })
            .collect(),
        override_rates: overrides
            .into_iter()
            .map(|((unit, band), (decided, overridden))| OverrideRate {
                unit,
                band,
                decided: cell(decided, min),
                overridden: cell(overridden, min),
                rate: rate(overridden, decided, min, 1.0),
            })
            .collect(),
        time_to_decision,
        expired_undecided: expired
            .into_iter()
            .map(|(unit, n)| UnitCount {
                unit,
                count: cell(n, min),
            })
            .collect(),
        runs: run_stats,
        fairness: fairness.map(|(model_id, tables)| ModelFairness {
            model_id: model_id.into(),
            tables: tables.iter().map(|t| fairness_table(t, min)).collect(),
        }),
    })
}

/// `GetStatistics` and `tidig stats`: the tables over the whole store, for whoever the
/// access policy lets read them (rule `access.statistics`). The call is recorded before
/// anything is read.
pub async fn statistics(app: &App, by: &Principal) -> Result<Statistics> {
    let op = Operation::GetStatistics;
    let min_cell = app.settings().statistics.min_cell;
    let record = app
        .record(by, &crate::access::action(op))
        .with(serde_json::json!({"min_cell": min_cell}));
    let _pass = app
        .check_access(by, op, Target::deployment(), record)
        .await?;
    let suggestions = app.store().suggestion_facts().await?;
    let runs = app.store().run_facts().await?;
    let active = crate::pipeline::registry::active(app).await?;
    let fairness = active
        .as_ref()
        .map(|m| (m.row.id.as_str(), m.artifact.fairness.as_slice()));
    tabulate(&suggestions, &runs, fairness, app.clock().today(), min_cell)
}

/// The newest scoring run's drift.
#[derive(Clone, Debug, Serialize)]
pub struct LatestDrift {
    pub run: i64,
    pub as_of: String,
    pub model_id: String,
    /// Absent when the run's model was trained before tidig measured drift.
    pub drift: Option<crate::pipeline::score::Drift>,
}

/// `tidig drift`: the newest scoring run's population stability indices (aggregate
/// figures, read under `access.statistics`); `None` before the first run.
pub async fn latest_drift(app: &App, by: &Principal) -> Result<Option<LatestDrift>> {
    let op = Operation::GetStatistics;
    let record = app
        .record(by, &crate::access::action(op))
        .with(serde_json::json!({"drift": true}));
    let _pass = app
        .check_access(by, op, Target::deployment(), record)
        .await?;
    let Some(run) = app.store().run_facts().await?.pop() else {
        return Ok(None);
    };
    let report: RunReport = serde_json::from_str(&run.report)
        .map_err(|e| EngineError::internal(format_args!("scoring run {}'s report: {e}", run.id)))?;
    Ok(Some(LatestDrift {
        run: run.id,
        as_of: dates::from_days(run.as_of).map_or_else(String::new, |d| d.to_string()),
        model_id: run.model_id,
        drift: report.drift,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DecisionFact;

    /// A suggestion of `unit`, `band`, scored on `day` (2026-01-05 is a Monday, ISO week
    /// 2), created at 08:00 that day, decided `after` hours later with `outcome`.
    fn s(unit: &str, band: &str, day: u32, decided: Option<(&str, &str, i64)>) -> SuggestionFact {
        let date = NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
        let created = date.and_hms_opt(8, 0, 0).unwrap().and_utc();
        SuggestionFact {
            unit: unit.into(),
            band: band.into(),
            as_of: dates::days(date),
            created_at: created.to_rfc3339(),
            expires_at: (date + chrono::Duration::days(14)).to_string(),
            status: if decided.is_some() { "decided" } else { "open" }.into(),
            decision: decided.map(|(outcome, reason, after)| DecisionFact {
                outcome: outcome.into(),
                reason_code: reason.into(),
                decided_at: (created + chrono::Duration::hours(after)).to_rfc3339(),
            }),
        }
    }

    /// Twelve suggestions in two units, computed by hand below.
    fn fixture() -> Vec<SuggestionFact> {
        vec![
            // north, week 2 (5–11 Jan): six; five decided.
            s("north", "high", 5, Some(("accepted", "support-offered", 2))),
            s(
                "north",
                "high",
                5,
                Some(("declined", "family-declined-contact", 4)),
            ),
            s(
                "north",
                "high",
                6,
                Some(("not_relevant", "not-in-scope", 6)),
            ),
            s("north", "high", 6, Some(("accepted", "support-offered", 8))),
            s("north", "high", 7, Some(("declined", "other", 10))),
            s("north", "elevated", 7, None),
            // north, week 3: one, decided.
            s(
                "north",
                "elevated",
                12,
                Some(("accepted", "support-offered", 12)),
            ),
            // south, week 2: five, two decided, three open (expiring 19, 20 and 23 Jan).
            s(
                "south",
                "high",
                5,
                Some(("accepted", "support-offered", 30)),
            ),
            s(
                "south",
                "high",
                5,
                Some(("already_known", "already-supported", 50)),
            ),
            s("south", "elevated", 5, None),
            s("south", "elevated", 6, None),
            s("south", "elevated", 9, None),
        ]
    }

    fn run(id: i64, report: serde_json::Value) -> RunFact {
        RunFact {
            id,
            as_of: dates::days(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()),
            at: "2026-01-05T07:00:00.000Z".into(),
            model_id: "m".into(),
            report: report.to_string(),
        }
    }

    #[test]
    fn the_tables_match_values_computed_by_hand_with_small_cells_suppressed() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 22).unwrap();
        let runs = [run(
            1,
            serde_json::json!({
                "cohort": 2400,
                "cohort_per_unit": {"north": 1500, "south": 880, "east": 3},
                "excluded": {"eligibility.objection": 3, "eligibility.active-case": 41},
                "suppressed": {"output.small-area": 0, "output.sibling": 7},
                "per_unit": {"north": 6, "south": 4},
            }),
        )];
        let st = tabulate(&fixture(), &runs, None, today, 5).unwrap();
        assert_eq!(st.min_cell, 5);
        // Per unit and week: north W02 6, north W03 1 (suppressed), south W02 5.
        let weeks: Vec<(&str, &str, Cell)> = st
            .suggestions_per_week
            .iter()
            .map(|w| (w.unit.as_str(), w.week.as_str(), w.suggestions))
            .collect();
        assert_eq!(
            weeks,
            [
                ("north", "2026-W02", Some(6)),
                ("north", "2026-W03", None),
                ("south", "2026-W02", Some(5)),
            ]
        );
        // Decisions: accepted/support-offered 4; every other pair is 1 or 2.
        let d: Vec<(&str, &str, Cell)> = st
            .decisions
            .iter()
            .map(|d| (d.outcome.as_str(), d.reason_code.as_str(), d.decisions))
            .collect();
        assert_eq!(
            d,
            [
                ("accepted", "support-offered", None),
                ("already_known", "already-supported", None),
                ("declined", "family-declined-contact", None),
                ("declined", "other", None),
                ("not_relevant", "not-in-scope", None),
            ]
        );
        // With a minimum of 2 the pair counted 4 shows, and the single ones do not.
        let two = tabulate(&fixture(), &runs, None, today, 2).unwrap();
        assert_eq!(two.decisions[0].decisions, Some(4));
        assert_eq!(two.decisions[1].decisions, None);
        // Override rate: north high 5 decided, 3 overridden (declined 2, not relevant 1)
        // = 0.6; north elevated 1 and south high 2 decided: suppressed.
        let o: Vec<(&str, &str, Cell, Cell, Option<f64>)> = st
            .override_rates
            .iter()
            .map(|o| {
                (
                    o.unit.as_str(),
                    o.band.as_str(),
                    o.decided,
                    o.overridden,
                    o.rate,
                )
            })
            .collect();
        assert_eq!(
            o,
            [
                ("north", "elevated", None, Some(0), None),
                ("north", "high", Some(5), None, None),
                ("south", "high", None, Some(0), None),
            ]
        );
        // With a minimum of 3 the north high rate shows: 3 / 5.
        let three = tabulate(&fixture(), &runs, None, today, 3).unwrap();
        assert_eq!(three.override_rates[1].rate, Some(0.6));
        // Time to decision: 8 decisions, hours 2 4 6 8 10 12 30 50 → median (8+10)/2 = 9;
        // north 6 decisions (2 4 6 8 10 12) → 7; south 2: suppressed.
        let t: Vec<(&str, Cell, Option<f64>)> = st
            .time_to_decision
            .iter()
            .map(|t| (t.unit.as_str(), t.decided, t.median_hours))
            .collect();
        assert_eq!(
            t,
            [
                ("all", Some(8), Some(9.0)),
                ("north", Some(6), Some(7.0)),
                ("south", None, None),
            ]
        );
        // Expired undecided on 2026-01-22: north's open one expires 01-21 (1,
        // suppressed); south's open ones expire 01-19, 01-20 and 01-23 → 2, suppressed.
        // On 2026-02-01 south has 3 and with a minimum of 3 it shows.
        assert_eq!(
            st.expired_undecided,
            [
                UnitCount {
                    unit: "north".into(),
                    count: None
                },
                UnitCount {
                    unit: "south".into(),
                    count: None
                },
            ]
        );
        let later = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let after = tabulate(&fixture(), &runs, None, later, 3).unwrap();
        assert_eq!(after.expired_undecided[1].count, Some(3));
        // Before the first expiry nothing has expired: zero is shown, not suppressed.
        let early = tabulate(
            &fixture(),
            &runs,
            None,
            NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(),
            5,
        )
        .unwrap();
        assert!(early.expired_undecided.iter().all(|u| u.count == Some(0)));
        // The run: exclusions and suppressions per rule, small ones suppressed, zero
        // shown; flag rates 6/1500 × 1000 = 4.0 (north; 6 flagged), south 4 flagged
        // (suppressed, and so its rate), east 3 children (suppressed).
        let r = &st.runs[0];
        assert_eq!(
            (r.id, r.as_of.as_str(), r.cohort),
            (1, "2026-01-05", Some(2400))
        );
        let rules = |v: &[RuleCount]| -> Vec<(String, Cell)> {
            v.iter().map(|c| (c.rule.clone(), c.persons)).collect()
        };
        assert_eq!(
            rules(&r.excluded),
            [
                ("eligibility.active-case".to_string(), Some(41)),
                ("eligibility.objection".to_string(), None),
            ]
        );
        assert_eq!(
            rules(&r.suppressed),
            [
                ("output.sibling".to_string(), Some(7)),
                ("output.small-area".to_string(), Some(0)),
            ]
        );
        let f: Vec<(&str, Cell, Cell, Option<f64>)> = r
            .flag_rates
            .iter()
            .map(|f| (f.unit.as_str(), f.children, f.flagged, f.per_1000))
            .collect();
        assert_eq!(
            f,
            [
                ("east", None, Some(0), None),
                ("north", Some(1500), Some(6), Some(4.0)),
                ("south", Some(880), None, None),
            ]
        );
    }

    #[test]
    fn a_run_recorded_before_units_were_counted_has_no_flag_rates_and_a_bad_report_is_an_error() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 22).unwrap();
        let old = run(
            1,
            serde_json::json!({"cohort": 10, "per_unit": {"north": 6}}),
        );
        let st = tabulate(&[], &[old], None, today, 5).unwrap();
        assert!(st.runs[0].flag_rates.is_empty());
        assert_eq!(st.time_to_decision[0].decided, Some(0));
        assert_eq!(st.time_to_decision[0].median_hours, None);
        let bad = RunFact {
            report: "not json".into(),
            ..run(2, serde_json::json!({}))
        };
        let e = tabulate(&[], &[bad], None, today, 5).unwrap_err();
        assert!(e.to_string().contains("scoring run 2"), "{e}");
    }
}
