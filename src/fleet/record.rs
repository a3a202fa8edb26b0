//! A Thing's status as the snapshot keeps it: all of its text in one shared
//! allocation instead of five `String`s and its numbers without `Option`'s
//! padding, so that a record takes half the memory of a [`ThingStatus`] and
//! copying one costs a reference count.

use std::sync::Arc;

use crate::monogoto::ThingStatus;
use crate::monogoto::model::Unparsed;

/// What Monogoto's webhook events said of a SIM (see `push`): kept with
/// its record, and carried over to the next answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PushInfo {
    /// Unix time at which the last event naming it was received.
    pub last_event: f64,
    /// The network of the last CDR that named one: MCC, MNC, operator.
    pub network: Option<(String, String, String)>,
    /// The IMEI of the last CDR that carried one.
    pub imei: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Record {
    /// ICCID, name, IMSI, MSISDN and provisioning status, back to back.
    text: Arc<str>,
    /// Where each of the first four ends in `text`; the last runs to its end.
    ends: [u32; 4],
    /// Uplink, downlink, last connection, last disconnection, session start;
    /// NaN where unknown (the parser never yields a NaN).
    numbers: [f64; 5],
    connected: Option<bool>,
    active_sessions: Option<u32>,
    /// What the answer that produced this record did not understand.
    unparsed: Unparsed,
    /// What webhook events said of it, if any did.
    push: Option<Arc<PushInfo>>,
}

const UPLINK: usize = 0;
const DOWNLINK: usize = 1;
const LAST_CONNECTION: usize = 2;
const LAST_DISCONNECTION: usize = 3;
const SESSION_START: usize = 4;

/// Equal when every value is: unknowns (NaN) equal each other, and numbers
/// compare as the bits they render from.
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.text == other.text
            && self.ends == other.ends
            && self.numbers.map(f64::to_bits) == other.numbers.map(f64::to_bits)
            && self.connected == other.connected
            && self.active_sessions == other.active_sessions
            && self.unparsed == other.unparsed
            && self.push == other.push
    }
}

fn known(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

impl From<ThingStatus> for Record {
    fn from(status: ThingStatus) -> Record {
        let parts = [
            &status.iccid,
            &status.thing_name,
            &status.imsi,
            &status.msisdn,
            &status.provision_status,
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 4];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                // Bodies are capped far below 4 GiB, so an offset always fits.
                *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
        }
        Record {
            text: Arc::from(text),
            ends,
            numbers: [
                status.uplink_throughput,
                status.downlink_throughput,
                status.last_connection,
                status.last_disconnection,
                status.session_start,
            ]
            // `+ 0.0` makes -0 (what an empty sum gives) the 0 it renders as.
            .map(|n| n.map_or(f64::NAN, |n| n + 0.0)),
            connected: status.connected,
            active_sessions: status.active_sessions,
            unparsed: status.unparsed,
            push: None,
        }
    }
}

impl Record {
    fn part(&self, index: usize) -> &str {
        let start = match index {
            0 => 0,
            i => self.ends[i - 1] as usize,
        };
        let end = self
            .ends
            .get(index)
            .map_or(self.text.len(), |e| *e as usize);
        self.text.get(start..end).unwrap_or_default()
    }

    pub fn iccid(&self) -> &str {
        self.part(0)
    }

    pub fn thing_name(&self) -> &str {
        self.part(1)
    }

    pub fn imsi(&self) -> &str {
        self.part(2)
    }

    pub fn msisdn(&self) -> &str {
        self.part(3)
    }

    pub fn provision_status(&self) -> &str {
        self.part(4)
    }

    pub fn connected(&self) -> Option<bool> {
        self.connected
    }

    pub fn active_sessions(&self) -> Option<u32> {
        self.active_sessions
    }

    pub fn uplink_throughput(&self) -> Option<f64> {
        known(self.numbers[UPLINK])
    }

    pub fn downlink_throughput(&self) -> Option<f64> {
        known(self.numbers[DOWNLINK])
    }

    pub fn last_connection(&self) -> Option<f64> {
        known(self.numbers[LAST_CONNECTION])
    }

    pub fn last_disconnection(&self) -> Option<f64> {
        known(self.numbers[LAST_DISCONNECTION])
    }

    pub fn session_start(&self) -> Option<f64> {
        known(self.numbers[SESSION_START])
    }

    /// What webhook events said of it.
    pub fn push(&self) -> Option<&PushInfo> {
        self.push.as_deref()
    }

    /// The record with what webhook events said of it.
    pub(crate) fn with_push(mut self, push: Option<Arc<PushInfo>>) -> Record {
        self.push = push;
        self
    }

    /// The values its answer did not understand, as [`Unparsed`] bits.
    pub(crate) fn unparsed_bits(&self) -> u16 {
        self.unparsed.0
    }

