//! `tidig synth`: a synthetic municipality with realistic registry extracts.
//!
//! The world is a set of households, each with a latent *need* that drifts from year to
//! year. Need drives what the registries see (missed child-health visits, emergency
//! visits, parental mental-health and substance-use diagnoses, income and housing
//! support, unemployment benefit, child-welfare notifications, school absence, moves and
//! separations) and, through a logistic link, whether a child receives a child-welfare
//! intervention. The interventions before the reference date are ordinary social-services
//! events; the outcome in the 12 months after it is written only to `truth/`, with its
//! true probability. Foreign-language households have a slightly higher mean need *and*
//! are reported to child welfare more often at equal need, so fairness metrics have
//! something real to find. Everything is deterministic for a seed.

mod geo;
pub mod ids;
mod out;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{Datelike, Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tidig_connectors::national_id::{Country, Sex};
use tidig_connectors::population::{ADDRESSES_HEADER, PERSONS_HEADER, RELATIONS_HEADER};

pub use geo::Geography;
use out::{Faults, LineParts, OutFile};

/// Settings of one generation run.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub out: PathBuf,
    pub persons: usize,
    pub seed: u64,
    pub country: Country,
    /// The "today" of the synthetic world: history ends here, truth starts here.
    pub reference_date: NaiveDate,
    /// Fraction of data lines given a fault (0 for clean data).
    pub corrupt_rate: f64,
    pub gzip: bool,
    /// Years of event history before the reference date.
    pub history_years: u32,
    /// Municipality code (`091` Helsinki by default).
    pub municipality: String,
    /// Directory with the Statistics Finland population files.
    pub population_data: Option<PathBuf>,
    /// Write social-services events as JSON Lines instead of CSV.
    pub social_jsonl: bool,
}

impl SynthConfig {
    /// A configuration from values given by people, each checked with the flag named.
    pub fn parse(
        out: PathBuf,
        persons: usize,
        seed: u64,
        country: &str,
        reference_date: &str,
        corrupt_rate: f64,
    ) -> Result<SynthConfig, crate::error::EngineError> {
        use crate::error::EngineError;
        let country = Country::from_code(country).ok_or_else(|| {
            EngineError::invalid(
                "--country",
                format!("`{country}` is not one of fi, se, dk, no"),
            )
        })?;
        let reference_date = crate::dates::parse("--reference-date", reference_date)?;
        if !(0.0..=1.0).contains(&corrupt_rate) {
            return Err(EngineError::invalid(
                "--corrupt-rate",
                format!("{corrupt_rate} is not a fraction between 0 and 1"),
            ));
        }
        if persons == 0 {
            return Err(EngineError::invalid("--persons", "must be at least 1"));
        }
        Ok(SynthConfig {
            persons,
            seed,
            country,
            reference_date,
            corrupt_rate,
            ..SynthConfig::new(out)
        })
    }

    pub fn new(out: PathBuf) -> SynthConfig {
        SynthConfig {
            out,
            persons: 20_000,
            seed: 42,
            country: Country::Fi,
            reference_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            corrupt_rate: 0.0,
            gzip: false,
            history_years: 6,
            municipality: "091".into(),
            population_data: None,
            social_jsonl: false,
        }
    }
}

/// What a generation run wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SynthReport {
    pub out: String,
    pub country: String,
    pub municipality: String,
    pub geography_source: String,
    pub reference_date: String,
    pub persons: u64,
    pub households: u64,
    pub children_at_reference: u64,
    pub fhir_resources: u64,
    pub social_events: u64,
    pub population_rows: u64,
    pub truth_positive: u64,
    pub truth_base_rate: f64,
    pub corruptions: u64,
}

const SNOMED: &str = "http://snomed.info/sct";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const ATC: &str = "http://www.whocc.no/atc";
const LOINC: &str = "http://loinc.org";
const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// Bumped whenever the same seed stops producing the same world, so cached benchmark
/// data is regenerated rather than silently reused.
pub const GENERATOR_VERSION: u32 = 2;

/// The manifest of the extracts in `dir`, if this generator version wrote them.
pub fn current_manifest(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    (manifest["generator_version"].as_u64() == Some(u64::from(GENERATOR_VERSION)))
        .then_some(manifest)
}

/// The yearly shock of the latent need: `sqrt(1 − 0.9²)`, so its variance stays 1.
const NEED_SHOCK_SD: f64 = 0.436;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-12);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> u32 {
    let l = (-lambda.min(30.0)).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u64 = items.iter().map(|(_, w)| *w as u64).sum();
    let mut pick = rng.gen_range(0..total.max(1));
    for (item, w) in items {
        if pick < *w as u64 {
            return item;
        }
        pick -= *w as u64;
    }
    &items[items.len() - 1].0
}

/// A synthetic resident.
struct Person {
    nid: String,
    fhir_id: String,
    birth: NaiveDate,
    sex: Sex,
    death: Option<NaiveDate>,
    mother_tongue: &'static str,
    citizenship: &'static str,
    country_of_birth: &'static str,
    /// Diagnosed conditions that recur (mental health, substance use).
    mental: bool,
    substance: bool,
}

