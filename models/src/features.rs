//! Declarative feature definitions: what a feature means, where it comes from, how it
//! aggregates, over which window, for whom, and how sensitive it is.
//!
//! A feature set is a TOML file (see `feature_sets/child_family.toml`); loading it
//! validates every definition and reports problems with file, line and key. Its version
//! is the SHA-256 of its canonical (parsed) form, so reformatting a file does not change
//! the version and changing a definition always does.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

/// The default feature set for the child-and-family use case.
pub const CHILD_FAMILY: &str = include_str!("../feature_sets/child_family.toml");

/// How sensitive a feature is (GDPR Art 9 and its proxies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Ordinary,
    /// Art 9 health data: a model input only under the configured legal basis.
    Health,
    /// Other Art 9 categories and their proxies: declared, never materialised.
    Prohibited,
    /// Materialised only to measure fairness; never a model input.
    Protected,
}

/// Which registry a feature reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Health,
    Social,
    Population,
}

/// Whose data a feature describes, relative to the scored person, as it stood on the
/// as-of date (relations valid then, and sharing the household then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    #[serde(rename = "self")]
    Person,
    Mother,
    Father,
    Guardian,
    AnyParent,
    Sibling,
}

impl Subject {
    /// How explanations name the subject ("mother: …").
    pub fn label(self) -> &'static str {
        match self {
            Subject::Person => "self",
            Subject::Mother => "mother",
            Subject::Father => "father",
            Subject::Guardian => "guardian",
            Subject::AnyParent => "a parent",
            Subject::Sibling => "a sibling",
        }
    }
}

/// How events (or population facts) become one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Number of matching events in the window.
    Count,
    /// 1 if any matching event, else 0.
    Exists,
    /// Sum of the events' values (amounts, days).
    Sum,
    /// Value of the most recent matching event.
    Latest,
    /// Days from the most recent matching event to the as-of date.
    DaysSinceLast,
    /// Days covered by matching events (start to end, clipped to the window).
    Duration,
    /// Age in whole years on the as-of date (population).
    Age,
    /// Persons sharing the subject's household on the as-of date (population).
    HouseholdSize,
    /// Residence changes in the window, birth excluded (population).
    Moves,
    /// Parents and guardians in the household on the as-of date (population).
    ParentsInHousehold,
    /// Siblings in the household on the as-of date (population).
    SiblingsInHousehold,
    /// A categorical attribute (protected features only): `attribute` names it.
    Attribute,
}

impl Aggregation {
    fn is_population(self) -> bool {
        matches!(
            self,
            Aggregation::Age
                | Aggregation::HouseholdSize
                | Aggregation::Moves
                | Aggregation::ParentsInHousehold
                | Aggregation::SiblingsInHousehold
                | Aggregation::Attribute
        )
    }
}

/// The event kinds a definition can select (the store's event kinds).
pub const EVENT_KINDS: &[(&str, i64)] = &[
    ("encounter", 1),
    ("condition", 2),
    ("observation", 3),
    ("medication", 4),
    ("procedure", 5),
    ("immunization", 6),
    ("social_case", 40),
];

/// Code-system aliases usable in `codes = ["alias:prefix"]`.
pub const CODE_SYSTEMS: &[(&str, &[&str])] = &[
    (
        "icd-10",
        &[
            "http://hl7.org/fhir/sid/icd-10",
            "urn:oid:1.2.246.537.6.1",
            "http://hl7.org/fhir/sid/icd-10-cm",
        ],
    ),
    ("atc", &["http://www.whocc.no/atc"]),
    ("snomed", &["http://snomed.info/sct"]),
    ("loinc", &["http://loinc.org"]),
    ("act", &["http://terminology.hl7.org/CodeSystem/v3-ActCode"]),
    ("social", &["urn:tidig:social-category"]),
];

/// One code pattern: a system alias and a code prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodePattern {
    pub systems: Vec<String>,
    pub prefix: String,
}