    /// The record as the parser's type, for comparisons and the rare merge.
    pub(crate) fn to_status(&self) -> ThingStatus {
        ThingStatus {
            iccid: self.iccid().to_string(),
            thing_name: self.thing_name().to_string(),
            imsi: self.imsi().to_string(),
            msisdn: self.msisdn().to_string(),
            provision_status: self.provision_status().to_string(),
            connected: self.connected,
            active_sessions: self.active_sessions,
            uplink_throughput: self.uplink_throughput(),
            downlink_throughput: self.downlink_throughput(),
            last_connection: self.last_connection(),
            last_disconnection: self.last_disconnection(),
            session_start: self.session_start(),
            unparsed: self.unparsed,
        }
    }

    /// Fills the values this record's answer did not understand from `previous`.
    pub(crate) fn keep_last_good(&mut self, previous: &Record) {
        // Events are not in the answer: what they said stays until a newer
        // one, and a newer one without a network or IMEI keeps the last.
        self.push = match (self.push.take(), &previous.push) {
            (None, before) => before.clone(),
            (Some(news), Some(before)) if news.network.is_none() || news.imei.is_none() => {
                Some(Arc::new(PushInfo {
                    last_event: news.last_event,
                    network: news.network.clone().or_else(|| before.network.clone()),
                    imei: news.imei.clone().or_else(|| before.imei.clone()),
                }))
            }
            (news, _) => news,
        };
        if self.unparsed.is_empty() {
            return;
        }
        let mut status = self.to_status();
        status.keep_last_good(&previous.to_status());
        let push = self.push.take();
        *self = Record::from(status).with_push(push);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ThingStatus {
        ThingStatus {
            iccid: "89882806660000000001".into(),
            thing_name: "Zähler \"north\"\n🚚".into(),
            imsi: "901405100000001".into(),
            msisdn: String::new(),
            provision_status: "ACTIVE".into(),
            connected: Some(true),
            active_sessions: Some(2),
            uplink_throughput: Some(1.5),
            downlink_throughput: None,
            last_connection: Some(1_739_955_863.0),
            last_disconnection: None,
            session_start: Some(1_739_955_000.5),
            unparsed: Unparsed(Unparsed::DOWNLINK),
        }
    }

    #[test]
    fn a_record_is_smaller_than_a_status() {
        // 96 against 216 bytes, and one allocation against five.
        assert!(size_of::<Record>() * 2 <= size_of::<ThingStatus>());
    }

    #[test]
    fn keeps_every_value() {
        let record = Record::from(status());
        assert_eq!(record.iccid(), "89882806660000000001");
        assert_eq!(record.thing_name(), "Zähler \"north\"\n🚚");
        assert_eq!(record.imsi(), "901405100000001");
        assert_eq!(record.msisdn(), "");
        assert_eq!(record.provision_status(), "ACTIVE");
        assert_eq!(record.to_status(), status());
        let empty = Record::from(ThingStatus::default());
        assert_eq!(empty.to_status(), ThingStatus::default());
        assert_eq!(
            empty,
            Record::from(ThingStatus::default()),
            "unknowns are equal"
        );
        let mut other = status();
        other.uplink_throughput = Some(1.25);
        assert_ne!(Record::from(other), Record::from(status()));
        let mut negative_zero = status();
        negative_zero.uplink_throughput = Some(-0.0);
        let mut zero = status();
        zero.uplink_throughput = Some(0.0);
        assert_eq!(Record::from(negative_zero), Record::from(zero), "-0 is 0");
    }

    #[test]
    fn takes_the_last_good_value_of_what_was_not_understood() {
        let mut previous = status();
        previous.downlink_throughput = Some(7.0);
        previous.thing_name = "old name".into();
        let mut fresh = Record::from(status());
        fresh.keep_last_good(&Record::from(previous));
        assert_eq!(fresh.downlink_throughput(), Some(7.0));
        assert_eq!(
            fresh.thing_name(),
            "Zähler \"north\"\n🚚",
            "understood: fresh"
        );
    }

    #[test]
    fn what_events_said_outlives_answers_and_events_that_say_less() {
        let told = |last_event: f64, network: Option<&str>, imei: Option<&str>| {
            Some(Arc::new(PushInfo {
                last_event,
                network: network.map(|op| ("425".into(), "01".into(), op.into())),
                imei: imei.map(str::to_string),
            }))
        };
        let previous =
            Record::from(status()).with_push(told(1.0, Some("Partner"), Some("356938035643809")));
        let mut answer = Record::from(status());
        answer.keep_last_good(&previous);
        assert_eq!(answer.push(), previous.push(), "an answer keeps it");
        let mut newer = Record::from(status()).with_push(told(2.0, None, None));
        newer.keep_last_good(&previous);
        let push = newer.push().expect("kept");
        assert_eq!(push.last_event, 2.0);
        assert_eq!(push.network.as_ref().map(|n| n.2.as_str()), Some("Partner"));
        assert_eq!(push.imei.as_deref(), Some("356938035643809"));
        let mut moved = Record::from(status()).with_push(told(3.0, Some("Cellcom"), None));
        moved.keep_last_good(&previous);
        let push = moved.push().expect("kept");
        assert_eq!(
            push.network.as_ref().map(|n| n.2.as_str()),
            Some("Cellcom"),
            "replaced"
        );
        assert_eq!(push.imei.as_deref(), Some("356938035643809"));
    }
}
