//! Who is calling, from the request's metadata: a bearer JWT checked against the
//! identity provider's key set, or (quickstart only) a static demo token.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::{AuthError, JwtVerifier};
use crate::principal::{AuthMethod, Principal, Role};
use crate::settings::Settings;

/// Verified tokens: SHA-256 of the token → its principal and `exp`.
type Verified = HashMap<[u8; 32], (Principal, i64)>;

/// At most this many verified tokens are remembered.
const VERIFIED_MAX: usize = 10_000;

/// Why `tidig serve` cannot authenticate anyone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    #[error(
        "refusing to serve: nobody could authenticate (set [service.jwt] with the identity \
         provider's key set, or demo = true for synthetic data only)"
    )]
    NoMethod,
    #[error("[service.jwt] jwks {path}: {reason}")]
    KeySet { path: String, reason: String },
}

/// Turns credentials into principals.
#[derive(Clone, Debug)]
pub struct Authenticator {
    jwt: Option<Arc<JwtVerifier>>,
    /// Tokens whose signature and claims checked out: SHA-256 of the token → its
    /// principal and expiry. A client sends the same token with every call; its
    /// signature is checked once, its expiry on every call.
    verified: Arc<std::sync::Mutex<Verified>>,
    /// Every call is this principal, credentials unchecked: `tidig bench serve`'s
    /// baseline only.
    anyone_as: Option<Principal>,
    /// Static demo tokens → principals; empty unless `demo = true`.
    demo: Arc<HashMap<String, Principal>>,
}

/// The static demo principals for `settings`: for each unit a caseworker
/// (`demo-caseworker-<unit>`) and a caseworker with health authority
/// (`demo-health-<unit>`), and a data-protection officer, an auditor and a researcher.
pub fn demo_principals(settings: &Settings) -> Vec<(String, Principal)> {
    let mut out = Vec::new();
    let mut add = |token: String, role: Role, unit: Option<&str>, purpose: &str, health: bool| {
        if let Ok(mut p) = Principal::new(&token, role, AuthMethod::Demo) {
            p.unit = unit.map(str::to_string);
            p.purpose = purpose.to_string();
            p.health_authority = health;
            out.push((token, p));
        }
    };
    for u in &settings.scoring.units {
        let unit = Some(u.id.as_str());
        add(
            format!("demo-caseworker-{}", u.id),
            Role::Caseworker,
            unit,
            "case-handling",
            false,
        );
        add(
            format!("demo-health-{}", u.id),
            Role::Caseworker,
            unit,
            "case-handling",
            true,
        );
    }
    add("demo-dpo".into(), Role::Dpo, None, "oversight", false);
    add(
        "demo-auditor".into(),
        Role::Auditor,
        None,
        "oversight",
        false,
    );
    add(
        "demo-researcher".into(),
        Role::Researcher,
        None,
        "research",
        false,
    );
    out
}

impl Authenticator {
    /// From the `[service]` settings: the JWKS file is read now, offline.
    pub fn from_settings(settings: &Settings) -> Result<Authenticator, AuthSetupError> {
        let jwt = match &settings.service.jwt {
            None => None,
            Some(j) => {
                let key_set = |reason: String| AuthSetupError::KeySet {
                    path: j.jwks.display().to_string(),
                    reason,
                };
                let text = std::fs::read_to_string(&j.jwks).map_err(|e| key_set(e.to_string()))?;
                Some(Arc::new(
                    JwtVerifier::new(&text, j).map_err(|e| key_set(e.to_string()))?,
                ))
            }
        };
        let demo: HashMap<String, Principal> = if settings.service.demo {
            demo_principals(settings).into_iter().collect()
        } else {
            HashMap::new()
        };
        if jwt.is_none() && demo.is_empty() {
            return Err(AuthSetupError::NoMethod);
        }
        Ok(Authenticator {
            jwt,
            verified: Default::default(),
            anyone_as: None,
            demo: Arc::new(demo),
        })
    }

    /// Lets every call in as `p` without credentials, for a benchmark's baseline only
    /// (what authentication costs); no setting reaches it.
    pub(crate) fn anyone_as_for_benchmark(p: Principal) -> Authenticator {
        Authenticator {
            jwt: None,
            verified: Default::default(),
            anyone_as: Some(p),
            demo: Arc::new(HashMap::new()),
        }
    }

    /// Whether static demo tokens are accepted.
    pub fn demo(&self) -> bool {
        !self.demo.is_empty()
    }

    /// The principal of a request's `authorization` metadata at unix time `now`.
    pub fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        now: i64,
    ) -> Result<Principal, String> {
        if let Some(p) = &self.anyone_as {
            return Ok(p.clone());
        }
        let header = metadata
            .get("authorization")
            .ok_or("no credentials: send `authorization: Bearer <token>`")?
            .to_str()
            .map_err(|_| "the authorization header is not text")?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or("the authorization header is not `Bearer <token>`")?;
        if let Some(p) = self.demo.get(token) {
            return Ok(p.clone());
        }
        let Some(v) = &self.jwt else {
            return Err("unknown demo token".into());
        };
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some((p, exp)) = cached {
            if now <= exp.saturating_add(crate::auth::LEEWAY_SECONDS) {
                return Ok(p);
            }
        }
        let (p, exp) = v
            .verify_with_expiry(token, now)
            .map_err(|e: AuthError| format!("invalid token: {e}"))?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key, (p.clone(), exp));
        Ok(p)
    }
}
