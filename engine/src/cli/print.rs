//! Human and JSON renderings of the operations' reports. With `--json` each command
//! prints exactly one object on stdout.

use serde_json::json;

use crate::pipeline::features::FeatureReport;
use crate::pipeline::ingest::IngestReport;
use crate::pipeline::score::{ScoreReport, Suggestion};
use crate::pipeline::train::TrainReport;
use crate::synth::SynthReport;

pub fn print_features(r: &FeatureReport, json: bool) {
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["ok"] = json!(true);
        v["peak_rss_mb"] = json!(crate::cli::bench::peak_rss_mb());
        emit_json!("{v}");
        return;
    }
    println!(
        "features {} (version {}) as of {}: {} persons x {} features from {} events in {:.2}s",
        r.feature_set,
        &r.version[..12],
        r.as_of,
        r.persons,
        r.features,
        r.events_scanned,
        r.seconds
    );
    let label = if r.label_complete {
        format!(
            "{} positive ({:.1}%)",
            r.label_positive,
            100.0 * r.label_positive as f64 / r.persons.max(1) as f64
        )
    } else {
        "not yet observable (the horizon reaches past the data)".to_string()
    };
    println!("label: {label}");
    let mut rates: Vec<(&String, &f64)> =
        r.missing_rate.iter().filter(|(_, m)| **m > 0.0).collect();
    rates.sort_by(|a, b| b.1.partial_cmp(a.1).unwrap_or(std::cmp::Ordering::Equal));
    if !rates.is_empty() {
        let top: Vec<String> = rates
            .iter()
            .take(5)
            .map(|(k, m)| format!("{k} {:.0}%", *m * 100.0))
            .collect();
        println!(
            "most often missing (no such relative in the household, or no event yet): {}",
            top.join(", ")
        );
    }
    if !r.not_materialised.is_empty() {
        println!(
            "declared but never materialised (prohibited): {}",
            r.not_materialised.join(", ")
        );
    }
}

