//! The application core: one `App` per process, opened once, shared by the command line
//! and (later) the gRPC server. Every use case in `pipeline` takes `&App`.

use tidig_connectors::edge::EdgeConfig;
use tidig_connectors::social::CodeTable;
use tidig_governance::RulePack;

use crate::clock::Clock;
use crate::error::EngineError;
use crate::settings::Settings;
use crate::store::Store;

/// Everything an operation needs besides its arguments.
#[derive(Debug)]
pub struct App {
    /// The one connection pool of this process.
    store: Store,
    /// Validated settings (defaults → file → environment → flags).
    settings: Settings,
    /// The rule pack the settings name (or the built-in one), loaded and validated once.
    pack: RulePack,
    /// Where "now" comes from.
    clock: Clock,
}

impl App {
    /// Opens the store at `db` and loads the rule pack the settings name.
    pub async fn open(db: &str, settings: Settings, clock: Clock) -> Result<App, EngineError> {
        let pack = crate::pipeline::rules::load_pack(settings.rules.pack.as_deref())?;
        let store = Store::open(db).await?;
        Ok(App {
            store,
            settings,
            pack,
            clock,
        })
    }

    /// An app over an already open store (tests, benchmarks).
    pub fn with_store(store: Store, settings: Settings, pack: RulePack, clock: Clock) -> App {
        App {
            store,
            settings,
            pack,
            clock,
        }
    }

    /// The same store and pack under other settings (benchmarks lift capacities).
    pub fn with_settings(&self, settings: Settings) -> App {
        App {
            store: self.store.clone(),
            settings,
            pack: self.pack.clone(),
            clock: self.clock,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn pack(&self) -> &RulePack {
        &self.pack
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The edge (pseudonym and vault keys, ID rules) for ingesting, with the keys loaded
    /// now: commands that never see a national ID do not need them.
    pub fn edge(&self) -> Result<EdgeConfig, EngineError> {
        self.settings.edge(self.clock.today())
    }

    /// The social-services code table the settings name.
    pub fn code_table(&self) -> Result<CodeTable, EngineError> {
        self.settings.code_table()
    }

    /// Closes the pool (SQLite checkpoints its WAL on the last close).
    pub async fn close(self) {
        self.store.close().await;
    }
}
