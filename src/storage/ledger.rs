//! The budget file: the requests sent within the budget's windows, by wall
//! clock. The limiter hands it each slot before the request goes out, so a
//! process killed at any moment leaves every request it sent on record, and
//! the next one never exceeds the account's windows the last one filled.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file::Kind;
use super::state::{Clock, Identity};
use super::{BUDGET_FILE, Storage};
use crate::monogoto::budget::{MAX_WINDOW, SpendJournal, Spent};

pub(crate) const KIND: Kind = *b"MGXBUDGT";
pub(crate) const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Ledger<'a> {
    #[serde(borrow)]
    identity: Identity<'a>,
    written_at: u64,
    sent: Vec<u64>,
    paused_until: Option<u64>,
}

/// Writes the budget file for the limiter.
pub struct BudgetJournal {
    storage: Arc<Storage>,
}

impl BudgetJournal {
    pub fn new(storage: Arc<Storage>) -> Self {
        BudgetJournal { storage }
    }
}

impl SpendJournal for BudgetJournal {
    fn keep(&self, spent: Spent) {
        let clock = Clock::now();
        let ledger = Ledger {
            identity: self.storage.identity(),
            written_at: super::state::unix_ns(clock.wall),
            sent: spent.sent.iter().map(|&at| clock.wall_ns(at)).collect(),
            paused_until: spent.paused_until.map(|at| clock.wall_ns(at)),
        };
        match postcard::to_stdvec(&ledger) {
            Ok(payload) => {
                self.storage.write(BUDGET_FILE, &KIND, VERSION, &payload);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the budget spent"),
        }
    }
}

impl Storage {
    /// The requests a previous process of this account sent, as instants of
    /// this one; none when there is no usable budget file.
    pub fn load_budget(&self) -> Option<Spent> {
        let (version, payload) = self.read(BUDGET_FILE, &KIND)?;
        let path = self.path(BUDGET_FILE);
        let ledger = match decode(version, &payload) {
            Ok(ledger) => ledger,
            Err(why) => {
                self.set_aside(&path, &why);
                return None;
            }
        };
        if !self.owns(&ledger.identity) {
            // The state file's INFO line says so for both.
            tracing::debug!(
                path = %path.display(),
                "the saved budget belongs to another API or account: not used"
            );
            return None;
        }
        let clock = Clock::now();
        // A slot reserved ahead stays ahead, never further than a window.
        let instant = |ns: u64| clock.instant(ns, MAX_WINDOW.min(Duration::from_secs(86400)));
        Some(Spent {
            sent: ledger.sent.iter().map(|&ns| instant(ns)).collect(),
            paused_until: ledger.paused_until.map(instant),
        })
    }
}

fn decode(version: u32, payload: &[u8]) -> Result<Ledger<'_>, String> {
    if version != VERSION {
        return Err(format!(
            "format version {version}, which this version of the exporter cannot read (it reads {VERSION})"
        ));
    }
    let (ledger, rest) =
        postcard::take_from_bytes::<Ledger<'_>>(payload).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the ledger", rest.len()));
    }
    Ok(ledger)
}
