//! Test support, compiled only with the `testkit` feature (the test suites and
//! `tidig bench` built with `--features testkit`): a throwaway PostgreSQL cluster, and the
//! fault hooks in `testkit_hooks`.

pub mod pgtemp;

/// What a research answer must not hold, each named: a string that looks like a
/// pseudonym (`p` + 32 hex digits), a key that names a person, a count in 1..`min`.
pub fn person_level(v: &serde_json::Value, min: u64) -> Vec<String> {
    let mut found = Vec::new();
    walk(v, "", min, &mut found);
    found
}

fn walk(v: &serde_json::Value, key: &str, min: u64, found: &mut Vec<String>) {
    use serde_json::Value;
    let personal = [
        "person",
        "pseudonym",
        "subject",
        "national",
        "suggestion",
        "pid",
    ];
    let counts = [
        "train_persons",
        "holdout_persons",
        "holdout_positives",
        "positives",
        "negatives",
        "persons",
        "flagged",
        "exposed_positive",
        "unexposed_positive",
        "exposed_negative",
        "unexposed_negative",
    ];
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if personal.iter().any(|p| k.contains(p)) && !counts.contains(&k.as_str()) {
                    found.push(format!("key `{k}`"));
                }
                walk(x, k, min, found);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, key, min, found)),
        Value::String(s)
            if s.len() == 33
                && s.starts_with('p')
                && s[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            found.push(format!("a pseudonym under `{key}`"));
        }
        Value::Number(n)
            if counts.contains(&key) && n.as_u64().is_some_and(|n| n > 0 && n < min) =>
        {
            found.push(format!("`{key}` = {n}"));
        }
        _ => {}
    }
}
