//! What the state file holds, and its encoding (postcard: compact, and read
//! without copying its text). Times are wall-clock nanoseconds since the
//! Unix epoch: a monotonic clock means nothing to the next process, and a
//! time taken back in the same process is the same to the nanosecond.
//!
//! The payload is the [`Header`] followed by the SIMs, so that a write can
//! stream the SIMs from the live structures instead of copying them first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, Serializer};
use serde::{Deserialize, Serialize as DeriveSerialize};
use tokio::time::Instant;

use super::file::Kind;

pub(crate) const KIND: Kind = *b"MGXSTATE";
/// Bumped when the encoding changes; a reader keeps the decoders of the
/// versions it can still read (1: before webhook events).
pub(crate) const VERSION: u32 = 2;

/// Which API and account the state belongs to: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, DeriveSerialize, Deserialize)]
pub(crate) struct Identity<'a> {
    pub url: &'a str,
    #[serde(borrow)]
    pub account: Account<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, DeriveSerialize, Deserialize)]
pub(crate) enum Account<'a> {
    /// Logged in as this user.
    User(&'a str),
    /// A static token, as HMAC-SHA256 under a random key kept beside it: the
    /// same token gives the same result, and the result gives no token back.
    Token { key: [u8; 16], mac: [u8; 32] },
}

/// Everything but the SIMs.
#[derive(Debug, Clone, DeriveSerialize, Deserialize)]
pub(crate) struct Header<'a> {
    pub written_at: u64,
    #[serde(borrow)]
    pub identity: Identity<'a>,
    /// The shard layout the SIMs were followed under: (index, count).
    pub shard: (u32, u32),
    /// The `ThingIds` form the API was found to take: comma (false) or repeated (true).
    pub thing_ids_repeat: Option<bool>,
    /// The longest page the API answered a status request with.
    pub page_cap: u32,
    /// Status requests a batch cost on the last pass.
    pub requests_per_batch: f64,
    /// Since when every request failed, if they do.
    pub outage_since: Option<u64>,
    #[serde(borrow)]
    pub discovery: Option<Discovery<'a>>,
}

/// The discovery listing: the last complete one (this shard's SIMs) and one
/// in progress.
#[derive(Debug, Clone, Default, DeriveSerialize, Deserialize)]
pub(crate) struct Discovery<'a> {
    #[serde(borrow)]
    pub iccids: Vec<&'a str>,
    pub listed_at: Option<u64>,
    pub pages: u32,
    #[serde(borrow)]
    pub unfinished: Option<Unfinished<'a>>,
}

/// A listing cut short: the SIMs it found (every shard's) with what it said
/// of their state, and where it goes on.
#[derive(Debug, Clone, Default, DeriveSerialize, Deserialize)]
pub(crate) struct Unfinished<'a> {
    #[serde(borrow)]
    pub found: Vec<(&'a str, Option<bool>)>,
    pub offset: u64,
    pub pages: u32,
}

/// A SIM's place in the schedule (see `poller::schedule`).
#[derive(Debug, Clone, Copy, Default, PartialEq, DeriveSerialize, Deserialize)]
pub(crate) struct Turn {
    pub lifecycle: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    pub answered_at: Option<u64>,
    pub due_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub failures: u32,
    pub failures_alone: u32,
}

pub(crate) const FLAG_INACTIVE_STATUS: u8 = 1;
pub(crate) const FLAG_UNANSWERED: u8 = 2;
pub(crate) const FLAG_MISSING: u8 = 4;

/// A SIM's last answer as served, and when it arrived.
#[derive(Debug, Clone, PartialEq, DeriveSerialize, Deserialize)]
pub(crate) struct Answer<'a> {
    pub answered_at: u64,
    pub thing_name: &'a str,
    pub imsi: &'a str,
    pub msisdn: &'a str,
    pub provision_status: &'a str,
    pub connected: Option<bool>,
    pub active_sessions: Option<u32>,
    /// Uplink, downlink, last connection, last disconnection, session start.
    pub numbers: [Option<f64>; 5],
    pub unparsed: u16,
    /// What webhook events said of it.
    #[serde(borrow)]
    pub push: Option<Pushed<'a>>,
}

/// What webhook events said of a SIM.
#[derive(Debug, Clone, PartialEq, DeriveSerialize, Deserialize)]
pub(crate) struct Pushed<'a> {
    pub last_event: f64,
    /// MCC, MNC, operator.
    #[serde(borrow)]
    pub network: Option<(&'a str, &'a str, &'a str)>,
    pub imei: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, DeriveSerialize, Deserialize)]
pub(crate) struct Sim<'a> {
    pub iccid: &'a str,
    pub turn: Turn,
    #[serde(borrow)]
    pub answer: Option<Answer<'a>>,
}

/// The SIMs of a write, streamed from an iterator of known length.
pub(crate) struct Sims<I>(pub std::cell::Cell<Option<I>>);

