//! The simulated fleet: what never changes about a Thing (drawn from the seed),
//! its connection timeline, and how its listing entry and status are written
//! in each of the documented shapes.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{Inner, Override};

/// How far back the connection history is searched for the last transitions.
const HISTORY_EPOCHS: i64 = 64;
/// Every block of this many consecutive Things holds each categorical shape (see `slot`).
const SHAPE_BLOCK: u64 = 20;
pub(super) const THING_ID_PREFIX: &str = "ThingId_ICCID_";

// Tags keep the hash streams of different attributes independent.
const TAG_ICCID: u64 = 1;
const TAG_ICCID_F: u64 = 2;
const TAG_KIND: u64 = 3;
const TAG_IMSI: u64 = 4;
const TAG_MSISDN: u64 = 5;
const TAG_STATUS: u64 = 6;
const TAG_PHASE: u64 = 7;
const TAG_OBJECT: u64 = 8;
const TAG_EMPTY: u64 = 9;
const TAG_CONN_FIELD: u64 = 10;
const TAG_TIME_FMT: u64 = 11;
const TAG_OFFSET: u64 = 12;
const TAG_SESSION_MS: u64 = 13;
const TAG_CONNECTED: u64 = 14;
const TAG_SESSIONS: u64 = 15;
const TAG_THROUGHPUT: u64 = 16;
const TAG_SESSION_ID: u64 = 17;
const TAG_FORCED: u64 = 18;
pub(super) const TAG_CUSTOMER: u64 = 19;
pub(super) const TAG_SIGNATURE: u64 = 20;
pub(super) const TAG_REFRESH: u64 = 21;
const TAG_IP: u64 = 22;
const TAG_IMEI: u64 = 23;
const TAG_NETWORK: u64 = 24;
pub(super) const TAG_CDR: u64 = 25;

/// The networks simulated Things attach to, as (MCC, MNC, operator name): real
/// PLMNs so the values look familiar; a three-digit MNC and a non-ASCII name
/// are among them so a receiver's labels are exercised.
const NETWORKS: [(&str, &str, &str); 8] = [
    ("234", "15", "Vodafone UK"),
    ("234", "10", "O2 UK"),
    ("262", "01", "Telekom Deutschland"),
    ("208", "01", "Orange France"),
    ("310", "260", "T-Mobile USA"),
    ("425", "01", "Partner Israel"),
    ("214", "07", "Telefónica España"),
    ("440", "10", "NTT docomo"),
];

/// The canonical state of one Thing, as the HTTP answer means it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThingTruth {
    pub iccid: String,
    pub thing_name: String,
    pub imsi: String,
    /// Empty when the API says null.
    pub msisdn: String,
    pub provision_status: String,
    pub connected: bool,
    pub active_sessions: usize,
    /// Sum over active sessions.
    pub uplink_throughput: f64,
    /// Sum over active sessions.
    pub downlink_throughput: f64,
    /// Epoch seconds (whole); None = null in JSON.
    pub last_connection: Option<f64>,
    /// Epoch seconds (whole); None = null in JSON.
    pub last_disconnection: Option<f64>,
    /// Earliest LastConnectedTime over active sessions, epoch seconds (whole).
    pub session_start: Option<f64>,
}

/// The device and network a Thing's Data CDRs name; fixed per Thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThingDevice {
    /// 15 digits, the last a Luhn check digit.
    pub imei: String,
    pub mcc: String,
    pub mnc: String,
    /// MCC and MNC together (the PLMN), our reading of the documented
    /// "Mobile network operator identification number".
    pub mno: String,
    pub mno_name: String,
}

/// What never changes about a Thing.
pub(super) struct ThingStatic {
    index: u64,
    pub(super) iccid: String,
    pub(super) name: String,
    pub(super) imsi: String,
    pub(super) msisdn: Option<String>,
    pub(super) status: &'static str,
    connectable: bool,
    description: String,
    phase: i64,
    pub(super) shape: Shape,
    /// Index into [`NETWORKS`].
    network: u8,
}

