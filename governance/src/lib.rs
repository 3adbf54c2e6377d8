//! Pure data-governance vocabulary and the ethics rule layer.
//!
//! This crate decides *what may be used, who may be scored and what is shown*. The rules
//! are Cedar policies in versioned rule packs ([`rules`]), evaluated per request with the
//! deciding rule ids and any rule errors ([`eval`]), and tested by golden cases
//! ([`golden`]). It takes values and returns values; it never does I/O: callers read
//! pack files and pass their text.

pub mod access;
pub mod audit;
pub mod eval;
pub mod floor;
pub mod golden;
pub mod permit;
pub mod rules;

pub use eval::{Decision, Evaluator, Request};
pub use floor::FloorRule;
pub use rules::{PackError, Problem, RuleMeta, RulePack, Source, Stage};

/// How sensitive an attribute or feature is, which decides where it may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Sensitivity {
    /// Ordinary personal data: usable as a model input.
    Ordinary,
    /// Health data (a GDPR Art 9 special category): a model input only under the
    /// deployment's configured Art 9(2) basis, hidden from viewers without health
    /// authority.
    Health,
    /// The other Art 9 categories and their proxies (ethnic origin, religion or belief,
    /// political opinion, trade-union membership, sex life or orientation, mother tongue,
    /// citizenship, country of birth): never a model input.
    Prohibited,
    /// Kept only to measure fairness; never a model input.
    Protected,
}

impl Sensitivity {
    /// Whether an attribute of this class may ever be a model input.
    pub fn may_be_model_input(self) -> bool {
        matches!(self, Sensitivity::Ordinary | Sensitivity::Health)
    }
}

/// The sensitivity of the population attributes the connectors keep for fairness
/// measurement. They are proxies of ethnic origin, so as *inputs* they are prohibited;
/// the store keeps them apart (`protected_attributes`) for fairness metrics only.
pub fn population_attribute(name: &str) -> Option<Sensitivity> {
    match name {
        "mother_tongue" | "citizenship" | "country_of_birth" => Some(Sensitivity::Prohibited),
        "sex" | "birth_date" | "municipality" => Some(Sensitivity::Protected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_of_ethnic_origin_are_never_inputs() {
        for a in ["mother_tongue", "citizenship", "country_of_birth"] {
            let s = population_attribute(a).unwrap();
            assert!(!s.may_be_model_input(), "{a}");
        }
        assert!(Sensitivity::Health.may_be_model_input());
        assert_eq!(population_attribute("shoe_size"), None);
    }
}