impl Person {
    fn age_on(&self, d: NaiveDate) -> i32 {
        let mut age = d.year() - self.birth.year();
        if (d.month(), d.day()) < (self.birth.month(), self.birth.day()) {
            age -= 1;
        }
        age
    }
    fn alive_on(&self, d: NaiveDate) -> bool {
        self.birth <= d && self.death.is_none_or(|x| d < x)
    }
}

/// The FHIR files of resources that refer to a patient.
#[derive(Clone, Copy)]
enum Fhir {
    Encounter,
    Condition,
    Observation,
    Medication,
    Immunization,
}

/// All output files.
struct Files {
    persons: OutFile,
    addresses: OutFile,
    relations: OutFile,
    patient: OutFile,
    encounter: OutFile,
    condition: OutFile,
    observation: OutFile,
    medication: OutFile,
    immunization: OutFile,
    social: OutFile,
    truth: OutFile,
}

struct World<'c> {
    cfg: &'c SynthConfig,
    geo: Geography,
    rng: ChaCha8Rng,
    faults: Faults,
    files: Files,
    used_ids: HashSet<String>,
    counter: u64,
    report: SynthReport,
    history_start: NaiveDate,
    line: String,
}

/// Generates a synthetic municipality under `cfg.out`. `progress` receives the number of
/// persons written so far.
pub fn generate(cfg: &SynthConfig, progress: &dyn Fn(u64)) -> Result<SynthReport> {
    let geo = Geography::load(&cfg.municipality, cfg.population_data.as_deref())?;
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let root = &cfg.out;
    let faults = cfg.corrupt_rate > 0.0;
    let gz = cfg.gzip;
    let ndjson =
        |name: &str| OutFile::create(root, &format!("health/{name}.000.ndjson"), gz, faults);
    let files = Files {
        persons: OutFile::create(root, "population/persons.csv", false, faults)?,
        addresses: OutFile::create(root, "population/addresses.csv", false, faults)?,
        relations: OutFile::create(root, "population/relations.csv", false, faults)?,
        // Patients are never corrupted: a lost patient takes all their resources along.
        patient: OutFile::create(root, "health/Patient.000.ndjson", gz, false)?,
        encounter: ndjson("Encounter")?,
        condition: ndjson("Condition")?,
        observation: ndjson("Observation")?,
        medication: ndjson("MedicationRequest")?,
        immunization: ndjson("Immunization")?,
        social: OutFile::create(
            root,
            if cfg.social_jsonl {
                "social/case_events.jsonl"
            } else {
                "social/case_events.csv"
            },
            false,
            faults,
        )?,
        truth: OutFile::create(root, "truth/outcomes.csv", false, false)?,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let fault_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_fa17);
    let history_start = cfg.reference_date - Duration::days(365 * cfg.history_years as i64);
    let mut world = World {
        cfg,
        report: SynthReport {
            out: cfg.out.display().to_string(),
            country: cfg.country.code().into(),
            municipality: format!("{} {}", geo.code, geo.name),
            geography_source: geo.source.clone(),
            reference_date: cfg.reference_date.to_string(),
            ..SynthReport::default()
        },
        geo,
        rng: ChaCha8Rng::seed_from_u64(rng.gen()),
        faults: Faults::new(cfg.corrupt_rate, fault_rng, cfg.country),
        files,
        used_ids: HashSet::new(),
        counter: 0,
        history_start,
        line: String::with_capacity(1024),
    };
    world.headers()?;
    while (world.report.persons as usize) < cfg.persons {
        world.household()?;
        progress(world.report.persons);
    }
    world.finish()
}