impl CodePattern {
    pub fn matches(&self, system: &str, code: &str) -> bool {
        self.systems.iter().any(|s| s == system) && code.starts_with(&self.prefix)
    }
}

/// Which status of event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Events that happened (the default).
    #[default]
    Occurred,
    /// Planned events that did not happen (missed visits, immunizations not done).
    NotDone,
}

/// A validated feature definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureDef {
    pub id: String,
    /// Plain language for explanations: "mother: mental-health diagnosis in the past 2 years".
    pub text: String,
    pub source: Source,
    /// Event kind code in the store, for event aggregations.
    pub event: Option<i64>,
    /// Code patterns on the event's main code; empty means any code.
    pub codes: Vec<CodePattern>,
    /// Code patterns on the event's secondary code (encounter type, local code).
    pub detail_codes: Vec<CodePattern>,
    pub status: StatusFilter,
    pub aggregation: Aggregation,
    /// Look-back window in days (event aggregations and moves).
    pub window_days: Option<u32>,
    pub subject: Subject,
    pub sensitivity: Sensitivity,
    /// For `attribute`: which one (`sex`, `municipality`, `mother_tongue`, …).
    pub attribute: Option<String>,
}

/// The declarative label: what counts as the outcome, and over which horizon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelDef {
    pub id: String,
    pub text: String,
    pub event: i64,
    pub codes: Vec<CodePattern>,
    pub horizon_days: u32,
}

/// Who is in the cohort on the as-of date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    pub min_age: u32,
    pub max_age: u32,
}

/// A validated, versioned feature set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub name: String,
    pub cohort: Cohort,
    pub features: Vec<FeatureDef>,
    pub label: LabelDef,
}

impl FeatureSet {
    /// The version: SHA-256 (hex) of the canonical JSON form.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }

    /// Features that become numbers in the vector (not prohibited, not protected).
    pub fn numeric(&self) -> impl Iterator<Item = &FeatureDef> {
        self.features.iter().filter(|f| {
            !matches!(
                f.sensitivity,
                Sensitivity::Prohibited | Sensitivity::Protected
            )
        })
    }

    /// Protected attributes kept beside the vector for fairness measurement.
    pub fn protected(&self) -> impl Iterator<Item = &FeatureDef> {
        self.features
            .iter()
            .filter(|f| f.sensitivity == Sensitivity::Protected)
    }

    /// The longest look-back window of any feature, in days.
    pub fn max_window_days(&self) -> u32 {
        self.features
            .iter()
            .filter_map(|f| f.window_days)
            .max()
            .unwrap_or(0)
    }
}

/// A definition file is invalid. `line` is 1-based.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: `{key}`: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

