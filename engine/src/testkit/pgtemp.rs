//! A throwaway PostgreSQL cluster for tests and benchmarks.
//!
//! Finds `initdb` and `postgres` on PATH or under `/usr/lib/postgresql/*/bin`, creates a
//! cluster in a temporary directory (as the `postgres` OS user when running as root,
//! since `initdb` refuses root), and starts it on a free loopback port. A watchdog shell
//! stops the server and removes the directory when the owning process exits, however it
//! exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// Locates the PostgreSQL server binaries.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("TIDIG_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    versions.sort();
    if let Some(best) = versions.pop() {
        return Some(best);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl TempPostgres {
    /// Starts a cluster, or returns `Ok(None)` when no server binaries exist here.
    pub fn start(fast_unsafe: bool) -> Result<Option<TempPostgres>> {
        let Some(bin) = find_bin_dir() else {
            return Ok(None);
        };
        let as_postgres = is_root();
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let base = std::env::temp_dir().join(format!(
            "tidig-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&base)?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&base)
                .status()
                .context("chown of the cluster directory")?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", base.display());
            }
        }
        let data = base.join("data");
        let pg = TempPostgres {
            dir: base.clone(),
            port: free_port()?,
            bin: bin.clone(),
            as_postgres,
        };
        let initdb = format!(
            "{} -D {} -U postgres --auth=trust --encoding=UTF8 --no-locale >{}/initdb.log 2>&1",
            shell_quote(&bin.join("initdb").display().to_string()),
            shell_quote(&data.display().to_string()),
            shell_quote(&base.display().to_string()),
        );
        let status = pg.sh(&initdb).status().context("running initdb")?;
        if !status.success() {
            let log = std::fs::read_to_string(base.join("initdb.log")).unwrap_or_default();
            bail!("initdb failed: {}", log.lines().last().unwrap_or(""));
        }
        let extra = if fast_unsafe {
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        } else {
            ""
        };
        // The watchdog: run the server, stop it when the parent process is gone.
        let script = format!(
            "{pg} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 {extra} \
             -c max_connections=200 -c shared_buffers=128MB >{dir}/server.log 2>&1 & pid=$!; \
             while [ -d /proc/{parent} ] && kill -0 $pid 2>/dev/null; do sleep 0.5; done; \
             kill -INT $pid 2>/dev/null; wait $pid; rm -rf {dir}",
            pg = shell_quote(&bin.join("postgres").display().to_string()),
            data = shell_quote(&data.display().to_string()),
            port = pg.port,
            dir = shell_quote(&base.display().to_string()),
            parent = std::process::id(),
        );
        pg.sh(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
                bail!(
                    "postgres did not start: {}",
                    log.lines().last().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Accepting TCP is not yet accepting queries; wait for the startup to finish.
        let ready = bin.join("pg_isready");
        while ready.exists()
            && !Command::new(&ready)
                .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(true)
        {
            if Instant::now() > deadline {
                bail!("postgres did not become ready");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(pg))
    }

    fn sh(&self, script: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(self.url(name))
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let stop = format!(
            "{} stop -D {} -m immediate >/dev/null 2>&1",
            shell_quote(&self.bin.join("pg_ctl").display().to_string()),
            shell_quote(&self.dir.join("data").display().to_string())
        );
        let _ = self.sh(&stop).status();
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
