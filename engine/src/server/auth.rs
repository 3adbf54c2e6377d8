//! Who is calling: a bearer JWT checked against the identity provider's key set, a TLS
//! client certificate whose subject the settings map to a principal, or (quickstart
//! only) a static demo token. A request's bearer token, when it has one, decides: a
//! case system may hold a certificate and still pass on its user's token.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::{AuthError, JwtVerifier};
use crate::principal::{AuthMethod, Principal, Role};
use crate::settings::{normalize_subject, Settings};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

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
         provider's key set, [service.tls] client_ca with [[service.tls.clients]], or demo = \
         true for synthetic data only)"
    )]
    NoMethod,
    #[error("[service.jwt] jwks {path}: {reason}")]
    KeySet { path: String, reason: String },
    #[error("[service.tls] {path}: {reason}")]
    Tls { path: String, reason: String },
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
    /// Client certificate subjects (normalised) → principals; empty without a client CA.
    certs: Arc<HashMap<String, Principal>>,
    /// The server's TLS, when `[service.tls]` is set.
    tls: Option<ServerTlsConfig>,
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
        let (tls, certs) = match &settings.service.tls {
            None => (None, HashMap::new()),
            Some(t) => {
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| AuthSetupError::Tls {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
                };
                let identity = Identity::from_pem(read(&t.cert)?, read(&t.key)?);
                let mut config = ServerTlsConfig::new().identity(identity);
                let mut certs = HashMap::new();
                if let Some(ca) = &t.client_ca {
                    config = config
                        .client_ca_root(Certificate::from_pem(read(ca)?))
                        // A client without a certificate may still bring a token.
                        .client_auth_optional(jwt.is_some() || !demo.is_empty());
                    for c in &t.clients {
                        let subject = normalize_subject(&c.subject);
                        let invalid = |reason: String| AuthSetupError::Tls {
                            path: format!("clients `{subject}`"),
                            reason,
                        };
                        let role = Role::parse(&c.role)
                            .ok_or_else(|| invalid(format!("role `{}`", c.role)))?;
                        let mut p = Principal::new(
                            c.id.as_deref().unwrap_or(&subject),
                            role,
                            AuthMethod::ClientCert,
                        )
                        .map_err(|e| invalid(e.to_string()))?;
                        p.unit = c.unit.clone();
                        p.purpose = c.purpose.trim().to_string();
                        p.health_authority = c.health_authority;
                        certs.insert(subject, p);
                    }
                }
                (Some(config), certs)
            }
        };
        if jwt.is_none() && demo.is_empty() && certs.is_empty() {
            return Err(AuthSetupError::NoMethod);
        }
        Ok(Authenticator {
            jwt,
            verified: Default::default(),
            anyone_as: None,
            demo: Arc::new(demo),
            certs: Arc::new(certs),
            tls,
        })
    }

    /// The server's TLS configuration (client CA included), when `[service.tls]` is set.
    pub fn tls(&self) -> Option<&ServerTlsConfig> {
        self.tls.as_ref()
    }

    /// Lets every call in as `p` without credentials, for a benchmark's baseline only
    /// (what authentication costs); no setting reaches it.
    pub(crate) fn anyone_as_for_benchmark(p: Principal) -> Authenticator {
        Authenticator {
            jwt: None,
            verified: Default::default(),
            anyone_as: Some(p),
            demo: Arc::new(HashMap::new()),
            certs: Arc::new(HashMap::new()),
            tls: None,
        }
    }

    /// How many client certificate subjects map to principals.
    pub fn client_certificates(&self) -> usize {
        self.certs.len()
    }

    /// Whether static demo tokens are accepted.
    pub fn demo(&self) -> bool {
        !self.demo.is_empty()
    }

    /// The principal of a request at unix time `now`: its `authorization` metadata when
    /// present, else the client certificate the TLS handshake verified (`peer_certs`,
    /// the client's own first).
    pub fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        peer_certs: Option<&[tonic::transport::CertificateDer<'static>]>,
        now: i64,
    ) -> Result<Principal, String> {
        if let Some(p) = &self.anyone_as {
            return Ok(p.clone());
        }
        let Some(header) = metadata.get("authorization") else {
            return match peer_certs.and_then(|c| c.first()) {
                Some(der) => self.by_certificate(der),
                None if self.certs.is_empty() => {
                    Err("no credentials: send `authorization: Bearer <token>`".into())
                }
                None => Err(
                    "no credentials: send `authorization: Bearer <token>` or a client certificate"
                        .into(),
                ),
            };
        };
        let header = header
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

    /// The principal a verified client certificate's subject is mapped to.
    fn by_certificate(&self, der: &[u8]) -> Result<Principal, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
        let subject = normalize_subject(&cert.subject().to_string());
        self.certs.get(&subject).cloned().ok_or_else(|| {
            format!(
                "the client certificate's subject `{subject}` is not mapped to a principal \
                 ([[service.tls.clients]])"
            )
        })
    }
}