impl World<'_> {
    fn headers(&mut self) -> Result<()> {
        self.files.persons.header(&PERSONS_HEADER.join(","))?;
        self.files.addresses.header(&ADDRESSES_HEADER.join(","))?;
        self.files.relations.header(&RELATIONS_HEADER.join(","))?;
        if !self.cfg.social_jsonl {
            self.files
                .social
                .header(&tidig_connectors::social::HEADER.join(","))?;
        }
        self.files
            .truth
            .header("national_id,as_of,age,true_probability,outcome")?;
        Ok(())
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!(
            "{prefix}-{:012x}",
            self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
        )
    }

    fn new_person(&mut self, birth: NaiveDate, sex: Sex, tongue: &'static str) -> Person {
        let nid = loop {
            let candidate = ids::make(self.cfg.country, birth, sex, &mut self.rng);
            if self.used_ids.insert(candidate.clone()) {
                break candidate;
            }
        };
        let foreign = tongue != "fi" && tongue != "sv";
        let (citizenship, cob) = if foreign {
            let c = match tongue {
                "ru" => "ru",
                "et" => "ee",
                "so" => "so",
                "ar" => "iq",
                _ => "gb",
            };
            if self.rng.gen::<f64>() < 0.55 {
                (c, c)
            } else {
                ("fi", c)
            }
        } else {
            ("fi", "fi")
        };
        Person {
            nid,
            fhir_id: self.next_id("pat"),
            birth,
            sex,
            death: None,
            mother_tongue: tongue,
            citizenship,
            country_of_birth: cob,
            mental: false,
            substance: false,
        }
    }

    fn birth_for_age(&mut self, lo: i32, hi: i32) -> NaiveDate {
        let days = self.rng.gen_range(lo as i64 * 365..(hi as i64 + 1) * 365);
        self.cfg.reference_date - Duration::days(days + 1)
    }

    fn random_day(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        let span = (to - from).num_days().max(1);
        from + Duration::days(self.rng.gen_range(0..span))
    }

    /// Generates one household with its whole history.
    fn household(&mut self) -> Result<()> {
        let r: f64 = self.rng.gen();
        let tongue = {
            let t: f64 = self.rng.gen();
            match t {
                t if t < 0.80 => "fi",
                t if t < 0.86 => "sv",
                t if t < 0.90 => "ru",
                t if t < 0.93 => "et",
                t if t < 0.96 => "so",
                t if t < 0.98 => "ar",
                _ => "en",
            }
        };
        let foreign = tongue != "fi" && tongue != "sv";
        // (adults, children, elderly)
        let (adults, kids, elderly) = match r {
            r if r < 0.30 => (1, 0, false),
            r if r < 0.48 => (2, 0, false),
            r if r < 0.78 => (2, self.kid_count(), false),
            r if r < 0.90 => (1, self.kid_count(), false),
            _ => (if self.rng.gen::<f64>() < 0.5 { 1 } else { 2 }, 0, true),
        };
        let mut members: Vec<Person> = Vec::new();
        let mother_age = if elderly {
            self.rng.gen_range(66..94)
        } else {
            self.rng.gen_range(22..60)
        };
        let mb = self.birth_for_age(mother_age, mother_age);
        let first_sex = if adults == 1 && kids == 0 && self.rng.gen::<f64>() < 0.5 {
            Sex::Male
        } else {
            Sex::Female
        };
        members.push(self.new_person(mb, first_sex, tongue));
        if adults == 2 {
            let fa = (mother_age + self.rng.gen_range(-2..6)).max(19);
            let fb = self.birth_for_age(fa, fa);
            members.push(self.new_person(fb, Sex::Male, tongue));
        }
        let n_adults = members.len();
        for _ in 0..kids {
            // Children are born when the mother is 19–45.
            let max_age = (mother_age - 19).clamp(0, 17);
            let min_age = (mother_age - 45).clamp(0, max_age);
            let age = self.rng.gen_range(min_age..=max_age);
            let kb = self.birth_for_age(age, age);
            let sex = if self.rng.gen::<bool>() {
                Sex::Male
            } else {
                Sex::Female
            };
            members.push(self.new_person(kb, sex, tongue));
        }
        // Latent need: AR(1) per year with a stationary standard deviation of 1, persistent
        // (0.9 from one year to the next) as household disadvantage is; foreign-language
        // households are shifted upwards.
        let shift = if foreign { 0.35 } else { 0.0 };
        let mut need = normal(&mut self.rng) + shift;
        let report_bias = if foreign { 1.4 } else { 1.0 };

        // Deaths among the elderly.
        for p in members.iter_mut() {
            let age = p.age_on(self.cfg.reference_date);
            if age >= 70 && self.rng.gen::<f64>() < (age as f64 - 60.0) / 120.0 {
                let from = self.history_start.max(p.birth);
                let span = (self.cfg.reference_date - from).num_days().max(2);
                p.death = Some(from + Duration::days(self.rng.gen_range(1..span)));
            }
        }

        // Addresses: a dwelling per spell; moves and separations start new spells.
        let mut postcode = weighted(&mut self.rng, &self.geo.postcodes).clone();
        let mut municipality = self.geo.code.clone();
        let mut dwelling = self.next_id("D");
        let moved_in = self.history_start - Duration::days(self.rng.gen_range(0..3650));
        let mut spell_start: Vec<NaiveDate> =
            members.iter().map(|p| p.birth.max(moved_in)).collect();
        let mut living: Vec<bool> = vec![true; members.len()];

        for p in &members {
            self.write_person(p)?;
        }
        for k in n_adults..members.len() {
            for parent in 0..n_adults {
                let rel = if members[parent].sex == Sex::Female {
                    "mother"
                } else {
                    "father"
                };
                let (c, p, b) = (
                    members[k].nid.clone(),
                    members[parent].nid.clone(),
                    members[k].birth,
                );
                self.write_relation(&c, &p, rel, b)?;
            }
        }

        let mut notified_last_year: Vec<u32> = vec![0; members.len()];
        for year in 0..=self.cfg.history_years {
            let start = self.history_start + Duration::days(365 * year as i64);
            let end = start + Duration::days(365);
            let is_future = year == self.cfg.history_years;
            // What is known of next year's need on its first day: its mean. The year's
            // own shock is drawn now but is not knowable at the as-of date.
            let expected_need = 0.9 * need + 0.1 * shift;
            need = expected_need + NEED_SHOCK_SD * normal(&mut self.rng);
            if is_future {
                let known = (expected_need, NEED_SHOCK_SD);
                self.truth(&members, n_adults, need, known, &notified_last_year, start)?;
                break;
            }
            // Moves and separations happen during the year.
            let move_p = 0.07 + 0.05 * sigmoid(need);
            if self.rng.gen::<f64>() < move_p {
                let when = self.random_day(start, end);
                for (i, p) in members.iter().enumerate() {
                    if living[i] && p.alive_on(when) && spell_start[i] < when {
                        let (nid, from) = (p.nid.clone(), spell_start[i]);
                        self.write_address(
                            &nid,
                            from,
                            Some(when),
                            &municipality,
                            &postcode,
                            &dwelling,
                        )?;
                        spell_start[i] = when;
                    }
                }
                if self.rng.gen::<f64>() < 0.15 && !self.geo.elsewhere.is_empty() {
                    municipality = weighted(&mut self.rng, &self.geo.elsewhere).clone();
                    postcode = format!("{:05}", self.rng.gen_range(10_000..99_999));
                } else {
                    municipality = self.geo.code.clone();
                    postcode = weighted(&mut self.rng, &self.geo.postcodes).clone();
                }
                dwelling = self.next_id("D");
            }
            if n_adults == 2 && members.len() > 2 && living[1] {
                let p_sep = sigmoid(-3.6 + 0.6 * need);
                if self.rng.gen::<f64>() < p_sep {
                    let when = self.random_day(start, end);
                    if members[1].alive_on(when) && spell_start[1] < when {
                        let (nid, from) = (members[1].nid.clone(), spell_start[1]);
                        self.write_address(
                            &nid,
                            from,
                            Some(when),
                            &municipality,
                            &postcode,
                            &dwelling,
                        )?;
                        let own = self.next_id("D");
                        let pc = weighted(&mut self.rng, &self.geo.postcodes).clone();
                        let code = self.geo.code.clone();
                        self.write_address(&nid, when, None, &code, &pc, &own)?;
                        living[1] = false;
                    }
                }
            }
            // Events of the year.
            for i in 0..members.len() {
                let notified =
                    self.person_year(&mut members[i], i < n_adults, need, report_bias, start, end)?;
                if i >= n_adults {
                    self.intervention(&members[i], need, notified_last_year[i], start, end)?;
                }
                notified_last_year[i] = notified;
            }
            self.household_year(&members, n_adults, kids > 0, need, start, end)?;
        }
        // Close the current address spells.
        for (i, p) in members.iter().enumerate() {
            if living[i] {
                let (nid, from) = (p.nid.clone(), spell_start[i]);
                let to = p.death;
                self.write_address(&nid, from, to, &municipality, &postcode, &dwelling)?;
            }
        }
        self.report.households += 1;
        self.report.persons += members.len() as u64;
        Ok(())
    }

    fn kid_count(&mut self) -> usize {
        match self.rng.gen::<f64>() {
            r if r < 0.40 => 1,
            r if r < 0.80 => 2,
            r if r < 0.95 => 3,
            _ => 4,
        }
    }

    /// Writes each child's true probability *given the world on the as-of date* (the
    /// year's need shock integrated out) and the outcome, drawn with the shock.
    fn truth(
        &mut self,
        members: &[Person],
        n_adults: usize,
        need: f64,
        known: (f64, f64),
        notified: &[u32],
        as_of: NaiveDate,
    ) -> Result<()> {
        for (i, child) in members.iter().enumerate().skip(n_adults) {
            let age = child.age_on(as_of);
            if !(0..=17).contains(&age) || !child.alive_on(as_of) {
                continue;
            }
            let outcome = self.rng.gen::<f64>() < intervention_probability(need, notified[i], age);
            let p = expected_probability(known.0, known.1, notified[i], age);
            self.report.children_at_reference += 1;
            self.report.truth_positive += outcome as u64;
            self.line.clear();
            let _ = write!(
                self.line,
                "{},{as_of},{age},{p:.6},{}",
                child.nid, outcome as u8
            );
            let line = std::mem::take(&mut self.line);
            self.files
                .truth
                .write(&line, LineParts::default(), &mut self.faults)?;
            self.line = line;
        }
        Ok(())
    }

    fn intervention(
        &mut self,
        child: &Person,
        need: f64,
        notified_last_year: u32,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<()> {
        let age = child.age_on(start);
        if !(0..=17).contains(&age) || !child.alive_on(start) {
            return Ok(());
        }
        let p = intervention_probability(need, notified_last_year, age);
        if self.rng.gen::<f64>() < p {
            let day = self.random_day(start, end);
            let code = if self.rng.gen::<f64>() < 0.8 {
                "LS-AVO"
            } else {
                "LS-SIJ"
            };
            let until = day + Duration::days(self.rng.gen_range(60..400));
            let nid = child.nid.clone();
            self.social(&nid, code, day, Some(until), None)?;
        }
        Ok(())
    }

    /// A person's health and individual social events in one year; returns the number of
    /// child-welfare notifications.
    fn person_year(
        &mut self,
        p: &mut Person,
        adult: bool,
        need: f64,
        report_bias: f64,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<u32> {
        if !p.alive_on(start) && !p.alive_on(end - Duration::days(1)) {
            return Ok(0);
        }
        let from = start.max(p.birth);
        let to = p.death.map_or(end, |d| d.min(end));
        if from >= to {
            return Ok(0);
        }
        let age = p.age_on(from);
        // Ordinary primary care; working-age adults in need see a doctor more often (the
        // usual socioeconomic gradient), at an unchanged average.
        let rate = if age < 7 {
            1.2
        } else if age >= 65 {
            3.0
        } else if adult {
            1.5 * (0.45 * need - 0.1).exp()
        } else {
            1.5
        };
        let visits = poisson(&mut self.rng, rate);
        for _ in 0..visits {
            let day = self.random_day(from, to);
            let enc = self.encounter(p, day, "AMB", "185349003", "finished")?;
            if self.rng.gen::<f64>() < 0.5 {
                let codes: &[&str] = if age < 7 {
                    &["H66.9", "J06.9", "J20.9", "B34.9"]
                } else if age >= 65 {
                    &["I10", "E11.9", "M17.9", "J06.9"]
                } else {
                    &["J06.9", "M54.5", "J01.9", "R51"]
                };
                let code = codes[self.rng.gen_range(0..codes.len())];
                self.condition(p, &enc, day, code)?;
            }
        }
        // Emergency visits.
        let er_rate = if adult {
            0.08 * (0.5 * need).exp()
        } else {
            0.10 * (0.4 * need).exp()
        };
        for _ in 0..poisson(&mut self.rng, er_rate) {
            let day = self.random_day(from, to);
            let enc = self.encounter(p, day, "EMER", "50849002", "finished")?;
            let codes: &[&str] = &["S52.5", "S09.9", "T14.9", "R07.4", "S93.4"];
            let code = codes[self.rng.gen_range(0..codes.len())];
            self.condition(p, &enc, day, code)?;
        }
        let mut notifications = 0;
        if adult && age < 65 {
            if !p.mental && self.rng.gen::<f64>() < sigmoid(-3.8 + 0.9 * need) {
                p.mental = true;
                let day = self.random_day(from, to);
                let enc = self.encounter(p, day, "AMB", "185349003", "finished")?;
                let code = if self.rng.gen::<bool>() {
                    "F32.1"
                } else {
                    "F41.1"
                };
                self.condition(p, &enc, day, code)?;
            }
            if p.mental && self.rng.gen::<f64>() < 0.6 {
                let day = self.random_day(from, to);
                let atc = if self.rng.gen::<f64>() < 0.7 {
                    "N06AB10"
                } else {
                    "N05BA01"
                };
                self.medication(p, day, atc)?;
            }
            if !p.substance && self.rng.gen::<f64>() < sigmoid(-4.4 + 1.0 * need) {
                p.substance = true;
                let day = self.random_day(from, to);
                let enc = self.encounter(p, day, "EMER", "50849002", "finished")?;
                let code = if self.rng.gen::<f64>() < 0.85 {
                    "F10.2"
                } else {
                    "F11.2"
                };
                self.condition(p, &enc, day, code)?;
            }
            // Unemployment benefit, paid a month at a time: the densest trace of need in
            // the registries, as in real ones.
            let p_unemployed = sigmoid(-2.8 + 1.6 * need);
            for month in 0..12 {
                if self.rng.gen::<f64>() < p_unemployed {
                    let day = start + Duration::days(month * 30 + 14);
                    if from <= day && day < to {
                        let amount = self.rng.gen_range(700..1300) as f64;
                        let nid = p.nid.clone();
                        let until = Some(day + Duration::days(27));
                        self.social(&nid, "TMT", day, until, Some(amount))?;
                    }
                }
            }
            if p.substance && self.rng.gen::<f64>() < 0.4 {
                let day = self.random_day(from, to);
                let nid = p.nid.clone();
                self.social(&nid, "PAV", day, Some(day + Duration::days(90)), None)?;
                if self.rng.gen::<f64>() < 0.4 {
                    self.medication(p, day, "N07BB03")?;
                }
            }
        }
        if !adult {
            if age < 7 {
                // Child-health clinic visits: more in the first year; missed ones cancelled.
                let n = if age == 0 {
                    6
                } else {
                    1 + (self.rng.gen::<f64>() < 0.5) as u32
                };
                let p_miss = sigmoid(-2.9 + 0.9 * need);
                for _ in 0..n {
                    let day = self.random_day(from, to);
                    let missed = self.rng.gen::<f64>() < p_miss;
                    let status = if missed { "cancelled" } else { "finished" };
                    let enc = self.encounter(p, day, "AMB", "410620009", status)?;
                    if !missed {
                        let months = (day - p.birth).num_days() as f64 / 30.4;
                        let height = 50.0
                            + 25.0 * (months / 12.0).min(1.0)
                            + 6.0 * (months / 12.0 - 1.0).max(0.0);
                        self.observation(p, &enc, day, "8302-2", "Body height", height, "cm")?;
                        let weight = 3.5
                            + 6.5 * (months / 12.0).min(1.0)
                            + 2.2 * (months / 12.0 - 1.0).max(0.0);
                        self.observation(p, &enc, day, "29463-7", "Body weight", weight, "kg")?;
                    }
                    if age <= 1 {
                        let vaccines = ["J07AJ52", "J07BH01", "J07BD52", "J07AL02"];
                        let atc = vaccines[self.rng.gen_range(0..vaccines.len())];
                        self.immunization(
                            p,
                            day,
                            atc,
                            if missed { "not-done" } else { "completed" },
                        )?;
                    }
                }
            }
            if (7..=17).contains(&age) {
                for _ in 0..poisson(&mut self.rng, 0.25 * (0.7 * need).exp()) {
                    let day = self.random_day(from, to);
                    let days_absent = self.rng.gen_range(3..20) as f64;
                    let nid = p.nid.clone();
                    self.social(&nid, "KPO", day, None, Some(days_absent))?;
                }
            }
            notifications = poisson(&mut self.rng, 0.035 * (1.0 * need).exp() * report_bias);
            for _ in 0..notifications {
                let day = self.random_day(from, to);
                let nid = p.nid.clone();
                self.social(&nid, "LSIL", day, None, None)?;
            }
        }
        Ok(notifications)
    }

    /// Household-level social support, registered on the first adult.
    fn household_year(
        &mut self,
        members: &[Person],
        _n_adults: usize,
        has_kids: bool,
        need: f64,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<()> {
        let head = &members[0];
        if !head.alive_on(start) || head.age_on(start) < 18 {
            return Ok(());
        }
        let nid = head.nid.clone();
        let p_month = sigmoid(-3.3 + 1.3 * need);
        for month in 0..12 {
            if self.rng.gen::<f64>() < p_month {
                let day = start + Duration::days(month * 30 + 1);
                if day < end {
                    let amount = self.rng.gen_range(350..1100) as f64;
                    self.social(
                        &nid,
                        "TT",
                        day,
                        Some(day + Duration::days(29)),
                        Some(amount),
                    )?;
                }
            }
        }
        if self.rng.gen::<f64>() < sigmoid(-2.3 + 0.8 * need) {
            let day = self.random_day(start, end);
            let amount = self.rng.gen_range(150..600) as f64;
            self.social(
                &nid,
                "AT",
                day,
                Some(day + Duration::days(180)),
                Some(amount),
            )?;
        }
        if has_kids && self.rng.gen::<f64>() < sigmoid(-3.1 + 0.7 * need) {
            let day = self.random_day(start, end);
            self.social(&nid, "PNK", day, Some(day + Duration::days(60)), None)?;
        }
        Ok(())
    }

    // ---- writers --------------------------------------------------------------------

    fn write_person(&mut self, p: &Person) -> Result<()> {
        let sex = if p.sex == Sex::Female { "F" } else { "M" };
        let death = p.death.map(|d| d.to_string()).unwrap_or_default();
        let birth = p.birth.to_string();
        let line = format!(
            "{},{birth},{sex},{death},{},{},{}",
            p.nid, p.mother_tongue, p.citizenship, p.country_of_birth
        );
        let parts = LineParts {
            national_id: Some(&p.nid),
            date: Some(&birth),
            ..LineParts::default()
        };
        self.files.persons.write(&line, parts, &mut self.faults)?;
        self.report.population_rows += 1;
        // The FHIR Patient.
        let gender = if p.sex == Sex::Female {
            "female"
        } else {
            "male"
        };
        let mut json = format!(
            r#"{{"resourceType":"Patient","id":"{}","meta":{{"profile":["http://hl7.org/fhir/StructureDefinition/Patient"]}},"identifier":[{{"use":"official","system":"{}","value":"{}"}}],"gender":"{gender}","birthDate":"{birth}""#,
            p.fhir_id,
            self.cfg.country.fhir_system(),
            p.nid
        );
        if let Some(d) = p.death {
            let _ = write!(json, r#","deceasedDateTime":"{d}T12:00:00+02:00""#);
        }
        json.push_str(
            r#","communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":""#,
        );
        json.push_str(p.mother_tongue);
        json.push_str(r#""}]}}]}"#);
        self.files
            .patient
            .write(&json, LineParts::default(), &mut self.faults)?;
        self.report.fhir_resources += 1;
        Ok(())
    }

    fn write_relation(
        &mut self,
        child: &str,
        parent: &str,
        rel: &str,
        since: NaiveDate,
    ) -> Result<()> {
        let since = since.to_string();
        let line = format!("{child},{parent},{rel},{since},");
        let parts = LineParts {
            national_id: Some(child),
            code: Some(rel),
            date: Some(&since),
            keyed: true,
        };
        self.files.relations.write(&line, parts, &mut self.faults)?;
        self.report.population_rows += 1;
        Ok(())
    }

    fn write_address(
        &mut self,
        nid: &str,
        from: NaiveDate,
        to: Option<NaiveDate>,
        municipality: &str,
        postcode: &str,
        dwelling: &str,
    ) -> Result<()> {
        let from_s = from.to_string();
        let to_s = to.map(|d| d.to_string()).unwrap_or_default();
        let line = format!("{nid},{from_s},{to_s},{municipality},{postcode},{dwelling}");
        let parts = LineParts {
            national_id: Some(nid),
            date: Some(&from_s),
            keyed: true,
            ..LineParts::default()
        };
        self.files.addresses.write(&line, parts, &mut self.faults)?;
        self.report.population_rows += 1;
        Ok(())
    }

    fn timestamp(&mut self, day: NaiveDate) -> String {
        let h = self.rng.gen_range(7..20);
        let m = self.rng.gen_range(0..60);
        format!("{day}T{h:02}:{m:02}:00+02:00")
    }

    fn encounter(
        &mut self,
        p: &Person,
        day: NaiveDate,
        class: &str,
        kind: &str,
        status: &str,
    ) -> Result<String> {
        let id = self.next_id("enc");
        let t = self.timestamp(day);
        let display = match kind {
            "410620009" => "Well child visit",
            "50849002" => "Emergency room admission",
            _ => "Encounter for check up",
        };
        let json = format!(
            r#"{{"resourceType":"Encounter","id":"{id}","status":"{status}","class":{{"system":"{ACT}","code":"{class}"}},"type":[{{"coding":[{{"system":"{SNOMED}","code":"{kind}","display":"{display}"}}]}}],"subject":{{"reference":"Patient/{}"}},"period":{{"start":"{t}","end":"{t}"}}}}"#,
            p.fhir_id
        );
        self.fhir(Fhir::Encounter, &json, day)?;
        Ok(id)
    }

    fn condition(&mut self, p: &Person, enc: &str, day: NaiveDate, code: &str) -> Result<()> {
        let id = self.next_id("cond");
        let t = self.timestamp(day);
        let json = format!(
            r#"{{"resourceType":"Condition","id":"{id}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"code":{{"coding":[{{"system":"{ICD10}","code":"{code}"}}]}},"subject":{{"reference":"Patient/{}"}},"encounter":{{"reference":"Encounter/{enc}"}},"onsetDateTime":"{t}","recordedDate":"{t}"}}"#,
            p.fhir_id
        );
        self.fhir(Fhir::Condition, &json, day)?;
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one observation's worth of values"
    )]
    fn observation(
        &mut self,
        p: &Person,
        enc: &str,
        day: NaiveDate,
        loinc: &str,
        display: &str,
        value: f64,
        unit: &str,
    ) -> Result<()> {
        let id = self.next_id("obs");
        let t = self.timestamp(day);
        let json = format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"{LOINC}","code":"{loinc}","display":"{display}"}}]}},"subject":{{"reference":"Patient/{}"}},"encounter":{{"reference":"Encounter/{enc}"}},"effectiveDateTime":"{t}","valueQuantity":{{"value":{value:.1},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}"#,
            p.fhir_id
        );
        self.fhir(Fhir::Observation, &json, day)?;
        Ok(())
    }

    fn medication(&mut self, p: &Person, day: NaiveDate, atc: &str) -> Result<()> {
        let id = self.next_id("med");
        let t = self.timestamp(day);
        let json = format!(
            r#"{{"resourceType":"MedicationRequest","id":"{id}","status":"completed","intent":"order","medicationCodeableConcept":{{"coding":[{{"system":"{ATC}","code":"{atc}"}}]}},"subject":{{"reference":"Patient/{}"}},"authoredOn":"{t}"}}"#,
            p.fhir_id
        );
        self.fhir(Fhir::Medication, &json, day)?;
        Ok(())
    }

    fn immunization(&mut self, p: &Person, day: NaiveDate, atc: &str, status: &str) -> Result<()> {
        let id = self.next_id("imm");
        let t = self.timestamp(day);
        let json = format!(
            r#"{{"resourceType":"Immunization","id":"{id}","status":"{status}","vaccineCode":{{"coding":[{{"system":"{ATC}","code":"{atc}"}}]}},"patient":{{"reference":"Patient/{}"}},"occurrenceDateTime":"{t}","primarySource":true}}"#,
            p.fhir_id
        );
        self.fhir(Fhir::Immunization, &json, day)?;
        Ok(())
    }

    fn social(
        &mut self,
        nid: &str,
        code: &str,
        day: NaiveDate,
        until: Option<NaiveDate>,
        amount: Option<f64>,
    ) -> Result<()> {
        let id = self.next_id("case");
        let start = day.to_string();
        let end = until.map(|d| d.to_string()).unwrap_or_default();
        let amount_s = amount.map(|a| format!("{a:.0}")).unwrap_or_default();
        let unit = "family-services";
        let line = if self.cfg.social_jsonl {
            let amount_json = amount.map_or("null".to_string(), |a| format!("{a:.0}"));
            let end_json = until.map_or("null".to_string(), |d| format!("\"{d}\""));
            format!(
                r#"{{"record_id":"{id}","national_id":"{nid}","code":"{code}","start_date":"{start}","end_date":{end_json},"amount":{amount_json},"unit":"{unit}"}}"#
            )
        } else {
            format!("{id},{nid},{code},{start},{end},{amount_s},{unit}")
        };
        let parts = LineParts {
            national_id: Some(nid),
            code: Some(code),
            date: Some(&start),
            keyed: true,
        };
        self.files.social.write(&line, parts, &mut self.faults)?;
        self.report.social_events += 1;
        Ok(())
    }

    /// Writes one FHIR resource line (dated `day`, keyed by its id).
    fn fhir(&mut self, file: Fhir, json: &str, day: NaiveDate) -> Result<()> {
        let date = day.to_string();
        let parts = LineParts {
            date: Some(&date),
            keyed: true,
            ..LineParts::default()
        };
        let out = match file {
            Fhir::Encounter => &mut self.files.encounter,
            Fhir::Condition => &mut self.files.condition,
            Fhir::Observation => &mut self.files.observation,
            Fhir::Medication => &mut self.files.medication,
            Fhir::Immunization => &mut self.files.immunization,
        };
        out.write(json, parts, &mut self.faults)?;
        self.report.fhir_resources += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<SynthReport> {
        let f = self.files;
        for file in [
            f.persons,
            f.addresses,
            f.relations,
            f.patient,
            f.encounter,
            f.condition,
            f.observation,
            f.medication,
            f.immunization,
            f.social,
            f.truth,
        ] {
            file.finish()?;
        }
        let root = &self.cfg.out;
        // A Bulk Data log, as a real export would carry.
        std::fs::write(
            root.join("health/log.ndjson"),
            format!(
                "{{\"exportId\":\"tidig-synth-{}\",\"timestamp\":\"{}T00:00:00Z\",\"eventId\":\"status_complete\",\"eventDetail\":{{\"transactionTime\":\"{}T00:00:00Z\"}}}}\n",
                self.cfg.seed, self.cfg.reference_date, self.cfg.reference_date
            ),
        )?;
        std::fs::write(
            root.join("social/code_table.toml"),
            tidig_connectors::social::DEFAULT_TABLE,
        )?;
        let mut corr = String::from("file,line,fault\n");
        for (file, line, fault) in &self.faults.log {
            let _ = writeln!(corr, "{file},{line},{}", fault.name());
        }
        std::fs::write(root.join("truth/corruptions.csv"), corr)?;
        std::fs::write(root.join("truth/README.md"), TRUTH_README)?;
        self.report.corruptions = self.faults.log.len() as u64;
        self.report.truth_base_rate = if self.report.children_at_reference == 0 {
            0.0
        } else {
            self.report.truth_positive as f64 / self.report.children_at_reference as f64
        };
        let manifest = serde_json::json!({
            "generator": "tidig synth",
            "generator_version": GENERATOR_VERSION,
            "seed": self.cfg.seed,
            "persons_requested": self.cfg.persons,
            "history_years": self.cfg.history_years,
            "corrupt_rate": self.cfg.corrupt_rate,
            "gzip": self.cfg.gzip,
            "report": &self.report,
        });
        std::fs::write(
            root.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)?,
        )?;
        Ok(self.report)
    }
}

