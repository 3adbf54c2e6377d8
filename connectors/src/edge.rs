//! The edge: the one place where raw identifiers become pseudonyms.
//!
//! Every parser owns an [`Edge`] for the duration of a file. It validates national IDs,
//! derives person keys, seals raw IDs for the vault the first time a person is seen,
//! interns codes, and resolves source-system references to persons.

use std::collections::{HashMap, HashSet};

use crate::national_id::{self, Country, IdRules, NationalId, NationalIdError};
use crate::pseudonym::{public_key63, Identity, PersonKey, Pseudonymizer, Vault};
use crate::record::{AliasRow, CodeRow, PersonRow, Record, Sink};

/// Secrets and settings shared by all parsers of one ingest.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub pseudonymizer: Pseudonymizer,
    pub vault: Vault,
    pub id_rules: IdRules,
    /// The country whose national ID population and social-services extracts carry.
    pub country: Country,
    /// FHIR identifier systems that name a person, in order of preference.
    pub person_systems: Vec<PersonSystem>,
    /// Bounds on what one input may make a parser hold.
    pub limits: Limits,
}

/// Bounds on hostile input: a parser never holds more than this of one line or document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest line read; a longer one is rejected without being held.
    pub max_line_bytes: usize,
    /// The largest FHIR Bundle read (Bundles are parsed whole; use NDJSON for more).
    pub max_bundle_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: 8 << 20,
            max_bundle_bytes: 256 << 20,
        }
    }
}

/// How a patient reference resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The person it names.
    Person(i64),
    /// Nobody loaded yet: the keyed reference, to be resolved when the Patient arrives.
    Pending(i64),
}

/// What a line changed in the edge's state, undone if the line is rejected.
#[derive(Clone, Copy, Debug)]
enum Undo {
    Sealed(i64),
    Code(i64),
    Alias(i64, Option<i64>),
}

/// A FHIR identifier system accepted as the person key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonSystem {
    pub system: String,
    /// `Some` for a Nordic national ID (validated exactly); `None` for an opaque
    /// identifier such as a US SSN or an MRN.
    pub country: Option<Country>,
}

impl PersonSystem {
    /// The systems for the four Nordic national IDs.
    pub fn nordic() -> Vec<PersonSystem> {
        [Country::Fi, Country::Se, Country::Dk, Country::No]
            .into_iter()
            .map(|c| PersonSystem {
                system: c.fhir_system().to_string(),
                country: Some(c),
            })
            .collect()
    }
}

/// Per-file state around [`EdgeConfig`].
#[derive(Debug)]
pub struct Edge<'c> {
    config: &'c EdgeConfig,
    sealed_persons: HashSet<i64>,
    codes: HashSet<i64>,
    /// Keyed reference hash → person id. Seeded by the caller from the store.
    aliases: HashMap<i64, i64>,
    /// The current line's changes to the sets above.
    journal: Vec<Undo>,
}

