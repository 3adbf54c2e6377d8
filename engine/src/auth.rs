//! Who is calling: principals from the municipality's identity provider's JWTs, checked
//! offline against its JSON Web Key Set (RFC 7517) as RFC 8725 recommends.
//!
//! - Every key is pinned to one algorithm when the key set is loaded (its `alg`), and a
//!   token is checked with the key its `kid` names and that key's algorithm only: never
//!   "try every key", never the algorithm a token asks for. A token whose `alg` differs
//!   from its key's is refused before any signature is checked.
//! - Only public signature keys are loaded: symmetric keys (`kty: oct`) would let anyone
//!   who has the key set sign, and keys marked for encryption (`use: enc`) are not for
//!   signatures; both are refused with the reason, as are keys without `kid` or `alg`.
//! - `alg: none` is not an algorithm here; issuer and audience are required and must
//!   match; expiry and not-before are checked against the caller's clock with at most
//!   60 s of leeway.
//!
//! The claims named in the settings give the role, the unit and the purpose.

use std::collections::HashMap;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::principal::{AuthMethod, Principal, Role};
use crate::settings::JwtSettings;

/// Leeway on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Why a key set or a token was refused. Messages never quote the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    #[error("the key set is not a JWKS: {0}")]
    KeySet(String),
    #[error("the key set holds no usable signature key ({0})")]
    NoKeys(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token names no key (`kid`)")]
    NoKeyId,
    #[error("the token's key is not in the key set")]
    UnknownKey,
    #[error("the token's key is not usable: {0}")]
    UnusableKey(String),
    #[error("the token's algorithm {given} is not its key's ({pinned})")]
    WrongAlgorithm { given: String, pinned: String },
    #[error("the token's signature or claims are invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's claim `{0}` is missing or not what tidig accepts")]
    Claim(String),
}

/// A loaded key: usable with one algorithm, or refused with the reason.
enum Key {
    Usable(Box<DecodingKey>, Algorithm),
    Refused(String),
}

/// Checks tokens against one identity provider's key set.
pub struct JwtVerifier {
    keys: HashMap<String, Key>,
    settings: JwtSettings,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        write!(
            f,
            "JwtVerifier(issuer {}, keys {kids:?})",
            self.settings.issuer
        )
    }
}

impl JwtVerifier {
    /// Loads the key set `jwks` (JSON text) for `settings`.
    pub fn new(jwks: &str, settings: &JwtSettings) -> Result<JwtVerifier, AuthError> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| AuthError::KeySet(e.to_string()))?;
        let mut keys = HashMap::new();
        let mut refused = Vec::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                refused.push("a key without `kid`".to_string());
                continue;
            };
            let key = load(jwk);
            if let Key::Refused(why) = &key {
                refused.push(format!("{kid}: {why}"));
            }
            if keys.insert(kid.clone(), key).is_some() {
                return Err(AuthError::KeySet(format!("two keys have the kid {kid}")));
            }
        }
        if !keys.values().any(|k| matches!(k, Key::Usable(..))) {
            return Err(AuthError::NoKeys(if refused.is_empty() {
                "it is empty".into()
            } else {
                refused.join("; ")
            }));
        }
        Ok(JwtVerifier {
            keys,
            settings: settings.clone(),
        })
    }

    /// Checks `token` at unix time `now` and returns its principal.
    pub fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        self.verify_with_expiry(token, now).map(|(p, _)| p)
    }

    /// [`JwtVerifier::verify`], with the token's `exp` (a caller remembering verified
    /// tokens checks it again on every use).
    pub fn verify_with_expiry(&self, token: &str, now: i64) -> Result<(Principal, i64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.as_deref().ok_or(AuthError::NoKeyId)?;
        let (key, pinned) = match self.keys.get(kid) {
            None => return Err(AuthError::UnknownKey),
            Some(Key::Refused(why)) => return Err(AuthError::UnusableKey(why.clone())),
            Some(Key::Usable(key, alg)) => (key, *alg),
        };
        if header.alg != pinned {
            return Err(AuthError::WrongAlgorithm {
                given: format!("{:?}", header.alg),
                pinned: format!("{pinned:?}"),
            });
        }
        let mut validation = Validation::new(pinned);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let exp = claims["exp"]
            .as_i64()
            .ok_or_else(|| AuthError::Claim("exp".into()))?;
        if now > exp.saturating_add(LEEWAY_SECONDS) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or_else(|| AuthError::Claim("nbf".into()))?;
            if now.saturating_add(LEEWAY_SECONDS) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        Ok((self.principal(&claims)?, exp))
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let text = |name: &str| {
            claims[name]
                .as_str()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AuthError::Claim(name.to_string()))
        };
        let s = &self.settings;
        let role = Role::parse(text(&s.role_claim)?)
            .filter(|r| *r != Role::Operator)
            .ok_or_else(|| AuthError::Claim(s.role_claim.clone()))?;
        let mut p = Principal::new(text("sub")?, role, AuthMethod::Jwt)
            .map_err(|_| AuthError::Claim("sub".into()))?;
        p.unit = claims[&s.unit_claim]
            .as_str()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        p.purpose = text(&s.purpose_claim)?.to_string();
        p.health_authority = match claims.get(&s.health_authority_claim) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(AuthError::Claim(s.health_authority_claim.clone())),
        };
        Ok(p)
    }
}

/// A key from the set, pinned to its algorithm, or why it cannot be used.
fn load(jwk: &jsonwebtoken::jwk::Jwk) -> Key {
    use jsonwebtoken::jwk::AlgorithmParameters;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Key::Refused("a symmetric key: anyone holding the key set could sign".into());
    }
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Key::Refused("not a signature key (`use` is not `sig`)".into()),
    }
    let Some(alg) = jwk.common.key_algorithm else {
        return Key::Refused("no `alg`: the key's algorithm must be pinned".into());
    };
    let alg = match alg.to_string().parse::<Algorithm>() {
        Ok(a) if !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => a,
        _ => return Key::Refused(format!("`alg` {alg} is not a signature algorithm")),
    };
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Key::Usable(Box::new(key), alg),
        Err(e) => Key::Refused(format!("not a valid {alg:?} key: {e}")),
    }
}