// ---- the file format ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    name: Spanned<String>,
    cohort: Spanned<RawCohort>,
    #[serde(rename = "feature")]
    features: Vec<Spanned<RawFeature>>,
    label: Spanned<RawLabel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCohort {
    min_age: u32,
    max_age: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    id: Spanned<String>,
    text: Spanned<String>,
    source: Spanned<String>,
    event: Option<Spanned<String>>,
    #[serde(default)]
    codes: Vec<Spanned<String>>,
    #[serde(default)]
    detail_codes: Vec<Spanned<String>>,
    status: Option<Spanned<String>>,
    aggregation: Spanned<String>,
    window_days: Option<Spanned<i64>>,
    subject: Spanned<String>,
    sensitivity: Spanned<String>,
    attribute: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    id: Spanned<String>,
    text: Spanned<String>,
    event: Spanned<String>,
    codes: Vec<Spanned<String>>,
    horizon_days: Spanned<i64>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        spanned: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> DefinitionError {
        DefinitionError {
            file: self.file.into(),
            line: self.line(spanned.span().start),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Parses a string against the serde names of an enum.
    fn choice<T: for<'de> Deserialize<'de>>(
        &self,
        s: &Spanned<String>,
        key: &str,
        allowed: &str,
    ) -> Result<T, DefinitionError> {
        T::deserialize(
            serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s.get_ref()),
        )
        .map_err(|_| self.err(s, key, format!("`{}` is not one of {allowed}", s.get_ref())))
    }

    fn codes(
        &self,
        list: &[Spanned<String>],
        key: &str,
    ) -> Result<Vec<CodePattern>, DefinitionError> {
        list.iter()
            .map(|c| {
                let (alias, prefix) = c.get_ref().split_once(':').ok_or_else(|| {
                    self.err(
                        c,
                        key,
                        format!("`{}`: expected `system:code-prefix`", c.get_ref()),
                    )
                })?;
                let systems = CODE_SYSTEMS
                    .iter()
                    .find(|(a, _)| *a == alias)
                    .map(|(_, s)| s.iter().map(|s| s.to_string()).collect())
                    .ok_or_else(|| {
                        let known: Vec<&str> = CODE_SYSTEMS.iter().map(|(a, _)| *a).collect();
                        self.err(
                            c,
                            key,
                            format!(
                                "unknown code system `{alias}` (known: {})",
                                known.join(", ")
                            ),
                        )
                    })?;
                if prefix.is_empty() {
                    return Err(self.err(c, key, "empty code prefix"));
                }
                Ok(CodePattern {
                    systems,
                    prefix: prefix.to_string(),
                })
            })
            .collect()
    }

    fn event(&self, s: &Spanned<String>, key: &str) -> Result<i64, DefinitionError> {
        EVENT_KINDS
            .iter()
            .find(|(n, _)| *n == s.get_ref())
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let known: Vec<&str> = EVENT_KINDS.iter().map(|(n, _)| *n).collect();
                self.err(
                    s,
                    key,
                    format!("`{}` is not one of {}", s.get_ref(), known.join(", ")),
                )
            })
    }
}