pub fn print_score(r: &ScoreReport, top: &[(String, Suggestion)], json: bool) {
    if json {
        let top: Vec<_> = top
            .iter()
            .map(|(pseudonym, s)| json!({"pseudonym": pseudonym, "suggestion": s}))
            .collect();
        emit_json!("{}", json!({"ok": true, "report": r, "top": top}));
        return;
    }
    println!(
        "scoring as of {} with model {} and rule pack {}: cohort {}, scored {}, {} suggestions ({} new, {} unchanged, {} superseded) in {:.2}s",
        r.as_of,
        &r.model_id[..16],
        &r.rules_version[..12],
        r.cohort,
        r.scored,
        r.suggestions,
        r.new,
        r.unchanged,
        r.superseded,
        r.seconds.total
    );
    if let Some(d) = &r.drift {
        if d.warnings.is_empty() {
            println!(
                "  drift: score PSI {:.3}; no input shifted from the training population (`tidig drift`)",
                d.score_psi
            );
        } else {
            println!(
                "  DRIFT: {} shifted from the training population (PSI > 0.25); review before trusting the scores (`tidig drift`)",
                d.warnings.join(", ")
            );
        }
    }
    let list = |m: &std::collections::BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  excluded before scoring: {}", list(&r.excluded));
    println!(
        "  below the elevated band: {}; outside every unit's area: {}",
        r.below_band, r.unrouted
    );
    println!("  suppressed by output rules: {}", list(&r.suppressed));
    println!(
        "  deferred by weekly capacity: {}",
        list(&r.deferred_by_capacity)
    );
    println!("  suggestions per unit: {}", list(&r.per_unit));
    if r.rule_errors > 0 {
        println!(
            "  RULE ERRORS (failed closed) for {} persons: {}",
            r.rule_errors,
            r.rule_error_samples.join("; ")
        );
    }
    println!(
        "  rules: {} requests, {} evaluated by Cedar (the rest memoized); {} factors redacted",
        r.rule_requests, r.rule_evaluations, r.factors_redacted
    );
    for (pseudonym, s) in top {
        println!(
            "\n  {} → {} (score {:.3}, {}; expires {})",
            pseudonym, s.unit, s.score, s.band, s.expires_at
        );
        for f in &s.factors {
            match f.contribution {
                Some(c) => println!("    {:+.2}  {} [{}]", c, f.text, f.source),
                None => println!(
                    "      ··  {} [{}]",
                    f.text,
                    f.rule.as_deref().unwrap_or("redacted")
                ),
            }
        }
        println!(
            "    suggested: {}",
            s.interventions
                .iter()
                .map(|i| i.title.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let trace: Vec<String> = s
            .rule_trace
            .iter()
            .filter(|t| t.action != "view_factor" || !t.allowed)
            .map(|t| {
                format!(
                    "{}:{} {} [{}]",
                    t.stage.name(),
                    t.action,
                    if t.allowed { "allow" } else { "deny" },
                    t.rules.join(", ")
                )
            })
            .collect();
        println!("    rule trace: {}", trace.join(" → "));
    }
}

pub fn print_train(r: &TrainReport, json: bool) {
    let e = &r.artifact.evaluation;
    if json {
        emit_json!(
            "{}",
            json!({"ok": true, "model_id": r.model_id, "state": r.state, "seconds": r.seconds,
                   "auc": e.auc, "pr_auc": e.pr_auc, "brier": e.brier, "log_loss": e.log_loss,
                   "precision_at_capacity": e.precision_at_capacity, "recall_at_capacity": e.recall_at_capacity,
                   "gate_passed": r.artifact.gate_passed, "gate_failures": r.artifact.gate_failures,
                   "cohort": r.artifact.cohort, "alpha": r.artifact.model.alpha,
                   "challenger": r.artifact.challenger})
        );
        return;
    }
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    println!(
        "model {} (logistic, alpha {}) trained in {:.1}s on {}; holdout {}: AUC {}, PR-AUC {}, Brier {:.4}, precision@{} {:.3}, recall {:.3}",
        &r.model_id[..16],
        r.artifact.model.alpha,
        r.seconds,
        r.artifact.train_snapshots.join(" + "),
        r.artifact.holdout_snapshot,
        f(e.auc),
        f(e.pr_auc),
        e.brier,
        e.capacity,
        e.precision_at_capacity,
        e.recall_at_capacity
    );
    for fr in &r.artifact.fairness {
        println!(
            "  fairness {:<22} DP ratio {}  EO difference {}",
            fr.attribute,
            f(fr.demographic_parity_ratio),
            f(fr.equalized_odds_difference)
        );
    }
    if r.artifact.gate_passed {
        println!(
            "release gate passed; state: trained (approval by someone else comes with the service)"
        );
    } else {
        println!(
            "release gate FAILED: {}",
            r.artifact.gate_failures.join("; ")
        );
    }
}

pub fn print_synth(r: &SynthReport, json: bool) {
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["ok"] = json!(true);
        emit_json!("{v}");
        return;
    }
    println!(
        "synthetic municipality {} ({}) in {}: {} persons in {} households, {} FHIR resources, \
         {} social-services events, {} population rows",
        r.municipality,
        r.country,
        r.out,
        r.persons,
        r.households,
        r.fhir_resources,
        r.social_events,
        r.population_rows
    );
    println!(
        "truth: {} children on {}, {} interventions in the next 12 months (base rate {:.1}%); {} faults injected",
        r.children_at_reference,
        r.reference_date,
        r.truth_positive,
        100.0 * r.truth_base_rate,
        r.corruptions
    );
}

pub fn print_ingest(r: &IngestReport, json: bool) {
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["ok"] = json!(r.failed_files == 0);
        v["peak_rss_mb"] = json!(crate::cli::bench::peak_rss_mb());
        emit_json!("{v}");
        return;
    }
    for f in &r.files {
        let extra = f
            .error
            .as_deref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default();
        if f.status != crate::domain::FileStatus::Loaded {
            println!("{:>14} {}{extra}", f.status, f.file);
            continue;
        }
        println!(
            "{:>14} {:<58} read {:>9} loaded {:>9} rejected {:>6} duplicate {:>6} skipped {:>6}{}{extra}",
            f.status,
            f.file,
            f.read,
            f.loaded,
            f.rejected,
            f.duplicate,
            f.skipped,
            if f.pending > 0 || f.resolved > 0 {
                format!(" pending {} resolved {}", f.pending, f.resolved)
            } else {
                String::new()
            }
        );
    }
    println!(
        "total: read {} loaded {} rejected {} (quarantined with file, line, field and reason) duplicate {} skipped {} in {:.2}s ({:.0} lines/s)",
        r.read, r.loaded, r.rejected, r.duplicate, r.skipped, r.seconds, r.records_per_second
    );
    if r.pending > 0 || r.resolved > 0 || r.pending_total > 0 {
        println!(
            "pending: {} event(s) kept until their Patient is loaded, {} resolved in this run, {} waiting in the store",
            r.pending, r.resolved, r.pending_total
        );
    }
}

