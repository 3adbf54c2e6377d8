//! The population aggregate: persons, residences, relations, protected attributes,
//! objections and active cases, read as they stood on a date. Dates are days since the
//! epoch, instants seconds since the epoch (the stored forms).

use std::collections::{HashMap, HashSet};

use super::{AppendAudit, Store, StoreError};
use crate::access::AccessPass;
use crate::domain::SuggestionStatus;

/// A person's birth and death dates (days since the epoch), where known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersonDates {
    pub birth: Option<i64>,
    pub death: Option<i64>,
}

/// Where a person lived on a date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Residence {
    pub person: i64,
    pub municipality: String,
    pub postcode: Option<String>,
    pub household: Option<i64>,
}

/// An `objections` row as read: pseudonym, reference, registered at/by, withdrawn
/// at/by/reference.
type ObjectionTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn objection_row(r: ObjectionTuple) -> ObjectionRow {
    ObjectionRow {
        pseudonym: r.0,
        reference: r.1,
        registered_at: r.2,
        registered_by: r.3,
        withdrawn_at: r.4,
        withdrawn_by: r.5,
        withdrawn_reference: r.6,
    }
}

impl Store {
    /// Every person's birth and death dates.
    pub async fn person_dates(&self) -> Result<HashMap<i64, PersonDates>, StoreError> {
        let rows = fetch_all_packed!(
            self,
            (i64, Option<i64>, Option<i64>),
            "id, birth_date, death_date",
            "FROM persons"
        );
        Ok(rows
            .into_iter()
            .map(|(id, birth, death)| (id, PersonDates { birth, death }))
            .collect())
    }

    /// Every person's birth date (days since the epoch), where known.
    pub async fn births(&self) -> Result<HashMap<i64, i64>, StoreError> {
        Ok(self
            .person_dates()
            .await?
            .into_iter()
            .filter_map(|(id, d)| d.birth.map(|b| (id, b)))
            .collect())
    }

    /// Every person's recorded sex (`F`, `M`).
    pub async fn sexes(&self) -> Result<HashMap<i64, String>, StoreError> {
        let rows = fetch_all_packed!(
            self,
            (i64, String),
            "id, sex",
            "FROM persons WHERE sex IS NOT NULL"
        );
        Ok(rows.into_iter().collect())
    }

    /// The residences valid on `day`, in (person, valid from, record) order: the last
    /// one per person wins when residences overlap.
    pub async fn residences_on(&self, day: i64) -> Result<Vec<Residence>, StoreError> {
        let rows = fetch_all_packed!(
            self,
            (i64, String, Option<String>, Option<i64>),
            "person_id, municipality, postcode, household_key",
            "FROM residences WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1) \
             ORDER BY person_id, valid_from, record_key",
            day
        );
        Ok(rows
            .into_iter()
            .map(|(person, municipality, postcode, household)| Residence {
                person,
                municipality,
                postcode,
                household,
            })
            .collect())
    }

    /// The parent–child relations valid on `day`: (child, parent, relation as stored).
    pub async fn relations_on(&self, day: i64) -> Result<Vec<(i64, i64, String)>, StoreError> {
        Ok(fetch_all_packed!(
            self,
            (i64, i64, String),
            "child_id, parent_id, relation",
            "FROM relations \
             WHERE (valid_from IS NULL OR valid_from <= $1) AND (valid_to IS NULL OR valid_to > $1) \
             ORDER BY child_id, parent_id, relation",
            day
        ))
    }

    /// Residence starts in `(after, up_to]` (days): (person, valid from).
    pub async fn moves_between(
        &self,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(fetch_all_packed!(
            self,
            (i64, i64),
            "person_id, valid_from",
            "FROM residences WHERE valid_from > $1 AND valid_from <= $2",
            after,
            up_to
        ))
    }