/// The probability of a child-welfare intervention within a year, given the household's
/// need that year, the child's notifications the year before, and age.
pub fn intervention_probability(need: f64, notified_last_year: u32, age: i32) -> f64 {
    let age_term = match age {
        0..=2 => 0.15,
        13..=17 => 0.3,
        _ => 0.0,
    };
    sigmoid(-4.3 + 1.35 * need + 0.45 * (notified_last_year.min(3) as f64) + age_term)
}

/// `E[intervention_probability(mean + sd·Z)]` for `Z ~ N(0, 1)`, by 8-point
/// Gauss–Hermite quadrature: the probability given what is known at the as-of date.
pub fn expected_probability(mean: f64, sd: f64, notified_last_year: u32, age: i32) -> f64 {
    const NODES: [(f64, f64); 4] = [
        (0.381_186_990_207_322, 0.661_147_012_558_241),
        (1.157_193_712_446_78, 0.207_802_325_814_892),
        (1.981_656_756_695_843, 0.017_077_983_007_413),
        (2.930_637_420_257_244, 0.000_199_604_072_211),
    ];
    let mut sum = 0.0;
    for (x, w) in NODES {
        for sign in [-1.0, 1.0] {
            let z = sign * std::f64::consts::SQRT_2 * x;
            sum += w * intervention_probability(mean + sd * z, notified_last_year, age);
        }
    }
    sum / std::f64::consts::PI.sqrt()
}