impl<'c> Edge<'c> {
    pub fn new(config: &'c EdgeConfig) -> Edge<'c> {
        Edge {
            config,
            sealed_persons: HashSet::new(),
            codes: HashSet::new(),
            aliases: HashMap::new(),
            journal: Vec::new(),
        }
    }

    /// The current line is accepted: what it taught the edge stays.
    pub(crate) fn commit_line(&mut self) {
        self.journal.clear();
    }

    /// The current line is rejected: forget the persons, codes and aliases it introduced,
    /// so that the next line mentioning them emits them again.
    pub(crate) fn rollback_line(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Sealed(id) => {
                    self.sealed_persons.remove(&id);
                }
                Undo::Code(id) => {
                    self.codes.remove(&id);
                }
                Undo::Alias(key, None) => {
                    self.aliases.remove(&key);
                }
                Undo::Alias(key, Some(old)) => {
                    self.aliases.insert(key, old);
                }
            }
        }
    }

    pub fn config(&self) -> &EdgeConfig {
        self.config
    }

    /// Seeds known reference aliases (from earlier files or runs).
    pub fn with_aliases(mut self, aliases: HashMap<i64, i64>) -> Edge<'c> {
        self.aliases = aliases;
        self
    }

    /// Gives back the alias map, with what this file added, for the next file.
    pub fn into_aliases(self) -> HashMap<i64, i64> {
        self.aliases
    }

    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.config.pseudonymizer
    }

    /// Validates a national ID of the configured country.
    pub fn national_id(&self, raw: &str) -> Result<NationalId, NationalIdError> {
        national_id::parse(self.config.country, raw, &self.config.id_rules)
    }

    /// Validates a national ID of an explicit country.
    pub fn national_id_of(
        &self,
        country: Country,
        raw: &str,
    ) -> Result<NationalId, NationalIdError> {
        national_id::parse(country, raw, &self.config.id_rules)
    }

    /// The person key for a validated identity, emitting the person (with the sealed raw
    /// ID) the first time this edge sees them. `facts` fills in demographics.
    pub fn person(
        &mut self,
        identity: Identity<'_>,
        facts: PersonFacts,
        sink: &mut dyn Sink,
    ) -> PersonKey {
        let key = self.config.pseudonymizer.person(identity);
        let first = self.sealed_persons.insert(key.id);
        if first {
            self.journal.push(Undo::Sealed(key.id));
        }
        if first || facts.has_any() {
            let (scheme, birth, sex) = match identity {
                Identity::National(id) => {
                    (id.country().code(), Some(days(id.birth_date())), id.sex())
                }
                Identity::Opaque { .. } => ("opaque", None, None),
            };
            sink.record(Record::Person(PersonRow {
                key,
                scheme,
                birth_date: facts.birth_date.or(birth),
                sex: facts.sex.or(sex),
                death_date: facts.death_date,
                sealed: first.then(|| self.config.vault.seal(identity, &key)),
            }));
        }
        key
    }

    /// The interned id of a code, emitting its definition the first time.
    pub fn code(&mut self, system: &str, code: &str, sink: &mut dyn Sink) -> i64 {
        let id = public_key63("code", &[system.as_bytes(), code.as_bytes()]);
        if self.codes.insert(id) {
            self.journal.push(Undo::Code(id));
            sink.record(Record::Code(CodeRow {
                id,
                system: system.to_string(),
                code: code.to_string(),
            }));
        }
        id
    }

    /// Registers a reference (`Patient/123`) as naming a person.
    pub fn alias(&mut self, reference: &str, person_id: i64, sink: &mut dyn Sink) {
        let ref_key = self.ref_key(reference);
        let old = self.aliases.insert(ref_key, person_id);
        if old != Some(person_id) {
            self.journal.push(Undo::Alias(ref_key, old));
            sink.record(Record::Alias(AliasRow { ref_key, person_id }));
        }
    }

    /// Resolves a reference registered earlier.
    pub fn resolve(&self, reference: &str) -> Option<i64> {
        self.aliases.get(&self.ref_key(reference)).copied()
    }

    /// Resolves a reference, or gives the key under which it waits for its Patient.
    pub fn subject(&self, reference: &str) -> Subject {
        let key = self.ref_key(reference);
        match self.aliases.get(&key) {
            Some(&person) => Subject::Person(person),
            None => Subject::Pending(key),
        }
    }

    fn ref_key(&self, reference: &str) -> i64 {
        self.config
            .pseudonymizer
            .key63("fhir-ref", &[reference.as_bytes()])
    }

    /// A keyed record key for a record's natural key.
    pub fn record_key(&self, domain: &str, parts: &[&[u8]]) -> i64 {
        self.config.pseudonymizer.key63(domain, parts)
    }
}

/// Demographics known from the record itself (beyond what the ID encodes).
#[derive(Clone, Copy, Debug, Default)]
pub struct PersonFacts {
    pub birth_date: Option<i32>,
    pub sex: Option<national_id::Sex>,
    pub death_date: Option<i32>,
}

impl PersonFacts {
    fn has_any(&self) -> bool {
        self.birth_date.is_some() || self.sex.is_some() || self.death_date.is_some()
    }
}

/// Days since 1970-01-01 for a date.
pub fn days(date: chrono::NaiveDate) -> i32 {
    const EPOCH_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&date) - EPOCH_CE
}
