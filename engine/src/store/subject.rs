//! Everything the store holds about one person, for a subject-access report (GDPR
//! Art 15): their registry records with their sources, feature snapshots, suggestions
//! with decisions, and their objection. Read only with the access check's pass for that
//! person, and never anything that names someone else (a relation says what kind it
//! is, not who; a residence says whether a household was recorded, not which).

use super::{Store, StoreError};
use crate::access::AccessPass;
use crate::store::suggestions::{stored, StoredRow, STORED_COLUMNS};
use crate::store::{ObjectionRow, StoredSuggestion};

/// The person's own row.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectPerson {
    pub id: i64,
    pub scheme: String,
    /// Days since the epoch.
    pub birth_date: Option<i64>,
    pub sex: Option<String>,
    pub death_date: Option<i64>,
}

/// A source file and when it was loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub file: Option<String>,
    pub loaded_at: Option<String>,
}

/// A health or social-services event.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectEvent {
    pub kind: i64,
    pub code_system: String,
    pub code: String,
    pub detail: Option<(String, String)>,
    pub status: i64,
    /// Seconds since the epoch.
    pub start: i64,
    pub end: Option<i64>,
    pub value: Option<f64>,
    pub loaded: Loaded,
}

/// A residence period.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectResidence {
    /// Days since the epoch.
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub municipality: String,
    pub postcode: Option<String>,
    pub household_recorded: bool,
    pub loaded: Loaded,
}

/// A parent-child relation, from the person's side.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectRelation {
    /// `true`: the person is the child; `false`: the parent.
    pub as_child: bool,
    pub relation: String,
    pub valid_from: Option<i64>,
    pub valid_to: Option<i64>,
    pub loaded: Loaded,
}

/// A feature snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectSnapshot {
    pub feature_set: String,
    pub feature_set_name: Option<String>,
    /// The set's definition (JSON), to name the values.
    pub definition: Option<String>,
    pub as_of: i64,
    pub values_json: String,
    pub label: Option<f64>,
    pub label_complete: bool,
}

/// A decision on one of the person's suggestions.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectDecision {
    pub suggestion_id: String,
    pub outcome: String,
    pub reason_code: String,
    pub note: String,
    pub decided_by: String,
    pub decided_at: String,
}

/// Everything held about one person.
#[derive(Clone, Debug, Default)]
pub struct SubjectData {
    /// `None` when the store holds no person with the pseudonym.
    pub person: Option<SubjectPerson>,
    pub events: Vec<SubjectEvent>,
    pub residences: Vec<SubjectResidence>,
    pub relations: Vec<SubjectRelation>,
    pub protected: Vec<(String, String)>,
    pub snapshots: Vec<SubjectSnapshot>,
    pub suggestions: Vec<StoredSuggestion>,
    pub decisions: Vec<SubjectDecision>,
    pub objection: Option<ObjectionRow>,
}

type EventRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// What the store holds about the pass's subject (a pseudonym).
    pub async fn subject_data(&self, pass: &AccessPass) -> Result<SubjectData, StoreError> {
        let Some(pseudonym) = pass.subject() else {
            return Ok(SubjectData::default());
        };
        type PersonRow = (i64, String, Option<i64>, Option<String>, Option<i64>);
        let person: Option<PersonRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id, scheme, birth_date, sex, death_date FROM persons WHERE pseudonym = $1"
        )
        .bind(pseudonym)
        .fetch_optional(p)
        .await?);
        let mut out = SubjectData {
            objection: self.objection_of(pseudonym).await?,
            ..SubjectData::default()
        };
        // Suggestions carry the pseudonym: they stay readable even for a person whose
        // registry rows are gone.
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM suggestions s WHERE s.pseudonym = $1 \
             ORDER BY s.as_of, s.created_at, s.id"
        );
        let rows: Vec<StoredRow> = fetch_all!(self, StoredRow, &sql, pseudonym);
        out.suggestions = rows.into_iter().map(stored).collect::<Result<_, _>>()?;
        let decisions: Vec<(String, String, String, String, String, String)> = fetch_all!(
            self,
            (String, String, String, String, String, String),
            "SELECT d.suggestion_id, d.outcome, d.reason_code, d.note, d.decided_by, d.decided_at \
             FROM decisions d JOIN suggestions s ON s.id = d.suggestion_id \
             WHERE s.pseudonym = $1 ORDER BY d.decided_at, d.id",
            pseudonym
        );
        out.decisions = decisions
            .into_iter()
            .map(|d| SubjectDecision {
                suggestion_id: d.0,
                outcome: d.1,
                reason_code: d.2,
                note: d.3,
                decided_by: d.4,
                decided_at: d.5,
            })
            .collect();
        let Some((id, scheme, birth_date, sex, death_date)) = person else {
            return Ok(out);
        };
        out.person = Some(SubjectPerson {
            id,
            scheme,
            birth_date,
            sex,
            death_date,
        });
        let loaded = |file: Option<String>, at: Option<String>| Loaded {
            file,
            loaded_at: at,
        };
        let events: Vec<EventRow> = fetch_all!(
            self,
            EventRow,
            "SELECT e.kind, c.system, c.code, d.system, d.code, e.status, e.start_time, \
                    e.end_time, e.value, r.file, r.started_at \
             FROM events e JOIN codes c ON c.id = e.code_id \
             LEFT JOIN codes d ON d.id = e.detail_id \
             LEFT JOIN ingest_runs r ON r.id = e.run_id \
             WHERE e.person_id = $1 ORDER BY e.start_time, e.record_key",
            id
        );
        out.events = events
            .into_iter()
            .map(|e| SubjectEvent {
                kind: e.0,
                code_system: e.1,
                code: e.2,
                detail: e.3.zip(e.4),
                status: e.5,
                start: e.6,
                end: e.7,
                value: e.8,
                loaded: loaded(e.9, e.10),
            })
            .collect();
        type ResidenceRow = (
            i64,
            Option<i64>,
            String,
            Option<String>,
            i64,
            Option<String>,
            Option<String>,
        );
        let residences: Vec<ResidenceRow> = fetch_all!(
            self,
            ResidenceRow,
            "SELECT r.valid_from, r.valid_to, r.municipality, r.postcode, \
                    CAST(CASE WHEN r.household_key IS NULL THEN 0 ELSE 1 END AS BIGINT), \
                    i.file, i.started_at \
             FROM residences r LEFT JOIN ingest_runs i ON i.id = r.run_id \
             WHERE r.person_id = $1 ORDER BY r.valid_from, r.record_key",
            id
        );
        out.residences = residences
            .into_iter()
            .map(|r| SubjectResidence {
                valid_from: r.0,
                valid_to: r.1,
                municipality: r.2,
                postcode: r.3,
                household_recorded: r.4 != 0,
                loaded: loaded(r.5, r.6),
            })
            .collect();
        type RelationRow = (
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let relations: Vec<RelationRow> = fetch_all!(
            self,
            RelationRow,
            "SELECT CAST(CASE WHEN x.child_id = $1 THEN 1 ELSE 0 END AS BIGINT), x.relation, \
                    x.valid_from, x.valid_to, i.file, i.started_at \
             FROM relations x LEFT JOIN ingest_runs i ON i.id = x.run_id \
             WHERE x.child_id = $1 OR x.parent_id = $1 \
             ORDER BY x.valid_from, x.record_key",
            id
        );
        out.relations = relations
            .into_iter()
            .map(|r| SubjectRelation {
                as_child: r.0 != 0,
                relation: r.1,
                valid_from: r.2,
                valid_to: r.3,
                loaded: loaded(r.4, r.5),
            })
            .collect();
        out.protected = fetch_all!(
            self,
            (String, String),
            "SELECT attribute, value FROM protected_attributes WHERE person_id = $1 \
             ORDER BY attribute",
            id
        );
        type SnapshotRow = (
            String,
            Option<String>,
            Option<String>,
            i64,
            String,
            Option<f64>,
            i64,
        );
        let snapshots: Vec<SnapshotRow> = fetch_all!(
            self,
            SnapshotRow,
            "SELECT f.feature_set, s.name, s.definition, f.as_of, f.vals, f.label, \
                    f.label_complete \
             FROM feature_vectors f LEFT JOIN feature_sets s ON s.hash = f.feature_set \
             WHERE f.person_id = $1 ORDER BY f.as_of, f.feature_set",
            id
        );
        out.snapshots = snapshots
            .into_iter()
            .map(|s| SubjectSnapshot {
                feature_set: s.0,
                feature_set_name: s.1,
                definition: s.2,
                as_of: s.3,
                values_json: s.4,
                label: s.5,
                label_complete: s.6 != 0,
            })
            .collect();
        Ok(out)
    }
}
