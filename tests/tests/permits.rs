//! The secondary-use permit register: registered, amended and revoked as versions, each
//! change audited with its version; refused for the wrong callers and for terms that
//! name a field wrongly; nothing after a revocation.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure here is a test failure"
)]

use tidig_engine::pipeline::permits::{amend, list, register, revoke, show};
use tidig_engine::principal::{AuthMethod, Principal, Role};
use tidig_engine::{EngineError, Precondition};
use tidig_tests::{app, operator, stores};

const PERMIT: &str = r#"
id = "THL/1234/14.02.00/2026"
issuer = "Findata"
holder = "University of Eastern Finland"
researchers = ["rita", "sami"]
purpose = "scientific_research"
registries = ["social", "population"]
features = ["age_years", "family_*"]
cohort = { municipalities = ["091"], birth_years = [2008, 2025] }
data_period = { from = "2023-01-01", to = "2025-12-31" }
valid = { from = "2026-01-01", to = "2026-12-31" }
"#;

fn who(id: &str, role: Role, purpose: &str) -> Principal {
    let mut p = Principal::new(id, role, AuthMethod::Demo).unwrap();
    p.purpose = purpose.into();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_are_versioned_audited_and_end_with_their_revocation() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores(dir.path(), "permits").await {
        let app = app(&store);
        let op = operator("olli");
        let dpo = who("anna", Role::Dpo, "oversight");
        let before = store.audit_head().await.unwrap().size;

        let v1 = register(&app, &op, PERMIT).await.unwrap();
        assert_eq!((v1.version, v1.state.as_str()), (1, "registered"));
        assert_eq!(v1.permit.min_cell, 5);
        let again = register(&app, &dpo, PERMIT).await.unwrap_err();
        assert!(
            matches!(again, EngineError::AlreadyExists { .. }),
            "{backend}: {again}"
        );
        let v2 = amend(&app, &dpo, &PERMIT.replace("[2008, 2025]", "[2010, 2025]"))
            .await
            .unwrap();
        assert_eq!(
            (v2.version, v2.permit.cohort.birth_years),
            (2, [2010, 2025])
        );
        assert_eq!(v2.recorded_by, "anna");

        // A researcher and a caseworker are refused; so are terms naming a feature the set
        // does not have, or a field wrongly, each naming what.
        let rita = who("rita", Role::Researcher, "research");
        let e = register(&app, &rita, &PERMIT.replace("1234", "9999"))
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::PermissionDenied { .. }), "{e}");
        let e = amend(
            &app,
            &dpo,
            &PERMIT.replace("\"age_years\"", "\"shoe_size\""),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("`shoe_size` is not a feature"),
            "{e}"
        );
        let e = amend(&app, &dpo, &PERMIT.replace("2026-12-31", "2025-06-30"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("permit field `valid`"), "{e}");

        let v3 = revoke(&app, &dpo, &v1.permit.id, "the study ended early")
            .await
            .unwrap();
        assert_eq!((v3.version, v3.state.as_str()), (3, "revoked"));
        assert_eq!(
            v3.permit.cohort.birth_years,
            [2010, 2025],
            "the terms stay as they were"
        );
        let e = amend(&app, &dpo, PERMIT).await.unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::FailedPrecondition(Precondition::PermitRevoked { .. })
            ),
            "{e}"
        );
        let e = revoke(&app, &dpo, "no-such-permit", "x").await.unwrap_err();
        assert!(matches!(e, EngineError::NotFound { .. }), "{e}");

        let auditor = who("aino", Role::Auditor, "oversight");
        let all = list(&app, &auditor).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].version, all[0].revoked_reason.as_deref()),
            (3, Some("the study ended early"))
        );
        let history = show(&app, &auditor, &v1.permit.id).await.unwrap();
        let versions: Vec<(i64, &str)> = history
            .iter()
            .map(|v| (v.version, v.state.as_str()))
            .collect();
        assert_eq!(
            versions,
            [(1, "registered"), (2, "amended"), (3, "revoked")]
        );
        assert!(list(&app, &rita).await.is_err());

        // Every call is one entry; the three changes carry their versions.
        app.audit().close().await.unwrap();
        let after = store.audit_head().await.unwrap().size;
        assert_eq!(after - before, 12, "{backend}");
        let mut changes = Vec::new();
        for seq in before..after {
            let row = store.audit_entry(seq).await.unwrap().unwrap();
            let e: serde_json::Value = serde_json::from_str(&row.entry).unwrap();
            if row.outcome == "allowed" && e["details"]["version"].is_i64() {
                changes.push((row.action, e["details"]["version"].as_i64().unwrap()));
            }
        }
        assert_eq!(
            changes,
            [
                ("oversight.register_permit".to_string(), 1),
                ("oversight.amend_permit".to_string(), 2),
                ("oversight.revoke_permit".to_string(), 3),
            ],
            "{backend}"
        );
    }
}
