//! The poller's state in the state file (see `storage`): what it writes, and
//! what a start takes back from it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::schedule::{Restored, Schedule};
use super::{Discovery, Poller};
use crate::fleet::{PushInfo, Record, Snapshot};
use crate::monogoto::ThingStatus;
use crate::monogoto::model::{ListedThing, Unparsed};
use crate::monogoto::paging::Listing;
use crate::storage::state::{self, Answer, Clock, Header, Sim, Unfinished};
use crate::storage::{STATE_FILE, Storage};

/// The state is written at least this often while the exporter runs.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(60);
/// And at most this often (a crash loses what came since): a small fleet's
/// state is written at every publication, a large one's less often, so that
/// writes take at most a fiftieth of the time (see `Storage::write_every`).
const SAVE_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// The discovery listing, owned, for a write off the async workers.
struct DiscoveryCopy {
    iccids: Arc<Vec<String>>,
    listed_at: Option<u64>,
    pages: u32,
    unfinished: Option<(Vec<ListedThing>, u64, u32)>,
}

impl Poller {
    /// Writes the state when one is due (`force`: now), off the async
    /// workers; `wait`: until it is on disk. A write still running is not
    /// doubled, except when waited for.
    pub(crate) async fn save(&self, schedule: &Schedule, force: bool, wait: bool) {
        let Some(storage) = self.storage.clone() else {
            return;
        };
        {
            let mut last = self.last_save.lock().unwrap_or_else(|p| p.into_inner());
            let every = storage.write_every(SAVE_AT_MOST_EVERY, SAVE_EVERY);
            let due = force || last.is_none_or(|at| at.elapsed() >= every);
            if !due || (!wait && self.saving.load(Ordering::Acquire)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let clock = Clock::now();
        let followed = schedule.followed().clone();
        let turns: Vec<state::Turn> = (0..followed.len())
            .map(|position| schedule.turn(position, &clock))
            .collect();
        let outage_since = schedule.outage_since().map(|at| clock.wall_ns(at));
        let discovery = if self.discover {
            let cache = self.discovered.lock().await;
            Some(DiscoveryCopy {
                iccids: cache.iccids.clone(),
                listed_at: cache.at.map(|at| clock.wall_ns(at)),
                pages: u32::try_from(cache.pages).unwrap_or(u32::MAX),
                unfinished: cache.listing.as_ref().map(|listing| {
                    (
                        listing.found.clone(),
                        listing.offset() as u64,
                        u32::try_from(listing.pages).unwrap_or(u32::MAX),
                    )
                }),
            })
        } else {
            None
        };
        let snapshot = self.fleet.snapshot();
        let found_form = self.client.found_ids_form();
        let page_cap = u32::try_from(self.page_cap.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
        let requests_per_batch = *self
            .requests_per_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let shard = (
            u32::try_from(self.shard.index).unwrap_or(u32::MAX),
            u32::try_from(self.shard.count).unwrap_or(u32::MAX),
        );
        self.saving.store(true, Ordering::Release);
        let write = tokio::task::spawn_blocking(move || {
            let header = Header {
                written_at: state::unix_ns(clock.wall),
                identity: storage.identity(),
                shard,
                thing_ids_repeat: found_form,
                page_cap,
                requests_per_batch,
                outage_since,
                discovery: discovery.as_ref().map(|d| state::Discovery {
                    iccids: d.iccids.iter().map(String::as_str).collect(),
                    listed_at: d.listed_at,
                    pages: d.pages,
                    unfinished: d
                        .unfinished
                        .as_ref()
                        .map(|(found, offset, pages)| Unfinished {
                            found: found
                                .iter()
                                .map(|t| (t.iccid.as_str(), t.inactive))
                                .collect(),
                            offset: *offset,
                            pages: *pages,
                        }),
                }),
            };
            let sims = followed.iter().zip(&turns).map(|(iccid, turn)| Sim {
                iccid,
                turn: *turn,
                answer: snapshot
                    .get_answered(iccid)
                    .map(|(record, at)| answer_of(record, at)),
            });
            storage.write_state(|capacity| state::encode(&header, sims, capacity));
        });
        let saving = self.saving.clone();
        let done = async move {
            if let Err(e) = write.await {
                tracing::error!(error = %e, "writing the state failed");
            }
            saving.store(false, Ordering::Release);
        };
        if wait {
            done.await;
        } else {
            // The refresh goes on; the write finishes on its own.
            tokio::spawn(done);
        }
    }

    /// Takes back what the state file under `storage` holds for the SIMs
    /// this exporter follows now: their answers are served at once (those
    /// older than stale-after aside), their turns continue, and the
    /// discovery listing and what was learnt of the API are used again.
    /// Returns the SIMs served.
    pub(crate) async fn restore(&self, storage: &Storage) -> usize {
        let Some((version, payload)) = storage.read(STATE_FILE, &state::KIND) else {
            return 0;
        };
        let path = storage.path(STATE_FILE);
        let decoded = match state::decode(version, &payload) {
            Ok(decoded) => decoded,
            Err(why) => {
                storage.set_aside(&path, &why);
                return 0;
            }
        };
        let header = decoded.header;
        if !storage.owns(&header.identity) {
            tracing::info!(
                path = %path.display(),
                "the saved state belongs to another API or account: not used, starting cold"
            );
            return 0;
        }
        let clock = Clock::now();
        let settings = self.settings().clone();
        let same_layout = header.shard
            == (
                u32::try_from(self.shard.index).unwrap_or(u32::MAX),
                u32::try_from(self.shard.count).unwrap_or(u32::MAX),
            );
        if !same_layout {
            tracing::info!(
                saved = format!("{}/{}", header.shard.0, header.shard.1),
                now = %self.shard,
                "the shard layout changed since the state was saved: only this shard's SIMs are kept, and the fleet is listed again"
            );
        }
        if let Some(repeat) = header.thing_ids_repeat {
            self.client.assume_ids_form(repeat);
        }
        self.page_cap
            .fetch_max(header.page_cap as usize, Ordering::Relaxed);
        if header.requests_per_batch.is_finite() && header.requests_per_batch >= 1.0 {
            *self
                .requests_per_batch
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = header.requests_per_batch;
        }

        // What is followed now: the configured SIMs, then the listed ones.
        let discovered = match (&header.discovery, self.discover) {
            (Some(saved), true) => {
                let mut cache = self.discovered.lock().await;
                restore_discovery(&mut cache, saved, same_layout, &clock, self);
                cache.iccids.clone()
            }
            _ => Arc::default(),
        };
        let mut seen: HashSet<&str> = HashSet::new();
        let followed: Vec<String> = settings
            .configured
            .iter()
            .chain(discovered.iter())
            .filter(|iccid| seen.insert(iccid.as_str()))
            .cloned()
            .collect();
        let followed = Arc::new(followed);
        let wanted: HashSet<&str> = followed.iter().map(String::as_str).collect();

        let sims: Vec<&Sim<'_>> = decoded
            .sims
            .iter()
            .filter(|sim| wanted.contains(sim.iccid))
            .collect();
        let mut schedule = self.schedule.lock().await;
        schedule.restore(
            sims.iter().map(|sim| {
                (
                    sim.iccid.to_string(),
                    Restored {
                        turn: sim.turn,
                        served_since: sim.answer.as_ref().map(|a| a.answered_at),
                    },
                )
            }),
            header.outage_since,
            &clock,
            settings.poll.inactive_interval,
        );
        schedule.follow(followed.clone(), None, clock.instant);
        self.track_followed(&schedule);
        let plan = self.plan(&schedule, &settings).await;
        let stale = schedule.forget_stale(
            clock.instant,
            plan.stale_after,
            settings.poll.inactive_interval,
        );
        let records: Vec<(Record, SystemTime)> = sims
            .iter()
            .filter(|sim| !stale.contains(sim.iccid))
            .filter_map(|sim| {
                let answer = sim.answer.as_ref()?;
                let at = UNIX_EPOCH + Duration::from_nanos(answer.answered_at);
                Some((record_of(sim.iccid, answer), at.min(clock.wall)))
            })
            .collect();
        drop(schedule);
        let served = records.len();
        if served > 0 {
            self.fleet.publish(Snapshot::restored(records));
            self.fleet.mark_ready();
        }
        self.health.things_reported.set(served as i64);
        let oldest = decoded
            .sims
            .iter()
            .filter_map(|s| s.answer.as_ref().map(|a| a.answered_at))
            .min();
        tracing::info!(
            path = %path.display(),
            served,
            stale = stale.len(),
            followed = wanted.len(),
            saved_at = %humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(header.written_at)),
            oldest_answer_age = %humantime::format_duration(Duration::from_secs(oldest.map_or(0, |ns| clock.age(ns).as_secs()))),
            "took back the saved state: its SIMs are served at once and the pass goes on where it stopped"
        );
        served
    }
}

/// Takes a saved listing back into the discovery cache: the complete one
/// (due again when it was due, or at once when the shard layout changed)
/// and one in progress.
fn restore_discovery(
    cache: &mut Discovery,
    saved: &state::Discovery<'_>,
    same_layout: bool,
    clock: &Clock,
    poller: &Poller,
) {
    cache.iccids = Arc::new(
        saved
            .iccids
            .iter()
            .filter(|iccid| poller.shard.owns(iccid))
            .map(|iccid| iccid.to_string())
            .collect(),
    );
    cache.pages = saved.pages as usize;
    cache.at = if same_layout {
        saved.listed_at.map(|ms| clock.instant(ms, Duration::ZERO))
    } else {
        None
    };
    cache.listing = saved.unfinished.as_ref().map(|unfinished| {
        Listing::resumed(
            unfinished
                .found
                .iter()
                .map(|(iccid, inactive)| ListedThing {
                    iccid: iccid.to_string(),
                    inactive: *inactive,
                })
                .collect(),
            usize::try_from(unfinished.offset).unwrap_or(usize::MAX),
            unfinished.pages as usize,
        )
    });
}

fn answer_of(record: &Record, at: SystemTime) -> Answer<'_> {
    Answer {
        answered_at: state::unix_ns(at),
        thing_name: record.thing_name(),
        imsi: record.imsi(),
        msisdn: record.msisdn(),
        provision_status: record.provision_status(),
        connected: record.connected(),
        active_sessions: record.active_sessions(),
        numbers: [
            record.uplink_throughput(),
            record.downlink_throughput(),
            record.last_connection(),
            record.last_disconnection(),
            record.session_start(),
        ],
        unparsed: record.unparsed_bits(),
        push: record.push().map(|p| state::Pushed {
            last_event: p.last_event,
            network: p
                .network
                .as_ref()
                .map(|(mcc, mnc, operator)| (mcc.as_str(), mnc.as_str(), operator.as_str())),
            imei: p.imei.as_deref(),
        }),
    }
}

fn record_of(iccid: &str, answer: &Answer<'_>) -> Record {
    let [
        uplink,
        downlink,
        last_connection,
        last_disconnection,
        session_start,
    ] = answer.numbers;
    // Numbers are written as they were parsed, never NaN (which a record
    // reads as unknown).
    let number = |n: Option<f64>| n.filter(|n| !n.is_nan());
    Record::from(ThingStatus {
        iccid: iccid.to_string(),
        thing_name: answer.thing_name.to_string(),
        imsi: answer.imsi.to_string(),
        msisdn: answer.msisdn.to_string(),
        provision_status: answer.provision_status.to_string(),
        connected: answer.connected,
        active_sessions: answer.active_sessions,
        uplink_throughput: number(uplink),
        downlink_throughput: number(downlink),
        last_connection: number(last_connection),
        last_disconnection: number(last_disconnection),
        session_start: number(session_start),
        unparsed: Unparsed(answer.unparsed),
    })
    .with_push(answer.push.as_ref().map(|p| {
        Arc::new(PushInfo {
            last_event: p.last_event,
            network: p
                .network
                .map(|(mcc, mnc, operator)| (mcc.into(), mnc.into(), operator.into())),
            imei: p.imei.map(str::to_string),
        })
    }))
}