    /// The protected attributes (`attribute → value`) of the persons in `of`.
    pub async fn protected_attributes(
        &self,
        of: &HashSet<i64>,
    ) -> Result<HashMap<i64, Vec<(String, String)>>, StoreError> {
        let mut out: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        let rows: Vec<(i64, String, String)> = match self {
            // In slices of the table, each packed by SQLite and kept only for the persons
            // asked for: a whole population's rows at once would be a JSON text and a
            // vector several times the size of what is kept.
            Store::Sqlite(_) => {
                const SLICE: i64 = 65_536;
                let last: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(
                    "SELECT max(rowid) FROM protected_attributes"
                )
                .fetch_one(p)
                .await?);
                let mut kept = Vec::new();
                let mut from = 0;
                while from <= last.unwrap_or(-1) {
                    let slice = fetch_all_packed!(
                        self,
                        (i64, String, String),
                        "person_id, attribute, value",
                        "FROM protected_attributes WHERE rowid >= $1 AND rowid < $2",
                        from,
                        from + SLICE
                    );
                    kept.extend(slice.into_iter().filter(|r| of.contains(&r.0)));
                    from += SLICE;
                }
                kept
            }
            Store::Postgres(p) => {
                sqlx::query_as(
                    "SELECT person_id, attribute, value FROM protected_attributes \
                     WHERE person_id = ANY($1)",
                )
                .bind(of.iter().copied().collect::<Vec<i64>>())
                .fetch_all(p)
                .await?
            }
        };
        for (pid, attribute, value) in rows {
            out.entry(pid).or_default().push((attribute, value));
        }
        Ok(out)
    }

    /// Persons with an active objection (GDPR Art 21): never scored, never trained on.
    pub async fn objectors(&self) -> Result<HashSet<i64>, StoreError> {
        let ids: Vec<i64> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT p.id FROM objections o JOIN persons p ON p.pseudonym = o.pseudonym \
             WHERE o.withdrawn_at IS NULL"
        )
        .fetch_all(p)
        .await?);
        Ok(ids.into_iter().collect())
    }

    /// Registers an objection of a stored person without a reference (idempotent): the
    /// fixture path of tests.
    pub async fn add_objection(&self, person: i64, at: &str) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO objections (pseudonym, reference, registered_at, registered_by, \
                 audit_seq) SELECT pseudonym, '', $2, '', 0 FROM persons WHERE id = $1 \
                 ON CONFLICT (pseudonym) DO NOTHING",
            )
            .bind(person)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    /// Registers (`active`) or withdraws the objection of the pass's person with the
    /// pass's audit entry, in one transaction. Registering withdraws the person's open
    /// suggestions (status `withdrawn`; their ids go into the entry); registering an
    /// active objection or withdrawing none changes nothing but is recorded.
    pub async fn set_objection(
        &self,
        pass: &AccessPass,
        active: bool,
        reference: &str,
        at: &str,
    ) -> Result<ObjectionChange, StoreError> {
        let Some(pseudonym) = pass.subject() else {
            return Err(StoreError::Corrupt {
                what: "objection pass",
                value: "names no person".into(),
            });
        };
        let by = pass.principal().id();
        Ok(in_write_tx!(self, |tx| {
            let before: Option<(Option<String>,)> =
                sqlx::query_as("SELECT withdrawn_at FROM objections WHERE pseudonym = $1")
                    .bind(pseudonym)
                    .fetch_optional(&mut *tx)
                    .await?;
            let was_active = matches!(before, Some((None,)));
            let changed = was_active != active;
            let mut withdrawn: Vec<String> = Vec::new();
            if changed && active {
                withdrawn = sqlx::query_scalar(
                    "UPDATE suggestions SET status = $1 WHERE status = $2 AND person_id IN \
                     (SELECT id FROM persons WHERE pseudonym = $3) RETURNING id",
                )
                .bind(SuggestionStatus::Withdrawn.as_str())
                .bind(SuggestionStatus::Open.as_str())
                .bind(pseudonym)
                .fetch_all(&mut *tx)
                .await?;
                withdrawn.sort();
            }
            let details = serde_json::json!({
                "changed": changed,
                "reference": reference,
                "withdrawn_suggestions": withdrawn,
            });
            let seq = match pass.pending_record(details) {
                Some(r) => tx.append_audit(std::slice::from_ref(&r)).await?[0],
                None => 0,
            };
            if changed && active {
                sqlx::query(
                    "INSERT INTO objections (pseudonym, reference, registered_at, \
                     registered_by, audit_seq) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (pseudonym) DO UPDATE SET reference = excluded.reference, \
                     registered_at = excluded.registered_at, \
                     registered_by = excluded.registered_by, audit_seq = excluded.audit_seq, \
                     withdrawn_at = NULL, withdrawn_by = NULL, withdrawn_reference = NULL",
                )
                .bind(pseudonym)
                .bind(reference)
                .bind(at)
                .bind(by)
                .bind(seq as i64)
                .execute(&mut *tx)
                .await?;
            } else if changed {
                sqlx::query(
                    "UPDATE objections SET withdrawn_at = $2, withdrawn_by = $3, \
                     withdrawn_reference = $4 WHERE pseudonym = $1",
                )
                .bind(pseudonym)
                .bind(at)
                .bind(by)
                .bind(reference)
                .execute(&mut *tx)
                .await?;
            }
            ObjectionChange {
                pseudonym: pseudonym.to_string(),
                changed,
                withdrawn_suggestions: withdrawn,
                audit_seq: seq,
            }
        }))
    }

    /// The objection register's row for one pseudonym, if any.
    pub(super) async fn objection_of(
        &self,
        pseudonym: &str,
    ) -> Result<Option<ObjectionRow>, StoreError> {
        let row: Option<ObjectionTuple> = on_pool!(self, |p| sqlx::query_as(
            "SELECT pseudonym, reference, registered_at, registered_by, withdrawn_at, \
             withdrawn_by, withdrawn_reference FROM objections WHERE pseudonym = $1"
        )
        .bind(pseudonym)
        .fetch_optional(p)
        .await?);
        Ok(row.map(objection_row))
    }

    /// The objection register, newest first. Takes the access check's pass: the
    /// register is personal data (whoever holds a person's national ID can find them).
    pub async fn objections(&self, _pass: &AccessPass) -> Result<Vec<ObjectionRow>, StoreError> {
        let rows: Vec<ObjectionTuple> = fetch_all!(
            self,
            ObjectionTuple,
            "SELECT pseudonym, reference, registered_at, registered_by, withdrawn_at, \
             withdrawn_by, withdrawn_reference FROM objections \
             ORDER BY registered_at DESC, pseudonym"
        );
        Ok(rows.into_iter().map(objection_row).collect())
    }

    /// Persons with a social-services case of `category` active at `instant` (seconds):
    /// started by then and ended at or after it, or without an end and started within
    /// `open_secs` before it.
    pub async fn active_case_persons(
        &self,
        category: &str,
        instant: i64,
        open_secs: i64,
    ) -> Result<HashSet<i64>, StoreError> {
        let ids: Vec<i64> = on_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT DISTINCT e.person_id FROM events e JOIN codes c ON c.id = e.code_id \
                 WHERE e.kind = $1 AND c.system = $2 AND c.code = $3 \
                 AND e.start_time <= $4 AND (e.end_time >= $4 OR (e.end_time IS NULL AND e.start_time > $5))",
            )
            .bind(tidig_connectors::record::EventKind::SocialCase.code())
            .bind(tidig_connectors::social::CATEGORY_SYSTEM)
            .bind(category)
            .bind(instant)
            .bind(instant - open_secs)
            .fetch_all(p)
            .await?
        });
        Ok(ids.into_iter().collect())
    }
}

/// What registering or withdrawing an objection came to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectionChange {
    /// The person's pseudonym.
    pub pseudonym: String,
    pub changed: bool,
    /// The person's suggestions withdrawn by the registration.
    pub withdrawn_suggestions: Vec<String>,
    /// The audit entry of this call.
    pub audit_seq: u64,
}

/// One objection of the register.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectionRow {
    pub pseudonym: String,
    pub reference: String,
    pub registered_at: String,
    pub registered_by: String,
    /// Set once withdrawn; the objection no longer applies.
    pub withdrawn_at: Option<String>,
    pub withdrawn_by: Option<String>,
    pub withdrawn_reference: Option<String>,
}
