//! The permit register: every registration, amendment and revocation of a secondary-use
//! permit as a new version, with the audit entry that records it appended in the same
//! transaction. Nothing is updated or deleted.

use super::{AppendAudit, Store, StoreError};
use crate::access::AccessPass;

/// A change to the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermitChangeKind {
    Registered,
    Amended,
    Revoked,
}

impl PermitChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PermitChangeKind::Registered => "registered",
            PermitChangeKind::Amended => "amended",
            PermitChangeKind::Revoked => "revoked",
        }
    }
}

/// One version of a permit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PermitRow {
    pub id: String,
    pub version: i64,
    /// The permit's JSON.
    pub definition: String,
    /// `registered`, `amended` or `revoked`.
    pub change: String,
    pub reason: Option<String>,
    pub recorded_at: String,
    pub recorded_by: String,
    pub audit_seq: i64,
}

impl PermitRow {
    pub fn revoked(&self) -> bool {
        self.change == PermitChangeKind::Revoked.as_str()
    }
}

/// What a change came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermitWritten {
    Done(PermitRow),
    /// Registering an id that is registered already.
    Exists,
    /// Amending or revoking an id that is not registered.
    Missing,
    /// Amending or revoking a revoked permit.
    Revoked,
}

type Row = (
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
);

const COLUMNS: &str =
    "id, version, definition, change, reason, recorded_at, recorded_by, audit_seq";

fn row(r: Row) -> PermitRow {
    PermitRow {
        id: r.0,
        version: r.1,
        definition: r.2,
        change: r.3,
        reason: r.4,
        recorded_at: r.5,
        recorded_by: r.6,
        audit_seq: r.7,
    }
}

impl Store {
    /// Records a change of permit `id` under the access check's pass (its entry is
    /// appended here, with the version, in the same transaction). A concurrent change of
    /// the same permit makes one of them fail on the version key.
    pub async fn change_permit(
        &self,
        pass: &AccessPass,
        id: &str,
        kind: PermitChangeKind,
        definition: &str,
        reason: Option<&str>,
        at: &str,
    ) -> Result<PermitWritten, StoreError> {
        let latest =
            format!("SELECT {COLUMNS} FROM permits WHERE id = $1 ORDER BY version DESC LIMIT 1");
        Ok(in_write_tx!(self, |tx| {
            let current: Option<Row> = sqlx::query_as(&latest)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let current = current.map(row);
            let refused = match (&current, kind) {
                (Some(_), PermitChangeKind::Registered) => Some(PermitWritten::Exists),
                (None, PermitChangeKind::Amended | PermitChangeKind::Revoked) => {
                    Some(PermitWritten::Missing)
                }
                (Some(c), PermitChangeKind::Amended | PermitChangeKind::Revoked) if c.revoked() => {
                    Some(PermitWritten::Revoked)
                }
                _ => None,
            };
            match refused {
                Some(r) => r,
                None => {
                    let version = current.map_or(1, |c| c.version + 1);
                    let seq = match pass.pending_record(serde_json::json!({
                        "permit": id, "version": version, "change": kind.as_str(),
                    })) {
                        Some(r) => tx.append_audit(std::slice::from_ref(&r)).await?[0],
                        None => 0,
                    };
                    let by = pass.principal().id().to_string();
                    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
                    sqlx::query(
                        "INSERT INTO permits (id, version, definition, change, reason, recorded_at, recorded_by, audit_seq) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(definition)
                    .bind(kind.as_str())
                    .bind(reason)
                    .bind(at)
                    .bind(&by)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                    PermitWritten::Done(PermitRow {
                        id: id.into(),
                        version,
                        definition: definition.into(),
                        change: kind.as_str().into(),
                        reason: reason.map(Into::into),
                        recorded_at: at.into(),
                        recorded_by: by,
                        audit_seq: seq,
                    })
                }
            }
        }))
    }

    /// Every permit as it stands (its newest version), by id.
    pub async fn permits(&self, _pass: &AccessPass) -> Result<Vec<PermitRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM permits p WHERE version = \
             (SELECT max(version) FROM permits q WHERE q.id = p.id) ORDER BY id"
        );
        let rows: Vec<Row> = fetch_all!(self, Row, &sql);
        Ok(rows.into_iter().map(row).collect())
    }

    /// Every version of one permit, oldest first (empty when it is not registered).
    pub async fn permit_history(
        &self,
        _pass: &AccessPass,
        id: &str,
    ) -> Result<Vec<PermitRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM permits WHERE id = $1 ORDER BY version");
        let rows: Vec<Row> = fetch_all!(self, Row, &sql, id);
        Ok(rows.into_iter().map(row).collect())
    }
}
