//! Principals from JWTs: a valid token gives its principal; every RFC 8725 attack and
//! every claim out of bounds is refused with the reason, at an injected clock.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tidig_engine::auth::{AuthError, JwtVerifier};
use tidig_engine::principal::Role;
use tidig_engine::settings::JwtSettings;

const NOW: i64 = 1_795_000_000;

/// An Ed25519 signing key from a fixed seed (PKCS#8 v1 DER, RFC 8410).
fn signing_key(seed: u8) -> EncodingKey {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend([seed; 32]);
    EncodingKey::from_ed_der(&der)
}

/// The public JWK of `signing_key(seed)` under `kid`.
fn jwk(seed: u8, kid: &str) -> Value {
    let mut k = Jwk::from_encoding_key(&signing_key(seed), Algorithm::EdDSA).unwrap();
    k.common.key_id = Some(kid.into());
    k.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    k.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(k).unwrap()
}

fn settings() -> JwtSettings {
    JwtSettings {
        jwks: "unused".into(),
        issuer: "https://login.example.fi".into(),
        audience: "tidig".into(),
        role_claim: "role".into(),
        unit_claim: "unit".into(),
        purpose_claim: "purpose".into(),
        health_authority_claim: "health_authority".into(),
    }
}

fn verifier() -> JwtVerifier {
    let mut enc = jwk(2, "k2");
    enc["use"] = json!("enc");
    let set = json!({"keys": [
        jwk(1, "k1"),
        enc,
        {"kty": "oct", "kid": "k3", "alg": "HS256", "k": B64URL.encode(b"shared secret")},
    ]});
    JwtVerifier::new(&set.to_string(), &settings()).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "anna", "iss": "https://login.example.fi", "aud": "tidig",
        "exp": NOW + 300, "nbf": NOW - 10, "iat": NOW - 10,
        "role": "caseworker", "unit": "family-services-central", "purpose": "case-handling",
    })
}

/// `claims()` with `field` set to `value`, or removed when `value` is null.
fn claims_with(field: &str, value: Value) -> Value {
    let mut c = claims();
    match value {
        Value::Null => {
            c.as_object_mut().unwrap().remove(field);
        }
        v => c[field] = v,
    }
    c
}

fn token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, claims, &signing_key(1)).unwrap()
}

/// A token with any header and signature bytes, as an attacker writes it.
fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string()),
        B64URL.encode(signature)
    )
}

#[test]
fn a_valid_token_gives_its_principal() {
    let p = verifier().verify(&token(&claims()), NOW).unwrap();
    assert_eq!(p.id(), "anna");
    assert_eq!(p.role, Role::Caseworker);
    assert_eq!(p.unit.as_deref(), Some("family-services-central"));
    assert_eq!(p.purpose, "case-handling");
    assert_eq!(p.auth.as_str(), "jwt");
}