impl<'a, I: ExactSizeIterator<Item = Sim<'a>>> Serialize for Sims<I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.take() {
            Some(sims) => serializer.collect_seq(sims),
            None => serializer.collect_seq(std::iter::empty::<Sim<'a>>()),
        }
    }
}

/// Encodes a state: the header, then the SIMs.
/// Encodes a state: the header, then the SIMs, into a buffer of `capacity`
/// bytes to start with (the last state's size: growing a large buffer by
/// doubling would hold two copies at once).
pub(crate) fn encode<'a>(
    header: &Header<'_>,
    sims: impl ExactSizeIterator<Item = Sim<'a>>,
    capacity: usize,
) -> Result<Vec<u8>, postcard::Error> {
    let out = postcard::to_extend(header, Vec::with_capacity(capacity))?;
    postcard::to_extend(&Sims(std::cell::Cell::new(Some(sims))), out)
}

/// A decoded state, borrowing its text from the payload.
pub(crate) struct Decoded<'a> {
    pub header: Header<'a>,
    pub sims: Vec<Sim<'a>>,
}

/// Decodes a payload of format `version`.
pub(crate) fn decode(version: u32, payload: &[u8]) -> Result<Decoded<'_>, String> {
    if !(1..=VERSION).contains(&version) {
        return Err(format!(
            "format version {version}, which this version of the exporter cannot read (it reads 1 to {VERSION})"
        ));
    }
    let (header, rest) =
        postcard::take_from_bytes::<Header<'_>>(payload).map_err(|e| e.to_string())?;
    let (sims, rest) = if version == 1 {
        let (sims, rest) =
            postcard::take_from_bytes::<Vec<v1::Sim<'_>>>(rest).map_err(|e| e.to_string())?;
        (sims.into_iter().map(Sim::from).collect(), rest)
    } else {
        postcard::take_from_bytes::<Vec<Sim<'_>>>(rest).map_err(|e| e.to_string())?
    };
    if !rest.is_empty() {
        return Err(format!("{} bytes after the SIMs", rest.len()));
    }
    Ok(Decoded { header, sims })
}

/// Format 1: the same, without what webhook events said.
mod v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Answer<'a> {
        pub answered_at: u64,
        pub thing_name: &'a str,
        pub imsi: &'a str,
        pub msisdn: &'a str,
        pub provision_status: &'a str,
        pub connected: Option<bool>,
        pub active_sessions: Option<u32>,
        pub numbers: [Option<f64>; 5],
        pub unparsed: u16,
    }

    #[derive(Deserialize)]
    pub(super) struct Sim<'a> {
        pub iccid: &'a str,
        pub turn: super::Turn,
        #[serde(borrow)]
        pub answer: Option<Answer<'a>>,
    }
}

impl<'a> From<v1::Sim<'a>> for Sim<'a> {
    fn from(sim: v1::Sim<'a>) -> Sim<'a> {
        Sim {
            iccid: sim.iccid,
            turn: sim.turn,
            answer: sim.answer.map(|a| Answer {
                answered_at: a.answered_at,
                thing_name: a.thing_name,
                imsi: a.imsi,
                msisdn: a.msisdn,
                provision_status: a.provision_status,
                connected: a.connected,
                active_sessions: a.active_sessions,
                numbers: a.numbers,
                unparsed: a.unparsed,
                push: None,
            }),
        }
    }
}

/// One moment on both clocks, to move times between the process's monotonic
/// clock and the wall clock the file keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `at` as wall-clock nanoseconds since the epoch.
    pub(crate) fn wall_ns(&self, at: Instant) -> u64 {
        let wall = if at <= self.instant {
            self.wall.checked_sub(self.instant - at)
        } else {
            self.wall.checked_add(at - self.instant)
        };
        unix_ns(wall.unwrap_or(UNIX_EPOCH))
    }

    /// Wall-clock nanoseconds as an instant of this process. A time in the
    /// future (a clock set back since) is cut to at most `future` ahead.
    pub(crate) fn instant(&self, ns: u64, future: Duration) -> Instant {
        let wall = UNIX_EPOCH + Duration::from_nanos(ns);
        match wall.duration_since(self.wall) {
            Ok(ahead) => self
                .instant
                .checked_add(ahead.min(future))
                .unwrap_or(self.instant),
            Err(behind) => {
                let behind = behind.duration();
                self.instant.checked_sub(behind).unwrap_or(self.instant)
            }
        }
    }

    /// How long before now `ns` was (zero when it is not past).
    pub(crate) fn age(&self, ns: u64) -> Duration {
        self.wall
            .duration_since(UNIX_EPOCH + Duration::from_nanos(ns))
            .unwrap_or_default()
    }
}

