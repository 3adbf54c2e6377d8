//! The feature aggregate: the code list, events streamed by time window, and the stored
//! feature vectors with their builds.

use std::collections::BTreeMap;

use tidig_governance::audit::Record;

use super::audit::AppendAudit;
use super::{Backend, Store, StoreError};

/// One event as the feature build reads it.
#[derive(Clone, Copy, Debug, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub person_id: i64,
    pub kind: i64,
    pub code_id: i64,
    pub detail_id: Option<i64>,
    pub status: i64,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub value: Option<f64>,
}

/// Rowids per chunk of the SQLite event scan, and chunks read ahead of the one consumed.
const EVENT_CHUNK: i64 = 8192;
const EVENTS_AHEAD: usize = 2;

/// A chunk of events in one row: how many, and the events as lines of
/// `person,kind,code,detail,status,start,end,value` (empty where NULL). The value has 17
/// significant digits (`%!.17g`: SQLite's own text for a REAL has 15), which read back as
/// the same double.
const EVENT_CHUNK_SQLITE: &str = "SELECT count(*), group_concat(\
    person_id || ',' || kind || ',' || code_id || ',' || ifnull(detail_id, '') || ',' || \
    status || ',' || start_time || ',' || ifnull(end_time, '') || ',' || \
    CASE WHEN value IS NULL THEN '' ELSE printf('%!.17g', value) END, char(10)) \
    FROM (SELECT * FROM events WHERE id >= $1 AND id < $2 AND start_time > $3 \
    AND start_time <= $4 ORDER BY id)";

/// Reads the lines of one chunk into `each`; how many, or `None` when a line is not what
/// [`EVENT_CHUNK_SQLITE`] writes.
fn unpack_events(text: &str, each: &mut impl FnMut(EventRow)) -> Option<usize> {
    fn int(f: &str) -> Option<i64> {
        f.parse().ok()
    }
    fn opt<T: std::str::FromStr>(f: &str) -> Option<Option<T>> {
        if f.is_empty() {
            Some(None)
        } else {
            f.parse().ok().map(Some)
        }
    }
    let mut n = 0;
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let mut f = line.split(',');
        let mut next = || f.next();
        let row = EventRow {
            person_id: int(next()?)?,
            kind: int(next()?)?,
            code_id: int(next()?)?,
            detail_id: opt(next()?)?,
            status: int(next()?)?,
            start_time: int(next()?)?,
            end_time: opt(next()?)?,
            value: opt(next()?)?,
        };
        if next().is_some() {
            return None;
        }
        each(row);
        n += 1;
    }
    Some(n)
}

/// One feature vector to store: values, protected attributes and label, as JSON text.
#[derive(Clone, Debug)]
pub struct VectorRow {
    pub person: i64,
    pub values_json: String,
    pub protected_json: String,
    pub label: Option<f64>,
}

/// A stored vector, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVector {
    pub values: Vec<Option<f64>>,
    pub protected: BTreeMap<String, Option<String>>,
    pub label: Option<f64>,
}

/// The record of one feature build.
#[derive(Clone, Debug)]
pub struct BuildRecord<'a> {
    pub feature_set: &'a str,
    pub day: i64,
    pub persons: i64,
    pub built_at: &'a str,
    pub report_json: &'a str,
}

impl Store {
    /// Every code: (id, system, code).
    pub async fn codes(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(fetch_all!(
            self,
            (i64, String, String),
            "SELECT id, system, code FROM codes"
        ))
    }

    /// Streams the events that start in `(after, up_to]` (seconds) through `each`,
    /// without holding them. On SQLite, in the table's order.
    pub async fn for_each_event(
        &self,
        after: i64,
        up_to: i64,
        mut each: impl FnMut(EventRow),
    ) -> Result<(), StoreError> {
        if let Store::Sqlite(_) = self {
            return self.for_each_event_packed(after, up_to, each).await;
        }
        self.for_each_event_row(after, up_to, &mut each).await
    }

    /// The same, a row at a time through the driver (PostgreSQL streams these; on SQLite
    /// the reference the packed scan is tested against).
    pub(crate) async fn for_each_event_row(
        &self,
        after: i64,
        up_to: i64,
        each: &mut impl FnMut(EventRow),
    ) -> Result<(), StoreError> {
        for_each_row!(
            self,
            EventRow,
            "SELECT person_id, kind, code_id, detail_id, status, start_time, end_time, value \
             FROM events WHERE start_time > $1 AND start_time <= $2",
            [after, up_to],
            |row| {
                each(row);
            }
        );
        Ok(())
    }