const TRUTH_README: &str = "# Ground truth (never ingest)

`outcomes.csv`: one row per child aged 0-17 on the reference date (`as_of`): the true
probability of a child-welfare intervention within the 12 months after `as_of`, given
everything the generator knows on that date, and the outcome (1 = intervention). The
probability comes from the household's latent need (which also drives the registry
events), the child's child-welfare notifications in the year before, and age; the
coming year's need shock is integrated out (it is not knowable on the as-of date), and
the outcome is drawn with the shock, so it follows that probability exactly.

`corruptions.csv`: every fault injected by `--corrupt-rate` (file, 1-based line, kind:
malformed, invalid_id, unknown_code, duplicate, impossible_date). For `duplicate` the line
is the second copy. Patient resources are never corrupted, because a lost patient takes
all of their resources with them.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_probability_integrates_the_shock() {
        // With no shock it is the plain probability.
        let plain = intervention_probability(0.7, 1, 5);
        assert!((expected_probability(0.7, 0.0, 1, 5) - plain).abs() < 1e-12);
        // Against a Monte Carlo average.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 400_000;
        let mc: f64 = (0..n)
            .map(|_| intervention_probability(0.7 + 0.6 * normal(&mut rng), 1, 5))
            .sum::<f64>()
            / n as f64;
        assert!(
            (expected_probability(0.7, 0.6, 1, 5) - mc).abs() < 5e-4,
            "{mc}"
        );
    }
}
