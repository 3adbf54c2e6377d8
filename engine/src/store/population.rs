//! The population aggregate: persons, residences, relations, protected attributes,
//! objections and active cases, read as they stood on a date. Dates are days since the
//! epoch, instants seconds since the epoch (the stored forms).

use std::collections::{HashMap, HashSet};

use super::{Store, StoreError};

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

impl Store {
    /// Every person's birth and death dates.
    pub async fn person_dates(&self) -> Result<HashMap<i64, PersonDates>, StoreError> {
        let mut out = HashMap::new();
        for_each_row!(
            self,
            (i64, Option<i64>, Option<i64>),
            "SELECT id, birth_date, death_date FROM persons",
            [],
            |(id, birth, death)| {
                out.insert(id, PersonDates { birth, death });
            }
        );
        Ok(out)
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
        let mut out = HashMap::new();
        for_each_row!(
            self,
            (i64, Option<String>),
            "SELECT id, sex FROM persons",
            [],
            |(id, sex)| {
                if let Some(sex) = sex {
                    out.insert(id, sex);
                }
            }
        );
        Ok(out)
    }

    /// The residences valid on `day`, in (person, valid from, record) order: the last
    /// one per person wins when residences overlap.
    pub async fn residences_on(&self, day: i64) -> Result<Vec<Residence>, StoreError> {
        let rows: Vec<(i64, String, Option<String>, Option<i64>)> = fetch_all!(
            self,
            (i64, String, Option<String>, Option<i64>),
            "SELECT person_id, municipality, postcode, household_key FROM residences \
             WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1) \
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
        Ok(fetch_all!(
            self,
            (i64, i64, String),
            "SELECT child_id, parent_id, relation FROM relations \
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
        Ok(fetch_all!(
            self,
            (i64, i64),
            "SELECT person_id, valid_from FROM residences WHERE valid_from > $1 AND valid_from <= $2",
            after,
            up_to
        ))
    }

    /// The protected attributes (`attribute → value`) of the persons in `of`, streamed.
    pub async fn protected_attributes(
        &self,
        of: &HashSet<i64>,
    ) -> Result<HashMap<i64, Vec<(String, String)>>, StoreError> {
        let mut out: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for_each_row!(
            self,
            (i64, String, String),
            "SELECT person_id, attribute, value FROM protected_attributes",
            [],
            |(pid, attribute, value)| {
                if of.contains(&pid) {
                    out.entry(pid).or_default().push((attribute, value));
                }
            }
        );
        Ok(out)
    }

    /// Persons who objected (GDPR Art 21): never scored, never trained on.
    pub async fn objectors(&self) -> Result<HashSet<i64>, StoreError> {
        let ids: Vec<i64> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT person_id FROM objections"
        )
        .fetch_all(p)
        .await?);
        Ok(ids.into_iter().collect())
    }

    /// Registers an objection (idempotent).
    pub async fn add_objection(&self, person: i64, at: &str) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO objections (person_id, registered_at) VALUES ($1, $2) \
                 ON CONFLICT (person_id) DO NOTHING",
            )
            .bind(person)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map(|_| ())?
        });
        Ok(())
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