#[test]
fn every_rfc_8725_attack_is_refused() {
    let v = verifier();
    let c = claims();
    // alg: none, with and without a signature.
    for sig in [&b""[..], b"x"] {
        let t = forged(json!({"alg": "none", "kid": "k1"}), &c, sig);
        assert!(
            matches!(v.verify(&t, NOW), Err(AuthError::Malformed(_))),
            "{t}"
        );
    }
    // HS256 "signed" with the public key as the HMAC secret.
    let public = jwk(1, "k1")["x"].as_str().unwrap().to_string();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    for secret in [public.as_bytes().to_vec(), B64URL.decode(&public).unwrap()] {
        let t = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&secret)).unwrap();
        assert!(
            matches!(v.verify(&t, NOW), Err(AuthError::WrongAlgorithm { .. })),
            "{:?}",
            v.verify(&t, NOW)
        );
    }
    // The same kid with another algorithm.
    for alg in ["RS256", "ES256", "PS256"] {
        let t = forged(json!({"alg": alg, "kid": "k1"}), &c, b"sig");
        assert!(
            matches!(v.verify(&t, NOW), Err(AuthError::WrongAlgorithm { .. })),
            "{alg}"
        );
    }
    // Unknown kid, and kids with path or SQL characters: looked up, never used.
    for kid in [
        "k9",
        "../../../etc/passwd",
        "k1' OR '1'='1",
        "k1\0",
        "K1",
        "",
    ] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let t = jsonwebtoken::encode(&header, &c, &signing_key(1)).unwrap();
        assert_eq!(
            v.verify(&t, NOW).unwrap_err(),
            AuthError::UnknownKey,
            "{kid:?}"
        );
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = None;
    let t = jsonwebtoken::encode(&header, &c, &signing_key(1)).unwrap();
    assert_eq!(v.verify(&t, NOW).unwrap_err(), AuthError::NoKeyId);
    // A key meant for encryption, and a symmetric key, are never used.
    for (kid, seed) in [("k2", 2), ("k3", 3)] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let t = jsonwebtoken::encode(&header, &c, &signing_key(seed)).unwrap();
        assert!(
            matches!(v.verify(&t, NOW), Err(AuthError::UnusableKey(_))),
            "{kid}"
        );
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k3".into());
    let t = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(b"shared secret")).unwrap();
    assert!(matches!(v.verify(&t, NOW), Err(AuthError::UnusableKey(_))));
    // Signed by another key under the right kid; or altered after signing.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let t = jsonwebtoken::encode(&header, &c, &signing_key(9)).unwrap();
    assert!(matches!(v.verify(&t, NOW), Err(AuthError::Invalid(_))));
    let good = token(&c);
    let parts: Vec<&str> = good.split('.').collect();
    let mut raised = c.clone();
    raised["role"] = json!("dpo");
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(raised.to_string()),
        parts[2]
    );
    assert!(matches!(
        v.verify(&altered, NOW),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn time_is_checked_at_the_leeway_edges_of_the_given_clock() {
    let v = verifier();
    let at = |field: &str, value: i64| token(&claims_with(field, json!(value)));
    assert!(v.verify(&at("exp", NOW - 60), NOW).is_ok());
    assert_eq!(
        v.verify(&at("exp", NOW - 61), NOW).unwrap_err(),
        AuthError::Expired
    );
    assert!(v.verify(&at("nbf", NOW + 60), NOW).is_ok());
    assert_eq!(
        v.verify(&at("nbf", NOW + 61), NOW).unwrap_err(),
        AuthError::NotYetValid
    );
    // The same token, later.
    let t = token(&claims());
    assert!(v.verify(&t, NOW + 360).is_ok());
    assert_eq!(v.verify(&t, NOW + 361).unwrap_err(), AuthError::Expired);
}

#[test]
fn issuer_audience_and_the_principal_claims_are_required() {
    let v = verifier();
    for (field, value) in [
        ("iss", Value::Null),
        ("iss", json!("https://evil.example")),
        ("aud", Value::Null),
        ("aud", json!("another-service")),
        ("exp", Value::Null),
        ("sub", Value::Null),
    ] {
        let c = claims_with(field, value);
        assert!(
            matches!(v.verify(&token(&c), NOW), Err(AuthError::Invalid(_))),
            "{field}"
        );
    }
    for (field, value) in [
        ("role", json!("operator")),
        ("role", json!("root")),
        ("role", Value::Null),
        ("purpose", Value::Null),
        ("purpose", json!("  ")),
        ("sub", json!("   ")),
    ] {
        let c = claims_with(field, value);
        assert!(
            matches!(v.verify(&token(&c), NOW), Err(AuthError::Claim(_))),
            "{field}"
        );
    }
}

#[test]
fn a_key_set_without_a_usable_signature_key_is_refused_with_the_reasons() {
    let s = settings();
    assert!(matches!(
        JwtVerifier::new("{}", &s),
        Err(AuthError::KeySet(_))
    ));
    assert!(matches!(
        JwtVerifier::new("not json", &s),
        Err(AuthError::KeySet(_))
    ));
    let mut no_alg = jwk(1, "k1");
    no_alg.as_object_mut().unwrap().remove("alg");
    let set = json!({"keys": [no_alg]}).to_string();
    let Err(AuthError::NoKeys(why)) = JwtVerifier::new(&set, &s) else {
        panic!("a key set with no pinned key was accepted");
    };
    assert!(why.contains("k1") && why.contains("alg"), "{why}");
    let set = json!({"keys": [jwk(1, "k1"), jwk(2, "k1")]}).to_string();
    assert!(matches!(
        JwtVerifier::new(&set, &s),
        Err(AuthError::KeySet(_))
    ));
}

/// The attacks through the real server: a JWKS file in `[service.jwt]`, the generated
/// client on 127.0.0.1:0, the server's clock injected. Every refused token is
/// UNAUTHENTICATED and audited; a valid token passes to the access policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_forged_and_expired_tokens_and_audits_each_call() {
    use tidig_engine::server::{self, proto};
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk(1, "k1")]}).to_string()).unwrap();
    let mut settings = tidig_engine::settings::Settings::default();
    settings.service.jwt = Some(JwtSettings {
        jwks,
        ..self::settings()
    });
    let store = tidig_engine::store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("jwt.db").display()
    ))
    .await
    .unwrap();
    let app = std::sync::Arc::new(tidig_engine::App::with_store(
        store.clone(),
        settings.clone(),
        tidig_governance::RulePack::default_pack().unwrap(),
        tidig_engine::clock::Clock::Fixed(chrono::DateTime::from_timestamp(NOW, 0).unwrap()),
    ));
    let auth = server::Authenticator::from_settings(&settings).unwrap();
    assert!(!auth.demo());
    let (listener, addr) = server::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::serve(app.clone(), auth, listener, async {
        let _ = stopped.await;
    }));
    let mut c = proto::caseworker_service_client::CaseworkerServiceClient::connect(format!(
        "http://{addr}"
    ))
    .await
    .unwrap();
    let list = |token: String| {
        let mut c = c.clone();
        async move {
            let mut r = tonic::Request::new(proto::ListSuggestionsRequest::default());
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            c.list_suggestions(r)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.code())
        }
    };
    // A valid caseworker token: allowed (an empty store lists nothing).
    let ok = list(token(&claims())).await.unwrap();
    assert!(ok.suggestions.is_empty());
    // A valid token whose role may not list: the policy refuses, not authentication.
    let dpo = claims_with("role", json!("dpo"));
    assert_eq!(
        list(token(&dpo)).await.unwrap_err(),
        tonic::Code::PermissionDenied
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let public = jwk(1, "k1")["x"].as_str().unwrap().to_string();
    let attacks = [
        forged(json!({"alg": "none", "kid": "k1"}), &claims(), b""),
        jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(public.as_bytes())).unwrap(),
        forged(json!({"alg": "EdDSA", "kid": "k9"}), &claims(), b"sig"),
        forged(
            json!({"alg": "EdDSA", "kid": "' OR 1=1 --"}),
            &claims(),
            b"sig",
        ),
        token(&claims_with("exp", json!(NOW - 61))),
        token(&claims_with("iss", Value::Null)),
        token(&claims_with("aud", json!("someone-else"))),
        "not-a-token".to_string(),
    ];
    for t in &attacks {
        assert_eq!(
            list(t.clone()).await.unwrap_err(),
            tonic::Code::Unauthenticated,
            "{t}"
        );
    }
    // No credentials at all.
    assert_eq!(
        c.list_suggestions(proto::ListSuggestionsRequest::default())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    app.audit().close().await.unwrap();
    let calls = 2 + attacks.len() as u64 + 1;
    assert_eq!(store.audit_head().await.unwrap().size, calls);
    let mut unauthenticated = 0;
    for seq in 0..calls {
        let row = store.audit_entry(seq).await.unwrap().unwrap();
        let entry: Value = serde_json::from_str(&row.entry).unwrap();
        assert_eq!(entry["action"], "casework.list_suggestions");
        if entry["outcome"]["error"] == "unauthenticated" {
            unauthenticated += 1;
            assert_eq!(entry["principal"]["id"], "anonymous");
        }
    }
    assert_eq!(unauthenticated, attacks.len() + 1);
}
