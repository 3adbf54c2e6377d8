//! Secondary-use permits, as Finland's Act 552/2019 and Findata's permit decisions shape
//! them: named researchers, a purpose the Act allows, named registries and features, a
//! cohort, a data period, a validity window and the smallest cell any output may show.
//!
//! Pure: a permit is parsed and validated here ([`Permit::parse`]), and
//! [`Permit::allows`] answers whether one request of a researcher falls inside it,
//! naming the first thing that does not. The engine stores, versions and audits permits
//! and enforces them; nothing here reads a store or a clock.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The purposes Act 552/2019 (§ 2) allows secondary use for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    ScientificResearch,
    Statistics,
    DevelopmentAndInnovation,
    Teaching,
    AuthorityPlanning,
    KnowledgeManagement,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ScientificResearch => "scientific_research",
            Purpose::Statistics => "statistics",
            Purpose::DevelopmentAndInnovation => "development_and_innovation",
            Purpose::Teaching => "teaching",
            Purpose::AuthorityPlanning => "authority_planning",
            Purpose::KnowledgeManagement => "knowledge_management",
        }
    }
}

/// The registries data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registry {
    Health,
    Social,
    Population,
}

impl Registry {
    pub fn as_str(self) -> &'static str {
        match self {
            Registry::Health => "health",
            Registry::Social => "social",
            Registry::Population => "population",
        }
    }
}

/// Who may be in a cohort.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermitCohort {
    /// Municipality codes; empty: every municipality in the deployment.
    #[serde(default)]
    pub municipalities: Vec<String>,
    /// The first and last birth year, inclusive.
    pub birth_years: [i32; 2],
}

/// A closed period of days, `YYYY-MM-DD` to `YYYY-MM-DD` inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub from: String,
    pub to: String,
}

impl Period {
    fn dates(&self, field: &str) -> Result<(NaiveDate, NaiveDate), PermitError> {
        let parse = |which: &str, text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| PermitError::Invalid {
                field: format!("{field}.{which}"),
                reason: format!("`{text}` is not a date (YYYY-MM-DD)"),
            })
        };
        let (from, to) = (parse("from", &self.from)?, parse("to", &self.to)?);
        if from > to {
            return Err(PermitError::Invalid {
                field: field.into(),
                reason: format!("{from} is after {to}"),
            });
        }
        Ok((from, to))
    }

    /// Whether `day` lies in the period.
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.dates("period")
            .is_ok_and(|(from, to)| from <= day && day <= to)
    }
}

/// A secondary-use permit as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permit {
    /// The permit authority's id for the decision (e.g. `THL/1234/14.02.00/2026`).
    pub id: String,
    /// Who issued it (e.g. `Findata`).
    pub issuer: String,
    /// The organisation that holds it.
    pub holder: String,
    /// The researchers named in it, as principal ids.
    pub researchers: Vec<String>,
    pub purpose: Purpose,
    pub registries: Vec<Registry>,
    /// Feature ids, `prefix*` patterns, or `*` for every feature of the permitted
    /// registries.
    pub features: Vec<String>,
    pub cohort: PermitCohort,
    /// The period the data may come from (as-of dates of snapshots).
    pub data_period: Period,
    /// When the permit applies.
    pub valid: Period,
    /// The smallest count of persons any released cell may show (at least 5 by default,
    /// never below 3).
    #[serde(default = "default_min_cell")]
    pub min_cell: u64,
}

fn default_min_cell() -> u64 {
    5
}

/// Why a permit cannot be registered, or why a request falls outside it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermitError {
    #[error("permit field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("permit `{permit}` does not name `{principal}` as a researcher")]
    NotNamed { permit: String, principal: String },
    #[error("permit `{permit}` applies {from} to {to}; it is {day}")]
    NotValid {
        permit: String,
        from: String,
        to: String,
        day: NaiveDate,
    },
    #[error("permit `{permit}` does not allow feature `{feature}` (registry {registry})")]
    Feature {
        permit: String,
        feature: String,
        registry: String,
    },
    #[error("permit `{permit}` covers data from {from} to {to}, not {day}")]
    Period {
        permit: String,
        from: String,
        to: String,
        day: NaiveDate,
    },
    #[error("permit `{permit}`'s cohort does not include {what}")]
    Cohort { permit: String, what: String },
    #[error("permit `{permit}` is revoked ({reason})")]
    Revoked { permit: String, reason: String },
}

impl PermitError {
    /// The field or scope a refusal names (for messages and the audit trail).
    pub fn scope(&self) -> &'static str {
        match self {
            PermitError::Invalid { .. } => "definition",
            PermitError::NotNamed { .. } => "researcher",
            PermitError::NotValid { .. } => "validity",
            PermitError::Feature { .. } => "feature",
            PermitError::Period { .. } => "period",
            PermitError::Cohort { .. } => "cohort",
            PermitError::Revoked { .. } => "revoked",
        }
    }
}