    /// SQLite: chunks of the table by rowid, each one row of text that SQLite builds
    /// (see [`EVENT_CHUNK_SQLITE`]), read two ahead of the one being consumed on the
    /// reader connections. sqlx hands SQLite rows over one at a time from the
    /// connection's worker thread, which cost as much as the whole feature computation.
    async fn for_each_event_packed(
        &self,
        after: i64,
        up_to: i64,
        mut each: impl FnMut(EventRow),
    ) -> Result<(), StoreError> {
        let (first, last): (Option<i64>, Option<i64>) = on_pool!(self, |p| sqlx::query_as(
            "SELECT min(id), max(id) FROM events"
        )
        .fetch_one(p)
        .await?);
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(());
        };
        let end = last.saturating_add(1);
        let mut ahead = std::collections::VecDeque::new();
        let mut next = first;
        let fetch = |ahead: &mut std::collections::VecDeque<_>, next: &mut i64| {
            while ahead.len() < EVENTS_AHEAD && *next < end {
                let to = next.saturating_add(EVENT_CHUNK).min(end);
                let (store, from) = (self.clone(), *next);
                ahead.push_back(tokio::spawn(async move {
                    let raw: (i64, Option<String>) =
                        on_pool!(&store, |p| sqlx::query_as(EVENT_CHUNK_SQLITE)
                            .bind(from)
                            .bind(to)
                            .bind(after)
                            .bind(up_to)
                            .fetch_one(p)
                            .await?);
                    Ok::<_, StoreError>(raw)
                }));
                *next = to;
            }
        };
        fetch(&mut ahead, &mut next);
        while let Some(task) = ahead.pop_front() {
            let (count, text) = task
                .await
                .map_err(|_| StoreError::Sql(sqlx::Error::WorkerCrashed))??;
            fetch(&mut ahead, &mut next);
            let text = text.unwrap_or_default();
            let read = unpack_events(&text, &mut each);
            if read != Some(count as usize) {
                return Err(StoreError::Corrupt {
                    what: "event chunk",
                    value: format!("{count} rows, read {read:?}"),
                });
            }
        }
        // The scan filled both readers' page caches with pages read once; SQLite gives
        // them back, so that the memory serves what the build does next instead of
        // adding to its peak.
        if let Store::Sqlite(s) = self {
            let mut idle = Vec::new();
            while let Some(c) = s.read.try_acquire() {
                idle.push(c);
            }
            for c in &mut idle {
                sqlx::query("PRAGMA shrink_memory")
                    .execute(&mut **c)
                    .await?;
            }
        }
        Ok(())
    }

    /// The start of the latest event (seconds), if any: how far the data reach.
    pub async fn latest_event_time(&self) -> Result<Option<i64>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT MAX(start_time) FROM events"
        )
        .fetch_one(p)
        .await?))
    }

    /// Replaces the vectors of (`version`, `day`) with `rows` and registers the set's
    /// definition, in one transaction.
    #[expect(
        clippy::too_many_arguments,
        reason = "one row of the feature_sets table and the vectors that belong to it"
    )]
    pub async fn replace_vectors(
        &self,
        version: &str,
        name: &str,
        definition_json: &str,
        created_at: &str,
        day: i64,
        label_complete: bool,
        rows: &[VectorRow],
        audit: &Record,
    ) -> Result<(), StoreError> {
        let complete = label_complete as i64;
        let backend = self.backend();
        let row_sql = |o: usize| match backend {
            Backend::Sqlite => "(?,?,?,?,?,?,?)".to_string(),
            Backend::Postgres => format!(
                "(${},${},${},${},${},${},${})",
                o + 1,
                o + 2,
                o + 3,
                o + 4,
                o + 5,
                o + 6,
                o + 7
            ),
        };
        in_write_tx!(self, |tx| {
            sqlx::query("INSERT INTO feature_sets (hash, name, definition, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING")
                .bind(version).bind(name).bind(definition_json).bind(created_at)
                .execute(&mut *tx).await?;
            sqlx::query("DELETE FROM feature_vectors WHERE feature_set = $1 AND as_of = $2")
                .bind(version)
                .bind(day)
                .execute(&mut *tx)
                .await?;
            for chunk in rows.chunks(500) {
                let mut sql = String::from("INSERT INTO feature_vectors (feature_set, as_of, person_id, vals, protected, label, label_complete) VALUES ");
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&row_sql(i * 7));
                }
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(version)
                        .bind(day)
                        .bind(r.person)
                        .bind(&r.values_json)
                        .bind(&r.protected_json)
                        .bind(r.label)
                        .bind(complete);
                }
                q.execute(&mut *tx).await?;
            }
            tx.append_audit(std::slice::from_ref(audit)).await?;
        });
        Ok(())
    }

    /// Records (or replaces) the record of a build.
    pub async fn record_build(&self, b: &BuildRecord<'_>) -> Result<(), StoreError> {
        let sql = "INSERT INTO feature_builds (feature_set, as_of, persons, built_at, report) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (feature_set, as_of) DO UPDATE SET persons = excluded.persons, \
                   built_at = excluded.built_at, report = excluded.report";
        on_pool!(self, |p| {
            sqlx::query(sql)
                .bind(b.feature_set)
                .bind(b.day)
                .bind(b.persons)
                .bind(b.built_at)
                .bind(b.report_json)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The stored vectors of one build: person → vector.
    pub async fn vectors(
        &self,
        version: &str,
        day: i64,
    ) -> Result<BTreeMap<i64, StoredVector>, StoreError> {
        let rows: Vec<(i64, String, String, Option<f64>)> = fetch_all!(
            self,
            (i64, String, String, Option<f64>),
            "SELECT person_id, vals, protected, label FROM feature_vectors WHERE feature_set = $1 AND as_of = $2",
            version,
            day
        );
        let mut out = BTreeMap::new();
        for (pid, vals, prot, label) in rows {
            let corrupt = |what: &'static str, text: &str| StoreError::Corrupt {
                what,
                value: text.chars().take(40).collect(),
            };
            out.insert(
                pid,
                StoredVector {
                    values: serde_json::from_str(&vals)
                        .map_err(|_| corrupt("feature vector", &vals))?,
                    protected: serde_json::from_str(&prot)
                        .map_err(|_| corrupt("protected attributes", &prot))?,
                    label,
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed scan reads back exactly what the driver reads row by row: every
    /// integer, every NULL and every double bit for bit (values SQLite's own REAL text
    /// would round), across chunk boundaries and rowid gaps, and only the window asked.
    #[tokio::test]
    async fn the_packed_event_scan_reads_exactly_the_rows_the_driver_reads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        let Store::Sqlite(s) = &store else {
            unreachable!("a sqlite:// url opens SQLite")
        };
        let values = [
            0.1,
            1.0 / 3.0,
            52.3,
            -0.0,
            1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            123_456_789.123_456_79,
            2.0f64.powi(60) + 2048.0,
        ];
        let mut tx = s.write.begin().await.unwrap();
        // Three chunks and a half, with a gap of rowids in the middle.
        let n = EVENT_CHUNK * 3 + EVENT_CHUNK / 2;
        for i in 0..n {
            let id = if i < EVENT_CHUNK {
                i + 1
            } else {
                i + 1 + 3 * EVENT_CHUNK
            };
            let value = (i % 5 != 0).then(|| values[i as usize % values.len()] * (i as f64));
            sqlx::query(
                "INSERT INTO events (id, record_key, person_id, kind, code_id, detail_id, \
                 status, start_time, end_time, value, run_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)",
            )
            .bind(id)
            .bind(i * 7919)
            .bind(i64::MAX - i)
            .bind(i % 6)
            .bind(-(i * 31))
            .bind((i % 3 == 0).then_some(i))
            .bind(i % 2)
            .bind(1_000_000 + (i * 37) % 50_000)
            .bind((i % 4 == 0).then_some(2_000_000 + i))
            .bind(value)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let (after, up_to) = (1_010_000, 1_040_000);
        let mut packed = Vec::new();
        store
            .for_each_event_packed(after, up_to, |r| packed.push(r))
            .await
            .unwrap();
        let mut rows = Vec::new();
        store
            .for_each_event_row(after, up_to, &mut |r| rows.push(r))
            .await
            .unwrap();
        assert!(rows.len() > EVENT_CHUNK as usize, "{}", rows.len());
        assert!(rows.len() < n as usize);
        assert_eq!(packed.len(), rows.len());
        for (p, r) in packed.iter().zip(&rows) {
            assert_eq!(p, r);
            assert_eq!(
                p.value.map(f64::to_bits),
                r.value.map(f64::to_bits),
                "{:?}",
                r.value
            );
        }
        assert!(packed.iter().any(|r| r.value.is_none()));
        assert!(packed.iter().any(|r| r.detail_id.is_none()));
        assert!(packed.iter().any(|r| r.end_time.is_some()));
    }

    #[test]
    fn a_chunk_line_that_is_not_what_the_query_writes_is_refused() {
        let mut seen = 0;
        let mut count = |_: EventRow| seen += 1;
        assert_eq!(
            unpack_events("1,2,3,,0,5,,\n1,2,3,4,1,5,6,0.5", &mut count),
            Some(2)
        );
        assert_eq!(unpack_events("1,2,3,,0,5,", &mut count), None);
        assert_eq!(unpack_events("1,2,3,,0,5,,,9", &mut count), None);
        assert_eq!(unpack_events("1,2,x,,0,5,,", &mut count), None);
        assert_eq!(unpack_events("", &mut count), Some(0));
    }
}