/// Nanoseconds since the epoch (a u64 holds them until 2554).
pub(crate) fn unix_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(iccid: &str) -> Sim<'_> {
        Sim {
            iccid,
            turn: Turn {
                lifecycle: 2,
                flags: FLAG_INACTIVE_STATUS | FLAG_UNANSWERED,
                answered_at: Some(1_764_970_000_123_000_000),
                due_at: Some(1_764_973_600_000_000_000),
                failed_at: None,
                failures: 1,
                failures_alone: 0,
            },
            answer: Some(Answer {
                answered_at: 1_764_970_000_123_000_000,
                thing_name: "Zähler \"north\"",
                imsi: "901405100000001",
                msisdn: "",
                provision_status: "SUSPENDED",
                connected: Some(false),
                active_sessions: None,
                numbers: [Some(1.5), None, Some(1_739_955_863.0), None, Some(-0.25)],
                unparsed: 3,
                push: Some(Pushed {
                    last_event: 1_764_970_000.25,
                    network: Some(("425", "01", "Partner")),
                    imei: Some("356938035643809"),
                }),
            }),
        }
    }

    fn header() -> Header<'static> {
        Header {
            written_at: 1_764_970_001_000_000_000,
            identity: Identity {
                url: "https://console.monogoto.io",
                account: Account::User("ops@example.com"),
            },
            shard: (1, 3),
            thing_ids_repeat: Some(true),
            page_cap: 50,
            requests_per_batch: 1.25,
            outage_since: None,
            discovery: Some(Discovery {
                iccids: vec!["8988000000000000001"],
                listed_at: Some(1_764_969_000_000_000_000),
                pages: 3,
                unfinished: Some(Unfinished {
                    found: vec![("8988000000000000002", Some(true))],
                    offset: 50,
                    pages: 1,
                }),
            }),
        }
    }

    #[test]
    fn a_state_decodes_to_what_was_encoded() {
        let iccids: Vec<String> = (0..3).map(|i| format!("898800000000000000{i}")).collect();
        let sims: Vec<Sim<'_>> = iccids.iter().map(|i| sim(i)).collect();
        let bytes = encode(&header(), sims.clone().into_iter(), 0).expect("encodes");
        let decoded = decode(VERSION, &bytes).expect("decodes");
        assert_eq!(decoded.sims, sims);
        assert_eq!(decoded.header.identity, header().identity);
        assert_eq!(
            decoded
                .header
                .discovery
                .and_then(|d| d.unfinished)
                .map(|u| u.offset),
            Some(50)
        );
        assert!(decode(VERSION + 1, &bytes).is_err(), "a newer version");
        assert!(decode(VERSION, &bytes[..bytes.len() - 1]).is_err(), "cut");
    }

    #[test]
    fn a_state_of_format_1_is_still_read() {
        #[derive(serde::Serialize)]
        struct AnswerV1<'a> {
            answered_at: u64,
            thing_name: &'a str,
            imsi: &'a str,
            msisdn: &'a str,
            provision_status: &'a str,
            connected: Option<bool>,
            active_sessions: Option<u32>,
            numbers: [Option<f64>; 5],
            unparsed: u16,
        }
        #[derive(serde::Serialize)]
        struct SimV1<'a> {
            iccid: &'a str,
            turn: Turn,
            answer: Option<AnswerV1<'a>>,
        }
        let current = sim("8988000000000000001");
        let answer = current.answer.clone().expect("answered");
        let old = vec![SimV1 {
            iccid: current.iccid,
            turn: current.turn,
            answer: Some(AnswerV1 {
                answered_at: answer.answered_at,
                thing_name: answer.thing_name,
                imsi: answer.imsi,
                msisdn: answer.msisdn,
                provision_status: answer.provision_status,
                connected: answer.connected,
                active_sessions: answer.active_sessions,
                numbers: answer.numbers,
                unparsed: answer.unparsed,
            }),
        }];
        let mut bytes = postcard::to_stdvec(&header()).expect("encodes");
        bytes = postcard::to_extend(&old, bytes).expect("encodes");
        let decoded = decode(1, &bytes).expect("format 1 is read");
        let expected = Sim {
            answer: Some(Answer {
                push: None,
                ..answer
            }),
            ..current
        };
        assert_eq!(decoded.sims, vec![expected]);
    }

    #[test]
    fn times_move_between_the_clocks() {
        let clock = Clock::now();
        let earlier = clock
            .instant
            .checked_sub(Duration::from_secs(90))
            .expect("fits");
        let ns = clock.wall_ns(earlier);
        assert_eq!(clock.age(ns).as_secs(), 90);
        assert_eq!(
            clock.instant(ns, Duration::ZERO),
            earlier,
            "to the nanosecond"
        );
        let later = clock.wall_ns(clock.instant + Duration::from_secs(30));
        assert_eq!(
            clock.instant(later, Duration::from_secs(10)),
            clock.instant + Duration::from_secs(10),
            "the future is cut"
        );
    }
}
