//! `tidig audit …`: the data-protection officer's commands.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::{AuditCommand, Ctx};
use crate::pipeline::audit::{self as op, Query, VerifyReport};

/// A key given as text or as a file holding it.
fn key_text(given: &str) -> Result<String> {
    let p = Path::new(given);
    if !given.contains('+') || p.exists() {
        return std::fs::read_to_string(p)
            .map(|t| t.trim().to_string())
            .with_context(|| format!("{given}: cannot read the verifier key"));
    }
    Ok(given.trim().to_string())
}

pub(super) async fn run(ctx: &Ctx, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { against, verifier } => {
            let given = verifier.as_deref().map(key_text).transpose()?;
            let against = against
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("{}: cannot read the checkpoint", p.display()))
                })
                .transpose()?;
            let report = with_app!(ctx, |app| {
                let v = op::verifier(&app, given.as_deref())?;
                op::verify(&app, v.as_ref(), against.as_deref()).await?
            });
            print_verify(&report, ctx.json);
            if !report.ok {
                anyhow::bail!("the audit trail does not verify");
            }
        }
        AuditCommand::Checkpoint => {
            let cp = with_app!(ctx, |app| op::checkpoint(&app).await?);
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "size": cp.size, "note": cp.note}));
            } else {
                print!("{}", cp.note);
            }
        }
        AuditCommand::Prove { seq } => {
            let p = with_app!(ctx, |app| op::prove(&app, seq).await?);
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "proof": p}));
            } else {
                println!(
                    "entry {} of {} (leaf hash {})",
                    p.seq, p.tree_size, p.leaf_hash
                );
                for (i, h) in p.proof.iter().enumerate() {
                    println!("  proof[{i}] {h}");
                }
                println!("root {}\n\n{}", p.root, p.checkpoint);
            }
        }
        AuditCommand::Query(a) => {
            let by = ctx.principal()?;
            let q = Query {
                from: a.from,
                to: a.to,
                principal: a.principal,
                action: a.action,
                outcome: a.outcome,
                person: a.person,
                page_size: a.page_size,
                page_token: a.page_token,
            };
            let page = with_app!(ctx, |app| op::query(&app, &by, &q).await?);
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "entries": page.entries, "next_page_token": page.next_page_token})
                );
            } else {
                for e in &page.entries {
                    println!(
                        "{:>6} {} {:<24} {:<8} {} {}",
                        e["seq"],
                        e["at"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["outcome"]["kind"].as_str().unwrap_or(""),
                        e["principal"]["id"].as_str().unwrap_or(""),
                        e["subject"].as_str().unwrap_or("")
                    );
                }
                match page.next_page_token {
                    Some(t) => println!("more: --page-token {t}"),
                    None => println!("({} entries)", page.entries.len()),
                }
            }
        }
        AuditCommand::Export { out } => {
            let by = ctx.principal()?;
            let report = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("{}: cannot create", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    with_app!(ctx, |app| op::export(&app, &by, &mut w).await?)
                }
                None => {
                    if ctx.json {
                        anyhow::bail!(
                            "--json needs --out FILE (the export itself goes to stdout otherwise)"
                        );
                    }
                    let stdout = std::io::stdout();
                    let mut w = stdout.lock();
                    with_app!(ctx, |app| op::export(&app, &by, &mut w).await?)
                }
            };
            if ctx.json {
                emit_json!(
                    "{}",
                    json!({"ok": true, "entries": report.entries, "checkpoint": report.checkpoint})
                );
            } else if let Some(p) = out {
                println!(
                    "{} entries to {} (checkpoint of size {})",
                    report.entries,
                    p.display(),
                    report.checkpoint.size
                );
            }
        }
        AuditCommand::VerifyExport { file, verifier } => {
            let v = tidig_governance::audit::NoteVerifier::parse(&key_text(&verifier)?)
                .map_err(|e| anyhow::anyhow!("--verifier: {e}"))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let cp = op::verify_export(&text, &v)
                .with_context(|| format!("{} does not verify", file.display()))?;
            if ctx.json {
                emit_json!("{}", json!({"ok": true, "checkpoint": cp}));
            } else {
                println!(
                    "{}: OK, {} entries, root {} signed by {}",
                    file.display(),
                    cp.size,
                    cp.root,
                    v.name()
                );
            }
        }
    }
    Ok(())
}

fn print_verify(r: &VerifyReport, json: bool) {
    if json {
        emit_json!("{}", json!({"ok": r.ok, "verify": r}));
        return;
    }
    match &r.problem {
        None => {
            println!(
                "audit trail OK: {} entries, root {} ({} checkpoints, {:.0} entries/s)",
                r.entries, r.root, r.checkpoints, r.entries_per_second
            );
            match &r.latest_checkpoint {
                Some(c) => println!(
                    "latest signed checkpoint: size {}, root {}{}",
                    c.size,
                    c.root,
                    if r.after_checkpoint > 0 {
                        format!(" ({} entries after it)", r.after_checkpoint)
                    } else {
                        String::new()
                    }
                ),
                None => println!("no signed checkpoint yet"),
            }
            if let Some(a) = &r.against {
                println!(
                    "extends the archived checkpoint of size {} (consistency proof verified)",
                    a.size
                );
            }
        }
        Some(p) => {
            let at = p
                .seq
                .map_or("the log".to_string(), |s| format!("entry {s}"));
            println!(
                "audit trail DOES NOT VERIFY: {:?} at {at}: {}",
                p.kind, p.detail
            );
        }
    }
    println!(
        "retention: {} days configured; tidig never deletes entries (oldest {})",
        r.retention.days,
        r.retention.oldest_entry.as_deref().unwrap_or("none")
    );
}