pub fn print_golden(report: &tidig_governance::golden::GoldenReport, json: bool) {
    if json {
        emit_json!("{}", json!({"ok": report.failed == 0, "report": report}));
        return;
    }
    for c in report.cases.iter().filter(|c| !c.passed) {
        println!(
            "FAIL {}: expected allowed={} rules {:?}{}, got allowed={} rules {:?} errors {:?}",
            c.name,
            c.expected.allowed,
            c.expected.rules,
            if c.expected.errors {
                " with a rule error"
            } else {
                ""
            },
            c.got.allowed,
            c.got.rules,
            c.got.errors
        );
    }
    println!(
        "{}: {} passed, {} failed (pack version {})",
        report.file,
        report.passed,
        report.failed,
        &report.pack_version[..12]
    );
}

/// A `tidig client` answer for people (the JSON object is what `--json` prints).
pub fn print_client_answer(a: &serde_json::Value) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    if let Some(id) = a.get("run_id") {
        println!(
            "research run {}: {}{}; its aggregates: `tidig client research-results {}`",
            s(id),
            s(&a["state"]),
            Some(s(&a["reason"]))
                .filter(|r| !r.is_empty())
                .map_or(String::new(), |r| format!(" ({r})")),
            s(id)
        );
        return;
    }
    if let (Some(run), Some(res)) = (a.get("run"), a.get("results")) {
        println!(
            "research run {} ({}) under permit {} v{}: {}{}",
            s(&run["id"]),
            s(&run["kind"]),
            s(&run["permit_id"]),
            run["permit_version"],
            s(&run["state"]),
            Some(s(&run["reason"]))
                .filter(|r| !r.is_empty())
                .map_or(String::new(), |r| format!(" ({r})")),
        );
        if res.is_object() {
            research_results(res);
        }
        return;
    }
    let stop = &a["scoring"];
    if stop["stopped"] == true {
        println!(
            "SCORING IS STOPPED since {} by {}: {}",
            s(&stop["since"]),
            s(&stop["switched_by"]),
            s(&stop["reason"])
        );
    }
    if a.get("changed").is_some() {
        if stop["stopped"] != true {
            println!(
                "scoring runs (since {} by {}: {})",
                s(&stop["since"]),
                s(&stop["switched_by"]),
                s(&stop["reason"])
            );
        }
        if a["changed"] != true {
            println!(
                "(it was so already; recorded as audit entry {})",
                a["audit_seq"]
            );
        }
        return;
    }
    if let Some(v) = a.get("verify") {
        if v["ok"] == true {
            println!(
                "audit trail OK: {} entries, root {} ({} checkpoints; latest signed size {})",
                v["entries"],
                s(&v["root"]),
                v["checkpoints"],
                v["latest_checkpoint_size"]
            );
        } else {
            println!(
                "AUDIT TRAIL NOT OK: {} (entry {})",
                s(&v["problem"]),
                v["problem_seq"]
            );
        }
        return;
    }
    if let Some(e) = a.get("export") {
        println!("{} entries written to {}", e["entries"], s(&e["out"]));
        return;
    }
    if a.get("proof").is_some() || a.get("entries").is_some() {
        println!("{}", serde_json::to_string_pretty(a).unwrap_or_default());
        return;
    }
    if let Some(o) = a.get("objection") {
        if o["changed"] == true {
            println!(
                "{}: done (audit entry {}); {} open suggestion(s) withdrawn",
                s(&o["pseudonym"]),
                o["audit_seq"],
                o["withdrawn_suggestions"].as_array().map_or(0, Vec::len)
            );
        } else {
            println!(
                "{}: it was so already (recorded as audit entry {})",
                s(&o["pseudonym"]),
                o["audit_seq"]
            );
        }
        return;
    }
    if let Some(list) = a["permits"].as_array() {
        for p in list {
            println!(
                "{} v{} {}{}  {} for {} ({}), valid {} to {}; researchers {}",
                s(&p["id"]),
                p["version"],
                s(&p["state"]),
                p["revoked_reason"]
                    .as_str()
                    .map_or(String::new(), |r| format!(" ({r})")),
                s(&p["issuer"]),
                s(&p["holder"]),
                s(&p["purpose"]),
                s(&p["valid_from"]),
                s(&p["valid_to"]),
                p["researchers"]
                    .as_array()
                    .map(|r| r.iter().map(&s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            );
        }
        if list.is_empty() {
            println!("(no permits registered)");
        }
        return;
    }
    if let Some(r) = a.get("subject_access") {
        println!(
            "subject-access report for {} written to {}: {} records, {} feature snapshots, {} suggestions, {} recorded accesses{}",
            s(&r["pseudonym"]),
            s(&r["out"]),
            r["records"],
            r["snapshots"],
            r["suggestions"],
            r["accesses"],
            if r["objection"] == true { ", an objection" } else { "" }
        );
        if r["held"] != true {
            println!("(the registries loaded into tidig do not hold this person)");
        }
        return;
    }
    if a.get("statistics").is_some() {
        print_statistics(&a["statistics"]);
        return;
    }
    if let Some(card) = a["card"].as_str() {
        println!("{card}");
        return;
    }
    if let Some(list) = a["models"].as_array() {
        for m in list {
            println!(
                "{}  {:<8} {:<9} gate {}  {} by {} ({})",
                s(&m["id"]).get(..16).unwrap_or_default(),
                s(&m["kind"]),
                s(&m["state"]),
                if m["gate_passed"] == true {
                    "passed"
                } else {
                    "FAILED"
                },
                s(&m["created_at"]),
                s(&m["created_by"]),
                s(&m["created_auth"])
            );
        }
        if list.is_empty() {
            println!("(no models registered)");
        }
        return;
    }
    if let Some(m) = a.get("model") {
        println!("{} is {}", s(&m["id"]), s(&m["state"]));
        if let Some(r) = a["retired"].as_str() {
            println!("{r} is retired");
        }
        return;
    }
    if let Some(list) = a["objections"].as_array() {
        for o in list {
            let state = if o["withdrawn_at"].is_string() {
                format!(
                    "withdrawn {} by {} ({})",
                    s(&o["withdrawn_at"]),
                    s(&o["withdrawn_by"]),
                    s(&o["withdrawn_reference"])
                )
            } else {
                "applies".into()
            };
            println!(
                "{}  registered {} by {} ({})  {state}",
                s(&o["pseudonym"]),
                s(&o["registered_at"]),
                s(&o["registered_by"]),
                s(&o["reference"])
            );
        }
        if list.is_empty() {
            println!("(no objections registered)");
        }
        return;
    }
    if let Some(list) = a["suggestions"].as_array() {
        println!(
            "{:<32}  {:<33}  {:<8}  {:>5}  expires",
            "id", "pseudonym", "band", "score"
        );
        for x in list {
            println!(
                "{:<32}  {:<33}  {:<8}  {:>5.3}  {}",
                s(&x["id"]),
                s(&x["pseudonym"]),
                s(&x["band"]),
                x["score"].as_f64().unwrap_or_default(),
                s(&x["expires_at"]).get(..10).unwrap_or_default()
            );
        }
        if list.is_empty() {
            println!("(no open suggestions)");
        }
        if !s(&a["next_page_token"]).is_empty() {
            println!("more: --page-token {}", s(&a["next_page_token"]));
        }
        return;
    }
    if a.get("summary").is_some() {
        let sum = &a["summary"];
        println!(
            "suggestion {} for {} ({}): {} band, score {:.3}, {}",
            s(&sum["id"]),
            s(&sum["pseudonym"]),
            s(&sum["unit"]),
            s(&sum["band"]),
            sum["score"].as_f64().unwrap_or_default(),
            s(&a["status"])
        );
        println!("factors:");
        for f in a["factors"].as_array().into_iter().flatten() {
            match f["contribution"].as_f64() {
                Some(c) if f["redacted"] != true => println!(
                    "  {c:+.3}  {} [{}, {}]",
                    s(&f["text"]),
                    s(&f["registry"]),
                    s(&f["relation"])
                ),
                _ => println!(
                    "      -  {} [redacted by {}]",
                    s(&f["text"]),
                    s(&f["redacting_rule"])
                ),
            }
        }
        println!("suggested support:");
        for i in a["interventions"].as_array().into_iter().flatten() {
            println!("  {}: {}", s(&i["id"]), s(&i["title"]));
        }
        println!("rule trace:");
        for e in a["rule_trace"].as_array().into_iter().flatten() {
            let rules: Vec<String> = e["rules"].as_array().into_iter().flatten().map(s).collect();
            println!(
                "  {} {} {}: {} ({})",
                s(&e["stage"]),
                s(&e["action"]),
                s(&e["subject"]),
                if e["allowed"] == true {
                    "allowed"
                } else {
                    "refused"
                },
                rules.join(", ")
            );
        }
        return;
    }
    if a.get("decision_id").is_some() {
        println!(
            "decision {} recorded on {} (audit entry {})",
            s(&a["decision_id"]),
            s(&a["suggestion"]),
            a["audit_seq"]
        );
        return;
    }
    if a.get("national_id").is_some() {
        println!(
            "{} (re-identification recorded as audit entry {})",
            s(&a["national_id"]),
            a["audit_seq"]
        );
        return;
    }
    println!("{a}");
}

/// The oversight statistics as plain tables (`-` marks a suppressed small cell).
pub fn print_statistics(st: &serde_json::Value) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let f = |v: &serde_json::Value, digits: usize| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{x:.digits$}"))
    };
    let rows = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    println!(
        "statistics as of {} (cells below {} suppressed: -)",
        s(&st["today"]),
        st["min_cell"]
    );
    println!("\nsuggestions per unit and ISO week");
    for w in rows(&st["suggestions_per_week"]) {
        println!(
            "  {:<28} {:<9} {:>7}",
            s(&w["unit"]),
            s(&w["week"]),
            n(&w["suggestions"])
        );
    }
    println!("\ndecisions by outcome and reason");
    for d in rows(&st["decisions"]) {
        println!(
            "  {:<14} {:<28} {:>7}",
            s(&d["outcome"]),
            s(&d["reason_code"]),
            n(&d["decisions"])
        );
    }
    println!("\noverride rate (declined or not relevant / decided)");
    for o in rows(&st["override_rates"]) {
        println!(
            "  {:<28} {:<9} {:>7} / {:>7} = {}",
            s(&o["unit"]),
            s(&o["band"]),
            n(&o["overridden"]),
            n(&o["decided"]),
            f(&o["rate"], 3)
        );
    }
    println!("\nmedian time to decision (hours)");
    for t in rows(&st["time_to_decision"]) {
        println!(
            "  {:<28} {:>7} decided, median {}",
            s(&t["unit"]),
            n(&t["decided"]),
            f(&t["median_hours"], 1)
        );
    }
    println!("\nexpired without a decision");
    for u in rows(&st["expired_undecided"]) {
        println!("  {:<28} {:>7}", s(&u["unit"]), n(&u["count"]));
    }
    for r in rows(&st["runs"]) {
        println!(
            "\nscoring run {} as of {} (model {}, cohort {})",
            r["id"],
            s(&r["as_of"]),
            s(&r["model_id"]).get(..12).unwrap_or_default(),
            n(&r["cohort"])
        );
        for (what, key) in [("excluded", "excluded"), ("suppressed", "suppressed")] {
            for c in rows(&r[key]) {
                println!("  {what:<10} {:<44} {:>7}", s(&c["rule"]), n(&c["persons"]));
            }
        }
        if let Some(psi) = r["score_psi"].as_f64() {
            println!("  drift      score PSI {psi:.3}");
        }
        for w in rows(&r["drift_warnings"]) {
            println!(
                "  DRIFT      {} has shifted (PSI > 0.25): review before trusting the scores",
                s(&w)
            );
        }
        for fr in rows(&r["flag_rates"]) {
            println!(
                "  flagged    {:<28} {:>7} of {:>7} children = {} per 1,000",
                s(&fr["unit"]),
                n(&fr["flagged"]),
                n(&fr["children"]),
                f(&fr["per_1000"], 1)
            );
        }
    }
    if let Some(fair) = st["fairness"].as_object() {
        println!(
            "\nactive model {}: fairness",
            s(&fair["model_id"]).get(..12).unwrap_or_default()
        );
        for t in rows(&fair["tables"]) {
            println!(
                "  {:<22} parity ratio {}  equalized odds difference {}",
                s(&t["attribute"]),
                f(&t["demographic_parity_ratio"], 3),
                f(&t["equalized_odds_difference"], 3)
            );
        }
    }
}

