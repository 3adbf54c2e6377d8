//! Real Finnish geography for the synthetic municipality: municipality populations and
//! postcode-area populations from Statistics Finland (read from `shared/data/population`
//! when present), with a small built-in fallback so a fresh clone still works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The area a synthetic municipality lives in.
#[derive(Clone, Debug)]
pub struct Geography {
    /// Three-digit municipality code (`091` is Helsinki).
    pub code: String,
    pub name: String,
    /// Postcode areas of the municipality with their real populations (weights).
    pub postcodes: Vec<(String, u32)>,
    /// Other municipalities people move to, with population weights.
    pub elsewhere: Vec<(String, u32)>,
    /// Where the figures came from, for the manifest.
    pub source: String,
}

/// Postcode prefixes of the larger cities (Finnish postcodes are not published per
/// municipality in the shared data; these prefixes are the cities' own ranges).
const PREFIXES: &[(&str, &[&str])] = &[
    ("091", &["00"]),
    ("092", &["01"]),
    (
        "049",
        &[
            "021", "022", "023", "024", "025", "026", "027", "028", "029",
        ],
    ),
    ("837", &["33"]),
    ("853", &["20"]),
    ("564", &["90"]),
    ("179", &["40"]),
    ("297", &["70"]),
];

/// Where to look for the population data by default, in order.
pub fn default_data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("TIDIG_POPULATION_DATA") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("../shared/data/population"));
    dirs.push(PathBuf::from("shared/data/population"));
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/population"));
    dirs
}

impl Geography {
    /// Loads the geography of `code` from the first data directory that exists, or the
    /// built-in fallback for Helsinki.
    pub fn load(code: &str, dir: Option<&Path>) -> Result<Geography> {
        let code = format!("{:0>3}", code.trim_start_matches('0'));
        let candidates = match dir {
            Some(d) => vec![d.to_path_buf()],
            None => default_data_dirs(),
        };
        for d in &candidates {
            if d.join("statfi_zipcode_population.csv").exists() {
                return Geography::from_dir(&code, d)
                    .with_context(|| format!("reading population data in {}", d.display()));
            }
        }
        if dir.is_some() {
            bail!("no statfi_zipcode_population.csv in the population data directory");
        }
        if code != "091" {
            bail!(
                "municipality {code} needs the population data (set TIDIG_POPULATION_DATA); \
                 only 091 (Helsinki) is built in"
            );
        }
        Ok(Geography::builtin())
    }

    fn from_dir(code: &str, dir: &Path) -> Result<Geography> {
        let prefixes = PREFIXES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, p)| *p)
            .with_context(|| {
                let known: Vec<&str> = PREFIXES.iter().map(|(c, _)| *c).collect();
                format!(
                    "municipality `{code}` has no postcode range; use one of {}",
                    known.join(", ")
                )
            })?;
        let mut postcodes = Vec::new();
        let mut rdr = csv::Reader::from_path(dir.join("statfi_zipcode_population.csv"))?;
        for row in rdr.records() {
            let row = row?;
            let (Some(pc), Some(pop)) = (row.get(0), row.get(1)) else {
                continue;
            };
            if pc.len() == 5 && prefixes.iter().any(|p| pc.starts_with(p)) {
                let pop: u32 = pop.trim().parse().unwrap_or(0);
                if pop > 0 {
                    postcodes.push((pc.to_string(), pop));
                }
            }
        }
        let mut names = HashMap::new();
        let mut rdr = csv::Reader::from_path(dir.join("municipality_key_2025.csv"))?;
        for row in rdr.records() {
            let row = row?;
            if let (Some(c), Some(n)) = (row.get(0), row.get(1)) {
                names.insert(format!("{:0>3}", c), n.to_string());
            }
        }
        // Latest population per municipality.
        let mut latest: HashMap<String, (u32, u32)> = HashMap::new();
        let mut rdr = csv::Reader::from_path(dir.join("sotkadata_population.csv"))?;
        for row in rdr.records() {
            let row = row?;
            let (Some(c), Some(p), Some(y)) = (row.get(0), row.get(1), row.get(2)) else {
                continue;
            };
            let (Ok(p), Ok(y)) = (p.parse::<f64>(), y.parse::<u32>()) else {
                continue;
            };
            let e = latest.entry(format!("{:0>3}", c)).or_insert((0, 0));
            if y >= e.1 {
                *e = (p as u32, y);
            }
        }
        let mut elsewhere: Vec<(String, u32)> = latest
            .iter()
            .filter(|(c, _)| c.as_str() != code && names.contains_key(*c))
            .map(|(c, (p, _))| (c.clone(), *p))
            .collect();
        elsewhere.sort();
        if postcodes.is_empty() {
            bail!("no postcode areas found for municipality {code}");
        }
        Ok(Geography {
            name: names.get(code).cloned().unwrap_or_else(|| code.to_string()),
            code: code.to_string(),
            postcodes,
            elsewhere,
            source: dir.display().to_string(),
        })
    }

    fn builtin() -> Geography {
        let postcodes = [
            ("00100", 18030),
            ("00120", 7192),
            ("00130", 1731),
            ("00140", 7899),
            ("00150", 9208),
            ("00160", 5073),
            ("00180", 16893),
            ("00200", 15500),
            ("00250", 10800),
            ("00500", 16100),
            ("00530", 12000),
            ("00700", 13700),
            ("00800", 14700),
            ("00900", 12200),
            ("00940", 16100),
            ("00980", 11300),
        ];
        Geography {
            code: "091".into(),
            name: "Helsinki".into(),
            postcodes: postcodes.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
            elsewhere: vec![
                ("049".into(), 305_274),
                ("092".into(), 242_819),
                ("837".into(), 249_009),
                ("853".into(), 197_900),
            ],
            source: "built-in (Helsinki subset)".into(),
        }
    }
}