/// Parses and validates a feature-set file. `file` names it in errors.
pub fn parse_feature_set(file: &str, text: &str) -> Result<FeatureSet, DefinitionError> {
    let ctx = Ctx { file, text };
    let raw: RawSet = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| ctx.line(s.start));
        DefinitionError {
            file: file.into(),
            line,
            key: "-".into(),
            message: e.message().to_string(),
        }
    })?;
    let cohort = raw.cohort.get_ref();
    if cohort.min_age > cohort.max_age {
        return Err(ctx.err(&raw.cohort, "cohort", "min_age is above max_age"));
    }
    let mut ids = HashSet::new();
    let mut features = Vec::new();
    for f in &raw.features {
        let f = f.get_ref();
        let id = f.id.get_ref();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ctx.err(&f.id, "id", "use lower-case letters, digits and `_`"));
        }
        if !ids.insert(id.clone()) {
            return Err(ctx.err(&f.id, "id", format!("`{id}` is defined twice")));
        }
        if f.text.get_ref().trim().len() < 8 {
            return Err(ctx.err(
                &f.text,
                "text",
                "needs a plain-language sentence for explanations",
            ));
        }
        let source: Source = ctx.choice(&f.source, "source", "health, social, population")?;
        let aggregation: Aggregation = ctx.choice(
            &f.aggregation,
            "aggregation",
            "count, exists, sum, latest, days_since_last, duration, age, household_size, moves, parents_in_household, siblings_in_household, attribute",
        )?;
        let subject: Subject = ctx.choice(
            &f.subject,
            "subject",
            "self, mother, father, guardian, any_parent, sibling",
        )?;
        let sensitivity: Sensitivity = ctx.choice(
            &f.sensitivity,
            "sensitivity",
            "ordinary, health, prohibited, protected",
        )?;
        let status: StatusFilter = match &f.status {
            Some(s) => ctx.choice(s, "status", "occurred, not_done")?,
            None => StatusFilter::Occurred,
        };
        let event = match &f.event {
            Some(e) => Some(ctx.event(e, "event")?),
            None => None,
        };
        let window_days = match &f.window_days {
            Some(w) if *w.get_ref() < 1 || *w.get_ref() > 36_500 => {
                return Err(ctx.err(w, "window_days", "expected 1 to 36500 days"))
            }
            Some(w) => Some(*w.get_ref() as u32),
            None => None,
        };
        if aggregation.is_population() {
            if source != Source::Population {
                return Err(ctx.err(
                    &f.source,
                    "source",
                    format!(
                        "`{}` reads the population register: use source = \"population\"",
                        f.aggregation.get_ref()
                    ),
                ));
            }
            let single = matches!(subject, Subject::Mother | Subject::Father | Subject::Person);
            if aggregation != Aggregation::Age && subject != Subject::Person
                || aggregation == Aggregation::Age && !single
            {
                return Err(ctx.err(
                    &f.subject,
                    "subject",
                    format!(
                        "`{}` is defined for self (and `age` for self, mother or father)",
                        f.aggregation.get_ref()
                    ),
                ));
            }
            if aggregation == Aggregation::Moves && window_days.is_none() {
                return Err(ctx.err(&f.aggregation, "window_days", "`moves` needs a window"));
            }
        } else {
            let Some(kind) = event else {
                return Err(ctx.err(
                    &f.aggregation,
                    "event",
                    "event aggregations need an `event` kind",
                ));
            };
            if window_days.is_none() {
                return Err(ctx.err(
                    &f.aggregation,
                    "window_days",
                    "event aggregations need a look-back window",
                ));
            }
            let social = kind == 40;
            if social != (source == Source::Social) {
                return Err(ctx.err(
                    &f.source,
                    "source",
                    "social_case events come from source = \"social\", all others from \"health\"",
                ));
            }
            if source == Source::Health && sensitivity == Sensitivity::Ordinary {
                return Err(ctx.err(
                    &f.sensitivity,
                    "sensitivity",
                    "health-registry features are Art 9 health data: sensitivity = \"health\"",
                ));
            }
        }
        if aggregation == Aggregation::Attribute {
            if sensitivity != Sensitivity::Protected && sensitivity != Sensitivity::Prohibited {
                return Err(ctx.err(
                    &f.sensitivity,
                    "sensitivity",
                    "attributes are kept for fairness only: protected or prohibited",
                ));
            }
            match &f.attribute {
                Some(a)
                    if [
                        "sex",
                        "municipality",
                        "mother_tongue",
                        "citizenship",
                        "country_of_birth",
                    ]
                    .contains(&a.get_ref().as_str()) => {}
                Some(a) => return Err(ctx.err(
                    a,
                    "attribute",
                    "expected sex, municipality, mother_tongue, citizenship or country_of_birth",
                )),
                None => {
                    return Err(ctx.err(
                        &f.aggregation,
                        "attribute",
                        "`attribute` aggregation needs `attribute = …`",
                    ))
                }
            }
        } else if sensitivity == Sensitivity::Protected {
            return Err(ctx.err(
                &f.sensitivity,
                "sensitivity",
                "protected features are categorical attributes (aggregation = \"attribute\")",
            ));
        }
        features.push(FeatureDef {
            id: id.clone(),
            text: f.text.get_ref().trim().to_string(),
            source,
            event,
            codes: ctx.codes(&f.codes, "codes")?,
            detail_codes: ctx.codes(&f.detail_codes, "detail_codes")?,
            status,
            aggregation,
            window_days,
            subject,
            sensitivity,
            attribute: f.attribute.as_ref().map(|a| a.get_ref().clone()),
        });
    }
    if features.is_empty() {
        return Err(ctx.err(&raw.name, "feature", "the set defines no features"));
    }
    let l = raw.label.get_ref();
    let horizon = *l.horizon_days.get_ref();
    if !(1..=3650).contains(&horizon) {
        return Err(ctx.err(&l.horizon_days, "horizon_days", "expected 1 to 3650 days"));
    }
    if l.codes.is_empty() {
        return Err(ctx.err(&l.id, "codes", "the label needs at least one code"));
    }
    let label = LabelDef {
        id: l.id.get_ref().clone(),
        text: l.text.get_ref().trim().to_string(),
        event: ctx.event(&l.event, "event")?,
        codes: ctx.codes(&l.codes, "codes")?,
        horizon_days: horizon as u32,
    };
    Ok(FeatureSet {
        name: raw.name.get_ref().clone(),
        cohort: Cohort {
            min_age: cohort.min_age,
            max_age: cohort.max_age,
        },
        features,
        label,
    })
}