/// A research run: its state and, when released, the aggregates (`-` marks a
/// suppressed cell).
pub fn print_research(r: &crate::pipeline::research::ResearchRun, json: bool) {
    if json {
        emit_json!(
            "{}",
            json!({"ok": true, "run": r.run, "results": r.results})
        );
        return;
    }
    let run = &r.run;
    println!(
        "research run {} under permit {} v{} as of {}: {}{}",
        run.id,
        run.permit_id,
        run.permit_version,
        crate::dates::from_days(run.as_of).map_or_else(String::new, |d| d.to_string()),
        run.state,
        run.reason
            .as_deref()
            .map_or(String::new(), |why| format!(" ({why})"))
    );
    if let Some(res) = &r.results {
        research_results(res);
    }
}

/// A research run's released aggregates (what `tidig research results` and `tidig
/// client research-results` show).
fn research_results(res: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let f = |v: &serde_json::Value, d: usize| {
        v.as_f64().map_or("-".to_string(), |x| format!("{x:.d$}"))
    };
    println!(
        "  persons: training {}, holdout {} ({} with the outcome); cells under {} suppressed (-)",
        n(&res["train_persons"]),
        n(&res["holdout_persons"]),
        n(&res["holdout_positives"]),
        res["min_cell"]
    );
    println!(
        "  holdout AUC {}, Brier {}",
        f(&res["auc"], 3),
        f(&res["brier"], 4)
    );
    let factors = res["factors"]["factors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !factors.is_empty() {
        println!(
            "  {:<44} {:>8} {:>8} {:>8}  {:<17} {:>7}",
            "factor (exposed = above the median)", "prev+", "prev-", "OR", "95% CI", "coef"
        );
    }
    for x in &factors {
        println!(
            "  {:<44} {:>8} {:>8} {:>8}  [{:>6}, {:>6}] {:>7}",
            x["feature"].as_str().unwrap_or_default(),
            f(&x["prevalence_positive"], 3),
            f(&x["prevalence_negative"], 3),
            f(&x["odds_ratio"], 2),
            f(&x["ci_low"], 2),
            f(&x["ci_high"], 2),
            f(&x["coefficient"], 3)
        );
    }
    for t in
        std::iter::once(&res["calibration"]).chain(res["fairness"].as_array().into_iter().flatten())
    {
        let Some(lines) = t["lines"].as_array() else {
            continue;
        };
        let hidden = t["suppressed"].as_u64().unwrap_or_default();
        println!(
            "  {}{}: {}",
            t["name"].as_str().unwrap_or_default(),
            if hidden > 0 {
                format!(" ({hidden} lines suppressed)")
            } else {
                String::new()
            },
            lines
                .iter()
                .filter(|l| !l["persons"].is_null())
                .map(|l| format!(
                    "{} n={} obs={} pred={}",
                    l["group"].as_str().unwrap_or_default(),
                    n(&l["persons"]),
                    f(&l["observed_rate"], 3),
                    f(&l["mean_predicted"], 3)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let m = &res["model"];
    if m.is_object() {
        println!(
            "  model {} registered as {} under permit {} v{}; gate {}; next: {}",
            m["id"].as_str().unwrap_or_default(),
            m["state"].as_str().unwrap_or_default(),
            m["permit"]["id"].as_str().unwrap_or_default(),
            m["permit"]["version"],
            if m["gate_passed"] == true {
                "passed"
            } else {
                "failed"
            },
            m["next"].as_str().unwrap_or_default()
        );
    }
}
