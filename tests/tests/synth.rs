//! The synthetic municipality: deterministic for a seed, realistic in shape.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a test failure"
)]

use std::path::Path;

use tidig_tests::synth;

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_seed_gives_the_same_municipality_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    synth(&a, 500, |cfg| cfg.corrupt_rate = 0.01);
    synth(&b, 500, |cfg| cfg.corrupt_rate = 0.01);
    synth(&c, 500, |cfg| {
        cfg.corrupt_rate = 0.01;
        cfg.seed = 8;
    });
    let (fa, fb, fc) = (read_all(&a), read_all(&b), read_all(&c));
    assert_eq!(fa.len(), fb.len());
    for ((na, da), (nb, db)) in fa.iter().zip(&fb) {
        assert_eq!(na, nb);
        if na != "manifest.json" {
            assert!(da == db, "{na} differs between two runs with one seed");
        }
    }
    let persons = |f: &[(String, Vec<u8>)]| {
        f.iter()
            .find(|(n, _)| n.ends_with("persons.csv"))
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(persons(&fa), persons(&fc));
}

#[test]
fn the_truth_has_a_plausible_base_rate_and_a_fairness_gap_to_find() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let report = synth(&out, 6_000, |_| {});
    assert!(
        (0.02..=0.06).contains(&report.truth_base_rate),
        "base rate {}",
        report.truth_base_rate
    );
    // Join truth to mother tongue: foreign-language children have a higher true risk.
    let persons = std::fs::read_to_string(out.join("population/persons.csv")).unwrap();
    let tongue: std::collections::HashMap<&str, &str> = persons
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[4])
        })
        .collect();
    let truth = std::fs::read_to_string(out.join("truth/outcomes.csv")).unwrap();
    let (mut dom, mut other) = ((0.0, 0), (0.0, 0));
    for l in truth.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let p: f64 = f[3].parse().unwrap();
        let slot = if matches!(tongue[f[0]], "fi" | "sv") {
            &mut dom
        } else {
            &mut other
        };
        slot.0 += p;
        slot.1 += 1;
    }
    let (pd, po) = (dom.0 / dom.1 as f64, other.0 / other.1 as f64);
    assert!(
        other.1 > 100,
        "too few foreign-language children: {}",
        other.1
    );
    assert!(po > pd * 1.2, "no gap to find: {po:.4} vs {pd:.4}");
    assert!(po < pd * 4.0, "an implausible gap: {po:.4} vs {pd:.4}");
}

#[test]
fn unemployment_benefit_is_a_monthly_trace_of_need_under_the_shipped_code_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    synth(&out, 6_000, |_| {});
    let table = tidig_connectors::social::CodeTable::from_toml(
        &std::fs::read_to_string(out.join("social/code_table.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(table.codes["TMT"], "unemployment_benefit");

    // Months of benefit per person in the year before the reference date.
    let events = std::fs::read_to_string(out.join("social/case_events.csv")).unwrap();
    let mut months: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut all = 0;
    for l in events.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        if f[2] != "TMT" {
            continue;
        }
        all += 1;
        let (start, end) = (f[3], f[4]);
        let days = (chrono::NaiveDate::parse_from_str(end, "%Y-%m-%d").unwrap()
            - chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").unwrap())
        .num_days();
        assert_eq!(days, 27, "a benefit month runs 28 days: {l}");
        let amount: f64 = f[5].parse().unwrap();
        assert!((700.0..1300.0).contains(&amount), "{l}");
        if start >= "2025-01-01" {
            *months.entry(f[1]).or_default() += 1;
        }
    }
    assert!(
        all > 1_000,
        "only {all} benefit months in a 6,000-person town"
    );

    // Children in the top decile of true risk have parents on benefit far more often
    // than children in the lower half: the registry carries the latent need.
    let relations = std::fs::read_to_string(out.join("population/relations.csv")).unwrap();
    let mut parents: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for l in relations.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        parents.entry(f[0]).or_default().push(f[1]);
    }
    let truth = std::fs::read_to_string(out.join("truth/outcomes.csv")).unwrap();
    let mut children: Vec<(f64, u32)> = truth
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let m = parents.get(f[0]).map_or(0, |ps| {
                ps.iter().map(|p| months.get(p).copied().unwrap_or(0)).sum()
            });
            (f[3].parse().unwrap(), m)
        })
        .collect();
    children.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mean = |c: &[(f64, u32)]| c.iter().map(|x| f64::from(x.1)).sum::<f64>() / c.len() as f64;
    let n = children.len();
    let (top, bottom) = (mean(&children[..n / 10]), mean(&children[n / 2..]));
    assert!(
        top > 3.0 * bottom,
        "benefit months: top decile {top:.2}, lower half {bottom:.2}"
    );
}