/// One feature as a permit sees it.
#[derive(Clone, Copy, Debug)]
pub struct FeatureScope<'a> {
    pub id: &'a str,
    pub registry: Registry,
}

/// What a researcher asks to read.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub principal: &'a str,
    pub today: NaiveDate,
    pub features: &'a [FeatureScope<'a>],
    /// The as-of dates of the snapshots read.
    pub snapshots: &'a [NaiveDate],
}

impl Permit {
    /// Parses a permit (TOML, as `tidig permits add` reads it) and validates it; every
    /// problem names its field.
    pub fn parse(text: &str) -> Result<Permit, PermitError> {
        let permit: Permit = toml::from_str(text).map_err(|e| PermitError::Invalid {
            field: e
                .span()
                .map_or_else(|| "permit".to_string(), |s| format!("at byte {}", s.start)),
            reason: e.message().to_string(),
        })?;
        permit.validate()?;
        Ok(permit)
    }

    /// Checks every field: ids and names present, researchers named once, a registry at
    /// least, feature patterns well formed, birth years and periods ordered, the
    /// minimum cell at least 3.
    pub fn validate(&self) -> Result<(), PermitError> {
        let bad = |field: &str, reason: String| {
            Err(PermitError::Invalid {
                field: field.into(),
                reason,
            })
        };
        for (field, v, max) in [
            ("id", &self.id, 120),
            ("issuer", &self.issuer, 200),
            ("holder", &self.holder, 200),
        ] {
            if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
                return bad(
                    field,
                    format!("required, 1..={max} bytes without control characters"),
                );
            }
        }
        if self.researchers.is_empty() {
            return bad("researchers", "name at least one researcher".into());
        }
        let mut seen = BTreeSet::new();
        for r in &self.researchers {
            let key = r.trim().to_lowercase();
            if key.is_empty() || r.chars().any(char::is_control) || !seen.insert(key) {
                return bad("researchers", format!("`{r}` is empty or named twice"));
            }
        }
        if self.registries.is_empty() {
            return bad("registries", "name at least one registry".into());
        }
        if self.features.is_empty() {
            return bad(
                "features",
                "name features, `prefix*` patterns or `*`".into(),
            );
        }
        for f in &self.features {
            let stem = f.strip_suffix('*').unwrap_or(f);
            if stem.contains('*')
                || !stem
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return bad(
                    "features",
                    format!("`{f}` is not a feature id, `prefix*` or `*`"),
                );
            }
        }
        let [first, last] = self.cohort.birth_years;
        if !(1900..=2200).contains(&first) || !(1900..=2200).contains(&last) || first > last {
            return bad(
                "cohort.birth_years",
                format!("[{first}, {last}] is not an ordered pair of years"),
            );
        }
        self.data_period.dates("data_period")?;
        self.valid.dates("valid")?;
        if self.min_cell < 3 {
            return bad("min_cell", format!("{} is below 3 persons", self.min_cell));
        }
        Ok(())
    }

    /// Whether the permit lets `feature` be read.
    pub fn allows_feature(&self, feature: &FeatureScope<'_>) -> bool {
        self.registries.contains(&feature.registry)
            && self.features.iter().any(|p| match p.strip_suffix('*') {
                Some(stem) => feature.id.starts_with(stem),
                None => p == feature.id,
            })
    }

    /// Checks a cohort a researcher asks for (birth years, municipalities; `None` and
    /// empty mean the permit's own) against the permit's: refused naming what lies
    /// outside it.
    pub fn allows_cohort(
        &self,
        birth_years: Option<[i32; 2]>,
        municipalities: &[String],
    ) -> Result<(), PermitError> {
        let outside = |what: String| {
            Err(PermitError::Cohort {
                permit: self.id.clone(),
                what,
            })
        };
        let [first, last] = self.cohort.birth_years;
        if let Some([from, to]) = birth_years {
            if from > to || from < first || to > last {
                return outside(format!(
                    "birth years {from}–{to} (it allows {first}–{last})"
                ));
            }
        }
        if !self.cohort.municipalities.is_empty() {
            if let Some(m) = municipalities
                .iter()
                .find(|m| !self.cohort.municipalities.contains(m))
            {
                return outside(format!("municipality `{m}`"));
            }
        }
        Ok(())
    }

    /// Whether a person born in `birth_year` living in `municipality` is in the cohort.
    pub fn in_cohort(&self, birth_year: i32, municipality: Option<&str>) -> bool {
        let [first, last] = self.cohort.birth_years;
        (first..=last).contains(&birth_year)
            && (self.cohort.municipalities.is_empty()
                || municipality.is_some_and(|m| self.cohort.municipalities.iter().any(|c| c == m)))
    }

    /// Checks a request against the permit: the caller named, the permit valid today,
    /// every feature and snapshot date inside it. Names the first thing outside.
    pub fn allows(&self, r: &Request<'_>) -> Result<(), PermitError> {
        let named = r.principal.trim().to_lowercase();
        if !self
            .researchers
            .iter()
            .any(|x| x.trim().to_lowercase() == named)
        {
            return Err(PermitError::NotNamed {
                permit: self.id.clone(),
                principal: r.principal.into(),
            });
        }
        if !self.valid.contains(r.today) {
            return Err(PermitError::NotValid {
                permit: self.id.clone(),
                from: self.valid.from.clone(),
                to: self.valid.to.clone(),
                day: r.today,
            });
        }
        if let Some(f) = r.features.iter().find(|f| !self.allows_feature(f)) {
            return Err(PermitError::Feature {
                permit: self.id.clone(),
                feature: f.id.into(),
                registry: f.registry.as_str().into(),
            });
        }
        if let Some(day) = r.snapshots.iter().find(|d| !self.data_period.contains(**d)) {
            return Err(PermitError::Period {
                permit: self.id.clone(),
                from: self.data_period.from.clone(),
                to: self.data_period.to.clone(),
                day: *day,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_permit_parses_with_the_default_minimum_cell() {
        let p = Permit::parse(PERMIT).unwrap();
        assert_eq!(p.min_cell, 5);
        assert_eq!(p.purpose, Purpose::ScientificResearch);
    }

    #[test]
    fn every_invalid_field_is_named() {
        for (from, to, field) in [
            (
                "purpose = \"scientific_research\"",
                "purpose = \"marketing\"",
                "at byte",
            ),
            (
                "researchers = [\"rita\", \"sami\"]",
                "researchers = [\"rita\", \"Rita \"]",
                "researchers",
            ),
            (
                "registries = [\"social\", \"population\"]",
                "registries = []",
                "registries",
            ),
            (
                "features = [\"age_years\", \"family_*\"]",
                "features = [\"a*b*\"]",
                "features",
            ),
            (
                "birth_years = [2008, 2025]",
                "birth_years = [2025, 2008]",
                "cohort.birth_years",
            ),
            (
                "from = \"2023-01-01\"",
                "from = \"2023-13-01\"",
                "data_period.from",
            ),
            ("to = \"2026-12-31\"", "to = \"2025-12-31\"", "valid"),
        ] {
            let text = PERMIT.replace(from, to);
            let e = Permit::parse(&text).unwrap_err();
            assert!(e.to_string().contains(field), "{to}: {e}");
        }
        let e = Permit::parse(&format!("{PERMIT}min_cell = 2\n")).unwrap_err();
        assert!(e.to_string().contains("min_cell"), "{e}");
    }

    #[test]
    fn a_request_outside_the_permit_is_refused_naming_what() {
        let p = Permit::parse(PERMIT).unwrap();
        let feature = |id: &'static str, registry| FeatureScope { id, registry };
        let ok_features = [
            feature("age_years", Registry::Population),
            feature("family_income_support_months_36m", Registry::Social),
        ];
        let ok = Request {
            principal: "Rita",
            today: day("2026-06-01"),
            features: &ok_features,
            snapshots: &[day("2024-01-01")],
        };
        p.allows(&ok).unwrap();
        let e = p
            .allows(&Request {
                principal: "mallory",
                ..ok.clone()
            })
            .unwrap_err();
        assert_eq!(e.scope(), "researcher");
        let e = p
            .allows(&Request {
                today: day("2027-01-01"),
                ..ok.clone()
            })
            .unwrap_err();
        assert_eq!(e.scope(), "validity");
        let health = [feature("child_er_visits_12m", Registry::Health)];
        let e = p
            .allows(&Request {
                features: &health,
                ..ok.clone()
            })
            .unwrap_err();
        assert_eq!(e.scope(), "feature");
        assert!(e.to_string().contains("child_er_visits_12m"), "{e}");
        // A permitted registry but a feature the list does not name.
        let unnamed = [feature("parent_unemployment_months_36m", Registry::Social)];
        assert_eq!(
            p.allows(&Request {
                features: &unnamed,
                ..ok.clone()
            })
            .unwrap_err()
            .scope(),
            "feature"
        );
        let e = p
            .allows(&Request {
                snapshots: &[day("2026-01-01")],
                ..ok.clone()
            })
            .unwrap_err();
        assert_eq!(e.scope(), "period");
        assert!(p.in_cohort(2015, Some("091")));
        assert!(!p.in_cohort(2015, Some("049")));
        // A narrower cohort asked for is inside; a wider one is refused naming what.
        assert!(p.allows_cohort(Some([2010, 2015]), &["091".into()]).is_ok());
        let e = p.allows_cohort(Some([2005, 2015]), &[]).unwrap_err();
        assert_eq!(e.scope(), "cohort");
        assert!(e.to_string().contains("2005–2015"), "{e}");
        let e = p.allows_cohort(None, &["049".into()]).unwrap_err();
        assert!(e.to_string().contains("`049`"), "{e}");
        assert!(!p.in_cohort(2007, Some("091")));
        assert!(!p.in_cohort(2015, None));
    }
}