/// How a Thing's status is encoded; fixed per Thing.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// Exactly one session is sent as an object rather than an array.
    single_as_object: bool,
    empty: EmptySessions,
    connection_status: bool,
    pub(super) time: TimeFormat,
    session_ms: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum EmptySessions {
    Array,
    Null,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum TimeFormat {
    EpochMs,
    EpochSecs,
    MsString,
    SqlUtc,
    Rfc3339Utc,
    /// Offset in minutes east of UTC, never zero.
    Rfc3339Offset(i32),
}

pub(super) struct Session {
    pub(super) start: i64,
    pub(super) uplink: u64,
    pub(super) downlink: u64,
}

/// The time-dependent state of a Thing at one instant.
pub(super) struct Dynamic {
    pub(super) sessions: Vec<Session>,
    pub(super) last_connection: Option<i64>,
    pub(super) last_disconnection: Option<i64>,
}

impl Inner {
    /// A Thing by its ICCID, whatever the case of its trailing `F`.
    pub(super) fn index_of(&self, iccid: &str) -> Option<usize> {
        match self.by_iccid.get(iccid) {
            Some(&idx) => Some(idx),
            None => self.by_iccid.get(&iccid.to_ascii_uppercase()).copied(),
        }
    }

    /// The ICCID as this API writes it in answers.
    pub(super) fn answered_iccid(&self, t: &ThingStatic) -> String {
        if self.lowercase_iccids {
            t.iccid.to_ascii_lowercase()
        } else {
            t.iccid.clone()
        }
    }

    pub(super) fn epoch_of(&self, t: &ThingStatic, now: i64) -> i64 {
        now.saturating_sub(t.phase).div_euclid(self.flap_secs)
    }

    pub(super) fn epoch_start(&self, t: &ThingStatic, epoch: i64) -> i64 {
        epoch.saturating_mul(self.flap_secs).saturating_add(t.phase)
    }

    fn connected_in(&self, t: &ThingStatic, epoch: i64) -> bool {
        t.connectable && hash(&[self.seed, TAG_CONNECTED, t.index, epoch as u64]) % 100 < 80
    }

    fn throughput(&self, parts: &[u64]) -> (u64, u64) {
        let h = hash(parts);
        (h % 500_001, (h >> 32) % 500_001)
    }

    /// Whether the Thing's own timeline has it connected at `now`: the cheap
    /// part of [`timeline`](Self::timeline), for a pass over the whole fleet.
    pub(super) fn connected_at(&self, t: &ThingStatic, now: i64) -> bool {
        self.connected_in(t, self.epoch_of(t, now))
    }

    /// The `ActiveSessionId` of a Thing's `n`th session opened at `start`.
    pub(super) fn session_id(&self, t: &ThingStatic, start: i64, n: u64) -> u64 {
        hash(&[self.seed, TAG_SESSION_ID, t.index, start as u64, n])
    }

    pub(super) fn device(&self, t: &ThingStatic) -> ThingDevice {
        let (mcc, mnc, name) = NETWORKS[usize::from(t.network) % NETWORKS.len()];
        ThingDevice {
            imei: imei(hash(&[self.seed, TAG_IMEI, t.index])),
            mcc: mcc.to_owned(),
            mnc: mnc.to_owned(),
            mno: format!("{mcc}{mnc}"),
            mno_name: name.to_owned(),
        }
    }

    /// The Thing's state at `now` following its own timeline.
    pub(super) fn timeline(&self, t: &ThingStatic, now: i64) -> Dynamic {
        let epoch = self.epoch_of(t, now);
        let mut sessions = Vec::new();
        if self.connected_in(t, epoch) {
            let start = self.epoch_start(t, epoch);
            let h = hash(&[self.seed, TAG_SESSIONS, t.index, epoch as u64]);
            for n in 0..2u64 {
                let session_start = if n == 0 {
                    start
                } else {
                    // The second session opens a few seconds into the epoch, and
                    // only counts once it has opened so nothing lies in the future.
                    let spread = (self.flap_secs - 1).clamp(1, 60) as u64;
                    start.saturating_add(1 + ((h >> 8) % spread) as i64)
                };
                if n == 1 && (h % 10 >= 4 || session_start > now) {
                    break;
                }
                let (uplink, downlink) =
                    self.throughput(&[self.seed, TAG_THROUGHPUT, t.index, epoch as u64, n]);
                sessions.push(Session {
                    start: session_start,
                    uplink,
                    downlink,
                });
            }
        }
        let mut last_connection = None;
        let mut last_disconnection = None;
        let mut current = self.connected_in(t, epoch);
        for k in 0..HISTORY_EPOCHS {
            let e = epoch.saturating_sub(k);
            let previous = self.connected_in(t, e.saturating_sub(1));
            if current && !previous && last_connection.is_none() {
                last_connection = Some(self.epoch_start(t, e));
            }
            if !current && previous && last_disconnection.is_none() {
                last_disconnection = Some(self.epoch_start(t, e));
            }
            if last_connection.is_some() && last_disconnection.is_some() {
                break;
            }
            current = previous;
        }
        Dynamic {
            sessions,
            last_connection,
            last_disconnection,
        }
    }

    /// The Thing's state at `now`, honouring a set_connected override.
    pub(super) fn dynamic(&self, t: &ThingStatic, now: i64, ov: Option<Override>) -> Dynamic {
        let Some(ov) = ov else {
            return self.timeline(t, now);
        };
        // The history before the override is the timeline's as of that moment.
        let before = self.timeline(t, ov.at);
        if ov.connected {
            let (uplink, downlink) =
                self.throughput(&[self.seed, TAG_FORCED, t.index, ov.at as u64]);
            Dynamic {
                sessions: vec![Session {
                    start: ov.at,
                    uplink,
                    downlink,
                }],
                last_connection: Some(ov.at),
                last_disconnection: before.last_disconnection,
            }
        } else {
            Dynamic {
                sessions: Vec::new(),
                last_connection: before.last_connection,
                last_disconnection: Some(ov.at),
            }
        }
    }

    pub(super) fn render_thing(&self, t: &ThingStatic) -> Value {
        let iccid = self.answered_iccid(t);
        json!({
            "ThingId": format!("{THING_ID_PREFIX}{iccid}"),
            "ThingName": t.name,
            "ExternalUniqueId": iccid,
            "State": t.status,
            "CustomerId": self.customer_id,
            "ThingDescription": t.description,
        })
    }

    pub(super) fn render_status(&self, t: &ThingStatic, d: &Dynamic) -> Value {
        let mut m = Map::new();
        m.insert(
            "ThingId".into(),
            json!(format!("{THING_ID_PREFIX}{}", self.answered_iccid(t))),
        );
        m.insert("CustomerId".into(), json!(self.customer_id));
        m.insert("ThingName".into(), json!(t.name));
        m.insert("ThingDescription".into(), json!(t.description));
        m.insert("ProvisionStatus".into(), json!(t.status));
        if t.shape.connection_status {
            let s = if d.sessions.is_empty() {
                "DISCONNECTED"
            } else {
                "CONNECTED"
            };
            m.insert("ConnectionStatus".into(), json!(s));
        }
        let sessions: Vec<Value> = d
            .sessions
            .iter()
            .enumerate()
            .map(|(n, s)| self.render_session(t, s, n as u64))
            .collect();
        match (sessions.len(), t.shape.empty) {
            (0, EmptySessions::Missing) => {}
            (0, EmptySessions::Null) => {
                m.insert("ActiveSessions".into(), Value::Null);
            }
            (1, _) if t.shape.single_as_object => {
                let only = sessions.into_iter().next().unwrap_or(Value::Null);
                m.insert("ActiveSessions".into(), only);
            }
            _ => {
                m.insert("ActiveSessions".into(), Value::Array(sessions));
            }
        }
        m.insert("ActiveIMSI".into(), json!(t.imsi));
        m.insert(
            "LastConnectionTime".into(),
            encode_time(d.last_connection, t.shape.time),
        );
        m.insert(
            "LastDisconnectionTime".into(),
            encode_time(d.last_disconnection, t.shape.time),
        );
        m.insert("MSISDN".into(), json!(t.msisdn));
        Value::Object(m)
    }

    fn render_session(&self, t: &ThingStatic, s: &Session, n: u64) -> Value {
        let id = self.session_id(t, s.start, n);
        let ip = hash(&[self.seed, TAG_IP, t.index, s.start as u64, n]);
        let connected_time = if t.shape.session_ms {
            json!(s.start.saturating_mul(1000))
        } else {
            json!(s.start)
        };
        json!({
            "ActiveSessionId": format!("{id:016x}"),
            "ApnName": "data.mono",
            "IPAddress": format!("10.{}.{}.{}", (ip >> 16) & 0xff, (ip >> 8) & 0xff, (ip & 0xfe) + 1),
            "LastConnectedTime": connected_time,
            "UplinkThroughput": s.uplink,
            "DownlinkThroughput": s.downlink,
        })
    }
}

pub(super) fn truth_of(t: &ThingStatic, d: &Dynamic) -> ThingTruth {
    ThingTruth {
        iccid: t.iccid.clone(),
        thing_name: t.name.clone(),
        imsi: t.imsi.clone(),
        msisdn: t.msisdn.clone().unwrap_or_default(),
        provision_status: t.status.to_owned(),
        connected: !d.sessions.is_empty(),
        active_sessions: d.sessions.len(),
        uplink_throughput: d.sessions.iter().map(|s| s.uplink as f64).sum(),
        downlink_throughput: d.sessions.iter().map(|s| s.downlink as f64).sum(),
        last_connection: d.last_connection.map(|s| s as f64),
        last_disconnection: d.last_disconnection.map(|s| s as f64),
        session_start: d.sessions.iter().map(|s| s.start).min().map(|s| s as f64),
    }
}

pub(super) fn encode_time(secs: Option<i64>, format: TimeFormat) -> Value {
    let Some(secs) = secs else {
        return Value::Null;
    };
    let ms = secs.saturating_mul(1000);
    let utc = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0);
    match (format, utc) {
        (TimeFormat::EpochSecs, _) => json!(secs),
        (TimeFormat::MsString, _) => json!(ms.to_string()),
        (TimeFormat::SqlUtc, Some(dt)) => json!(dt.format("%Y-%m-%d %H:%M:%S").to_string()),
        (TimeFormat::Rfc3339Utc, Some(dt)) => {
            json!(dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        (TimeFormat::Rfc3339Offset(minutes), Some(dt)) => {
            match chrono::FixedOffset::east_opt(minutes * 60) {
                Some(offset) => json!(
                    dt.with_timezone(&offset)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
                ),
                None => json!(ms),
            }
        }
        // Epoch ms, and the fallback for instants chrono cannot represent.
        _ => json!(ms),
    }
}

pub(super) fn build_fleet(seed: u64, count: usize, flap_secs: i64) -> Vec<ThingStatic> {
    let mut seen = HashSet::with_capacity(count);
    (0..count as u64)
        .map(|index| {
            // Re-hash on the (rare) collision so every ICCID is distinct.
            let mut attempt = 0u64;
            let digits = loop {
                let d = hash(&[seed, TAG_ICCID, index, attempt]) % 1_000_000_000_000_000;
                if seen.insert(d) {
                    break d;
                }
                attempt += 1;
            };
            let f = if slot(seed, TAG_ICCID_F, index).is_multiple_of(10) {
                "F"
            } else {
                ""
            };
            let iccid = format!("8988{digits:015}{f}");

            let name = match index {
                // Nasty names at fixed indices so any fleet of >= 10 exercises label escaping.
                3 => r#"meter "north" \ 7"#.to_owned(),
                5 => "tracker-00005\nspare".to_owned(),
                7 => "Zähler-東京-🚚".to_owned(),
                _ => {
                    let kind = ["tracker", "meter", "gateway"]
                        [(hash(&[seed, TAG_KIND, index]) % 3) as usize];
                    format!("{kind}-{index:05}")
                }
            };
            let imsi = format!(
                "90140{:010}",
                hash(&[seed, TAG_IMSI, index]) % 10_000_000_000
            );
            let h = hash(&[seed, TAG_MSISDN, index]);
            let msisdn =
                (!h.is_multiple_of(8)).then(|| format!("+44{:010}", (h >> 8) % 10_000_000_000));

            // Slots rather than plain hashes so every block of 20 consecutive
            // Things holds each value; 16 of 20 ACTIVE is the ~80% wanted.
            let status_slot = slot(seed, TAG_STATUS, index);
            let status = match status_slot {
                0..=15 => "ACTIVE",
                16 => "PROVISIONED",
                17 => "TEST_ACTIVE",
                18 => "SUSPENDED",
                _ => "RETIRED",
            };
            let connectable = matches!(status, "ACTIVE" | "TEST_ACTIVE");
            // Never-connecting Things are always empty, so tying two of them to
            // null and missing guarantees both shapes in every block.
            let empty = match status_slot {
                16 => EmptySessions::Null,
                18 => EmptySessions::Missing,
                _ => match hash(&[seed, TAG_EMPTY, index]) % 3 {
                    0 => EmptySessions::Array,
                    1 => EmptySessions::Null,
                    _ => EmptySessions::Missing,
                },
            };
            // Each format has >= 3 Things per block and only 3 Things per block
            // never connect, so every format shows up with a non-null time.
            let time = match slot(seed, TAG_TIME_FMT, index) % 6 {
                0 => TimeFormat::EpochMs,
                1 => TimeFormat::EpochSecs,
                2 => TimeFormat::MsString,
                3 => TimeFormat::SqlUtc,
                4 => TimeFormat::Rfc3339Utc,
                _ => {
                    let offsets = [120, -300, 330, 60];
                    TimeFormat::Rfc3339Offset(
                        offsets[(hash(&[seed, TAG_OFFSET, index]) % 4) as usize],
                    )
                }
            };
            let shape = Shape {
                single_as_object: hash(&[seed, TAG_OBJECT, index]).is_multiple_of(2),
                empty,
                connection_status: !slot(seed, TAG_CONN_FIELD, index).is_multiple_of(4),
                time,
                session_ms: slot(seed, TAG_SESSION_MS, index).is_multiple_of(2),
            };
            ThingStatic {
                index,
                iccid,
                name,
                imsi,
                msisdn,
                status,
                connectable,
                description: format!("Simulated SIM #{index}"),
                phase: (hash(&[seed, TAG_PHASE, index]) % flap_secs as u64) as i64,
                shape,
                network: (hash(&[seed, TAG_NETWORK, index]) % NETWORKS.len() as u64) as u8,
            }
        })
        .collect()
}

/// An IMEI drawn from `h`: an 8-digit type allocation code in the range
/// GSMA hands out today (35...), a 6-digit serial and the Luhn check digit.
fn imei(h: u64) -> String {
    let body = format!("35{:06}{:06}", h % 1_000_000, (h >> 20) % 1_000_000);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // From the right, every other digit (starting with the last) is doubled.
            if i % 2 == 0 {
                let dd = d * 2;
                dd / 10 + dd % 10
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Position of a Thing in its block of 20 for one attribute: a seed-dependent
/// rotation of the index, so each block holds every slot exactly once.
fn slot(seed: u64, tag: u64, index: u64) -> u64 {
    (index + hash(&[seed, tag]) % SHAPE_BLOCK) % SHAPE_BLOCK
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Order-sensitive hash of a few words; the source of all pseudo-randomness.
pub(super) fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6A09_E667_F3BC_C908, |acc, &p| {
        splitmix64(acc ^ splitmix64(p))
    })
}

pub(super) fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Whole epoch seconds, floored (also before 1970).
pub(super) fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => secs_i64(d),
        Err(e) => {
            let d = e.duration();
            let whole = secs_i64(d);
            let ceil = if d.subsec_nanos() > 0 {
                whole.saturating_add(1)
            } else {
                whole
            };
            ceil.saturating_neg()
        }
    }
}
