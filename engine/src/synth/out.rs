//! Output files of the generator, with optional injection of realistic faults.
//!
//! Every fault injected is recorded (file, line, kind) in `truth/corruptions.csv`, so
//! tests can check that exactly those lines end up in the quarantine.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tidig_connectors::national_id::Country;

/// Faults a line can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The line is cut in half (broken JSON, missing CSV fields).
    Malformed,
    /// The national ID on the line fails validation.
    InvalidId,
    /// The code is not in the code table (or the relation kind is unknown).
    UnknownCode,
    /// The line is written twice; the second copy is the duplicate.
    Duplicate,
    /// A date on the line does not exist (the 30th of February).
    ImpossibleDate,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Malformed => "malformed",
            Fault::InvalidId => "invalid_id",
            Fault::UnknownCode => "unknown_code",
            Fault::Duplicate => "duplicate",
            Fault::ImpossibleDate => "impossible_date",
        }
    }
}

/// What a line holds, so a fault can be applied to it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LineParts<'a> {
    /// The national ID on the line, if any.
    pub national_id: Option<&'a str>,
    /// A code that the reader validates against a table, if any.
    pub code: Option<&'a str>,
    /// A `YYYY-MM-DD` date on the line that the reader validates, if any.
    pub date: Option<&'a str>,
    /// Whether the line has a natural key, so that a second copy counts as a duplicate
    /// (person rows are upserts instead).
    pub keyed: bool,
}

/// One output file.
pub struct OutFile {
    rel: String,
    writer: Box<dyn Write>,
    line: u64,
    faults: bool,
}

impl OutFile {
    pub fn create(root: &Path, rel: &str, gzip: bool, faults: bool) -> Result<OutFile> {
        let rel = if gzip {
            format!("{rel}.gz")
        } else {
            rel.to_string()
        };
        let path: PathBuf = root.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let writer: Box<dyn Write> = if gzip {
            Box::new(BufWriter::with_capacity(
                1 << 16,
                GzEncoder::new(file, flate2::Compression::fast()),
            ))
        } else {
            Box::new(BufWriter::with_capacity(1 << 16, file))
        };
        Ok(OutFile {
            rel,
            writer,
            line: 0,
            faults,
        })
    }

    /// Writes a header line (never corrupted).
    pub fn header(&mut self, text: &str) -> Result<()> {
        self.line += 1;
        writeln!(self.writer, "{text}")?;
        Ok(())
    }

    /// Writes a data line, possibly with a fault.
    pub fn write(&mut self, text: &str, parts: LineParts<'_>, f: &mut Faults) -> Result<()> {
        let fault = if self.faults { f.pick(&parts) } else { None };
        let text: std::borrow::Cow<'_, str> = match fault {
            None | Some(Fault::Duplicate) => text.into(),
            Some(Fault::Malformed) => {
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text[..cut].to_string().into()
            }
            Some(Fault::InvalidId) => match parts.national_id {
                Some(id) => text
                    .replacen(id, &super::ids::corrupt(f.country, id), 1)
                    .into(),
                None => text.into(),
            },
            Some(Fault::UnknownCode) => match parts.code {
                Some(code) => text.replacen(code, "ZZ-UNKNOWN", 1).into(),
                None => text.into(),
            },
            Some(Fault::ImpossibleDate) => match parts.date {
                Some(date) => {
                    let bad = format!("{}-02-30", &date[..4]);
                    text.replacen(date, &bad, 1).into()
                }
                None => text.into(),
            },
        };
        self.line += 1;
        writeln!(self.writer, "{text}")?;
        match fault {
            Some(Fault::Duplicate) => {
                self.line += 1;
                writeln!(self.writer, "{text}")?;
                f.record(&self.rel, self.line, Fault::Duplicate);
            }
            Some(fault) => f.record(&self.rel, self.line, fault),
            None => {}
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}

/// Decides which lines get faults and remembers them.
pub struct Faults {
    rate: f64,
    rng: ChaCha8Rng,
    country: Country,
    pub log: Vec<(String, u64, Fault)>,
}

impl Faults {
    pub fn new(rate: f64, rng: ChaCha8Rng, country: Country) -> Faults {
        Faults {
            rate,
            rng,
            country,
            log: Vec::new(),
        }
    }

    fn pick(&mut self, parts: &LineParts<'_>) -> Option<Fault> {
        if self.rate <= 0.0 || self.rng.gen::<f64>() >= self.rate {
            return None;
        }
        let mut options = vec![Fault::Malformed];
        if parts.keyed {
            options.push(Fault::Duplicate);
        }
        if parts.national_id.is_some() {
            options.push(Fault::InvalidId);
        }
        if parts.code.is_some() {
            options.push(Fault::UnknownCode);
        }
        if parts.date.is_some() {
            options.push(Fault::ImpossibleDate);
        }
        Some(options[self.rng.gen_range(0..options.len())])
    }

    fn record(&mut self, file: &str, line: u64, fault: Fault) {
        self.log.push((file.to_string(), line, fault));
    }
}
