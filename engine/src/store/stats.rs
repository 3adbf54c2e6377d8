//! What the oversight statistics are computed from: every suggestion's unit, band, dates
//! and status with its decision, and every scoring run's report. Nothing here names a
//! person; the tabulation and small-cell suppression are `pipeline::stats`'s.

use super::{Store, StoreError};

/// One suggestion as the statistics see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestionFact {
    pub unit: String,
    pub band: String,
    /// The scoring date (days since the epoch).
    pub as_of: i64,
    pub created_at: String,
    pub expires_at: String,
    pub status: String,
    pub decision: Option<DecisionFact>,
}

/// A decision as the statistics see it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionFact {
    pub outcome: String,
    pub reason_code: String,
    pub decided_at: String,
}

/// A scoring run as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFact {
    pub id: i64,
    pub as_of: i64,
    pub at: String,
    pub model_id: String,
    /// The run's report (JSON), as the run wrote it.
    pub report: String,
}

type SuggestionRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// Every suggestion (superseded ones left out: a later run of their date replaced
    /// them) with its decision, if any.
    pub async fn suggestion_facts(&self) -> Result<Vec<SuggestionFact>, StoreError> {
        let mut out = Vec::new();
        for_each_row!(
            self,
            SuggestionRow,
            "SELECT s.unit, s.band, s.as_of, s.created_at, s.expires_at, s.status, \
                    d.outcome, d.reason_code, d.decided_at \
             FROM suggestions s LEFT JOIN decisions d ON d.suggestion_id = s.id \
             WHERE s.status <> 'superseded' ORDER BY s.as_of, s.unit, s.id",
            [],
            |r| {
                out.push(SuggestionFact {
                    unit: r.0,
                    band: r.1,
                    as_of: r.2,
                    created_at: r.3,
                    expires_at: r.4,
                    status: r.5,
                    decision: match (r.6, r.7, r.8) {
                        (Some(outcome), Some(reason_code), Some(decided_at)) => {
                            Some(DecisionFact {
                                outcome,
                                reason_code,
                                decided_at,
                            })
                        }
                        _ => None,
                    },
                });
            }
        );
        Ok(out)
    }

    /// Every scoring run, oldest first.
    pub async fn run_facts(&self) -> Result<Vec<RunFact>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String)> = fetch_all!(
            self,
            (i64, i64, String, String, String),
            "SELECT id, as_of, at, model_id, report FROM scoring_runs ORDER BY id"
        );
        Ok(rows
            .into_iter()
            .map(|r| RunFact {
                id: r.0,
                as_of: r.1,
                at: r.2,
                model_id: r.3,
                report: r.4,
            })
            .collect())
    }
}
