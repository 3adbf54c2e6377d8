//! Valid national IDs for synthetic persons, in each country's own spelling.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use tidig_connectors::national_id::{fi_check_char, luhn_digit, no_check_digits, Country, Sex};

/// Makes a valid identifier for a person born on `birth` with `sex`. Callers retry on
/// collision; the space per birth date is large (hundreds of serials).
pub fn make(country: Country, birth: NaiveDate, sex: Sex, rng: &mut impl Rng) -> String {
    let (d, m, y) = (birth.day(), birth.month(), birth.year());
    let yy = (y % 100) as u32;
    let male = sex == Sex::Male;
    // A random serial whose parity carries the sex.
    let parity = |n: u32| if (n % 2 == 1) == male { n } else { n + 1 };
    match country {
        Country::Fi => {
            let serial = parity(rng.gen_range(2..=897));
            let sign = match y {
                1800..=1899 => '+',
                1900..=1999 => '-',
                _ => 'A',
            };
            let ddmmyy = d * 10_000 + m * 100 + yy;
            format!(
                "{d:02}{m:02}{yy:02}{sign}{serial:03}{}",
                fi_check_char(ddmmyy, serial)
            )
        }
        Country::Se => {
            let serial = parity(rng.gen_range(1..=997));
            let digits: Vec<u32> = format!("{yy:02}{m:02}{d:02}{serial:03}")
                .chars()
                .filter_map(|c| c.to_digit(10))
                .collect();
            format!("{y:04}{m:02}{d:02}-{serial:03}{}", luhn_digit(&digits))
        }
        Country::Dk => {
            let first = match y {
                1900..=1999 => rng.gen_range(0..=3),
                2000..=2036 => 4,
                _ => 5,
            };
            let rest = parity(rng.gen_range(0..=997));
            format!("{d:02}{m:02}{yy:02}-{first}{rest:03}")
        }
        Country::No | _ => loop {
            let ind = match y {
                1900..=1999 => rng.gen_range(0..=499),
                _ => rng.gen_range(500..=999),
            };
            let ind = if (ind % 2 == 1) == male { ind } else { ind ^ 1 };
            let base: Vec<u32> = format!("{d:02}{m:02}{yy:02}{ind:03}")
                .chars()
                .filter_map(|c| c.to_digit(10))
                .collect();
            if let Some((k1, k2)) = no_check_digits(&base) {
                break format!("{d:02}{m:02}{yy:02}{ind:03}{k1}{k2}");
            }
        },
    }
}

/// A syntactically plausible but invalid variant of a valid ID, for corrupted test input:
/// the check character changed, or for Denmark (which has no check digit) day 32.
pub fn corrupt(country: Country, id: &str) -> String {
    if country == Country::Dk {
        return format!("32{}", &id[2..]);
    }
    let mut chars: Vec<char> = id.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            '0'..='8' => char::from(*last as u8 + 1),
            '9' => '0',
            'A' => 'B',
            _ => 'A',
        };
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tidig_connectors::national_id::{parse, IdRules};

    #[test]
    fn generated_ids_validate_and_carry_birth_date_and_sex() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rules = IdRules::new(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        for country in [Country::Fi, Country::Se, Country::Dk, Country::No] {
            for (birth, sex) in [
                (NaiveDate::from_ymd_opt(1952, 10, 13).unwrap(), Sex::Male),
                (NaiveDate::from_ymd_opt(2012, 2, 29).unwrap(), Sex::Female),
                (NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(), Sex::Female),
            ] {
                for _ in 0..50 {
                    let raw = make(country, birth, sex, &mut rng);
                    let id = parse(country, &raw, &rules).unwrap_or_else(|e| panic!("{raw}: {e}"));
                    assert_eq!(id.birth_date(), birth, "{raw}");
                    assert_eq!(id.sex(), Some(sex), "{raw}");
                    let bad = corrupt(country, &raw);
                    assert!(parse(country, &bad, &rules).is_err(), "{bad}");
                }
            }
        }
    }
}