/// The built-in child-and-family feature set.
pub fn child_family() -> Result<FeatureSet, DefinitionError> {
    parse_feature_set("feature_sets/child_family.toml", CHILD_FAMILY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_valid_and_sized_for_the_use_case() {
        let set = child_family().unwrap();
        let n = set.numeric().count();
        assert!((40..=80).contains(&n), "{n} numeric features");
        for source in [Source::Health, Source::Social, Source::Population] {
            assert!(set.numeric().any(|f| f.source == source), "{source:?}");
        }
        assert!(set.protected().count() >= 3);
        assert_eq!(set.hash().len(), 64);
    }

    fn check_error(text: &str, line: usize, key: &str, message: &str) {
        let err = parse_feature_set("x.toml", text).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (line, key), "{err}");
        assert!(err.message.contains(message), "{err}");
        assert!(
            err.to_string().starts_with(&format!("x.toml:{line}:")),
            "{err}"
        );
    }

    const HEAD: &str = "name = \"t\"\ncohort = { min_age = 0, max_age = 17 }\n[label]\nid = \"l\"\ntext = \"label text here\"\nevent = \"social_case\"\ncodes = [\"social:child_welfare_intervention\"]\nhorizon_days = 365\n";

    fn with_feature(body: &str) -> String {
        format!("{HEAD}[[feature]]\n{body}")
    }

    const OK: &str = "id = \"er\"\ntext = \"emergency visits in a year\"\nsource = \"health\"\nevent = \"encounter\"\ncodes = [\"act:EMER\"]\naggregation = \"count\"\nwindow_days = 365\nsubject = \"self\"\nsensitivity = \"health\"\n";

    #[test]
    fn a_valid_minimal_set_parses() {
        let set = parse_feature_set("x.toml", &with_feature(OK)).unwrap();
        assert_eq!(set.features[0].codes[0].prefix, "EMER");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        // Lines: 9 is `[[feature]]`, 10 is `id`, 11 `text`, 12 `source`, …
        check_error(
            &with_feature(&OK.replace("\"count\"", "\"median\"")),
            15,
            "aggregation",
            "`median` is not one of",
        );
        check_error(
            &with_feature(&OK.replace("act:EMER", "cpt:EMER")),
            14,
            "codes",
            "unknown code system `cpt`",
        );
        check_error(
            &with_feature(&OK.replace("window_days = 365", "window_days = 0")),
            16,
            "window_days",
            "expected 1 to 36500",
        );
        check_error(
            &with_feature(&OK.replace("sensitivity = \"health\"", "sensitivity = \"ordinary\"")),
            18,
            "sensitivity",
            "Art 9",
        );
        check_error(
            &with_feature(&OK.replace("subject = \"self\"", "subject = \"aunt\"")),
            17,
            "subject",
            "`aunt`",
        );
        check_error(
            &with_feature(&format!("{OK}colour = \"red\"\n")),
            19,
            "-",
            "unknown field `colour`",
        );
        let twice = format!("{}[[feature]]\n{OK}", with_feature(OK));
        check_error(&twice, 20, "id", "defined twice");
    }

    #[test]
    fn the_version_follows_content_not_formatting() {
        let a = parse_feature_set("x.toml", &with_feature(OK)).unwrap();
        let b = parse_feature_set("x.toml", &with_feature(&OK.replace("= ", "=  "))).unwrap();
        let c = parse_feature_set("x.toml", &with_feature(&OK.replace("365", "366"))).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }
}
