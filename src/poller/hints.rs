//! SIMs that webhook events named: asked for in the next status request that
//! goes out, each once however many events named it, and what the events
//! said of them until their next answer is published.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::fleet::PushInfo;

/// What hints cost and bring, registered with the webhook receiver.
pub struct HintMetrics {
    pub hinted_polls: IntCounter,
    pub event_to_answer: Histogram,
}

impl Default for HintMetrics {
    fn default() -> Self {
        HintMetrics {
            hinted_polls: IntCounter::new(
                "monogoto_webhook_hinted_polls_total",
                "SIMs polled early because a webhook event named them.",
            )
            .expect("valid metric"),
            event_to_answer: Histogram::with_opts(
                HistogramOpts::new(
                    "monogoto_webhook_event_to_answer_seconds",
                    "Time from a webhook event to its SIM's new answer on /metrics, in seconds.",
                )
                .buckets(vec![
                    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
                ]),
            )
            .expect("valid metric"),
        }
    }
}

impl HintMetrics {
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.hinted_polls.clone()))?;
        registry.register(Box::new(self.event_to_answer.clone()))
    }
}

/// What one event says of a SIM.
#[derive(Debug, Clone, Default)]
pub struct EventNews {
    /// Unix time at which it was received.
    pub received_unix: f64,
    /// MCC, MNC, operator.
    pub network: Option<(String, String, String)>,
    pub imei: Option<String>,
}

#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    /// When the oldest event still waiting for its SIM's answer arrived.
    waiting_since: HashMap<String, Instant>,
}

#[derive(Default)]
pub(crate) struct Hints {
    queue: Mutex<Queue>,
    /// What events said of SIMs, until their next answer takes it.
    news: Mutex<HashMap<String, Arc<PushInfo>>>,
    /// Hinted SIMs whose answer is out: when their first event arrived, for
    /// the time from an event to its answer on /metrics.
    in_flight: Mutex<HashMap<String, Instant>>,
    pub(crate) arrived: Notify,
}

impl Hints {
    /// Queues `iccid` (once) and keeps what the event said of it, on top of
    /// what earlier events not yet published said (the record's own is
    /// merged in when the answer is: `Record::keep_last_good`).
    pub(crate) fn add(&self, iccid: &str, at: Instant, news: EventNews) {
        {
            let mut news_table = self.news.lock().unwrap_or_else(|p| p.into_inner());
            let before = news_table.get(iccid).map(Arc::as_ref);
            let merged = PushInfo {
                last_event: news.received_unix,
                network: news
                    .network
                    .or_else(|| before.and_then(|b| b.network.clone())),
                imei: news.imei.or_else(|| before.and_then(|b| b.imei.clone())),
            };
            news_table.insert(iccid.to_string(), Arc::new(merged));
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if !queue.waiting_since.contains_key(iccid) {
            queue.waiting_since.insert(iccid.to_string(), at);
            queue.order.push_back(iccid.to_string());
        }
        drop(queue);
        self.arrived.notify_one();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .is_empty()
    }

    /// Up to `max` hinted SIMs, oldest first. Those `usable` refuses on the
    /// way are dropped: a SIM not followed, or one the schedule asks for on
    /// its own terms (refused, failing), is not hinted.
    pub(crate) fn take(&self, max: usize, usable: impl Fn(&str) -> bool) -> Vec<String> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(iccid) = queue.order.pop_front() else {
                break;
            };
            if usable(&iccid) {
                taken.push(iccid);
            } else {
                queue.waiting_since.remove(&iccid);
            }
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for iccid in &taken {
            if let Some(at) = queue.waiting_since.remove(iccid) {
                in_flight.entry(iccid.clone()).or_insert(at);
            }
        }
        taken
    }

    /// Forgets SIMs no longer followed.
    pub(crate) fn retain(&self, followed: &HashSet<&str>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.order.retain(|i| followed.contains(i.as_str()));
        queue
            .waiting_since
            .retain(|i, _| followed.contains(i.as_str()));
        drop(queue);
        self.news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|i, _| followed.contains(i.as_str()));
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|i, _| followed.contains(i.as_str()));
    }

    /// What events said of `iccid` since its last answer was published; taken.
    pub(crate) fn take_news(&self, iccid: &str) -> Option<Arc<PushInfo>> {
        let mut news = self.news.lock().unwrap_or_else(|p| p.into_inner());
        if news.is_empty() {
            return None;
        }
        news.remove(iccid)
    }

    /// When the event that got `iccid` polled arrived, once its answer is published.
    pub(crate) fn answered(&self, iccid: &str) -> Option<Instant> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.is_empty() {
            return None;
        }
        in_flight.remove(iccid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news(at: f64, network: Option<&str>, imei: Option<&str>) -> EventNews {
        EventNews {
            received_unix: at,
            network: network.map(|op| ("425".into(), "01".into(), op.into())),
            imei: imei.map(str::to_string),
        }
    }

    #[test]
    fn a_sim_is_queued_once_however_many_events_name_it() {
        let hints = Hints::default();
        let now = Instant::now();
        hints.add("1", now, news(1.0, None, None));
        hints.add("2", now, news(2.0, None, None));
        hints.add("1", now, news(3.0, None, None));
        assert_eq!(hints.take(10, |_| true), ["1", "2"]);
        assert!(hints.is_empty());
        assert_eq!(hints.answered("1"), Some(now));
        assert_eq!(hints.answered("1"), None, "once");
    }

    #[test]
    fn what_is_not_usable_is_dropped_and_the_rest_stays_in_order() {
        let hints = Hints::default();
        let now = Instant::now();
        for iccid in ["1", "2", "3", "4"] {
            hints.add(iccid, now, EventNews::default());
        }
        assert_eq!(hints.take(1, |i| i != "1"), ["2"]);
        assert_eq!(hints.take(10, |_| true), ["3", "4"]);
    }

    #[test]
    fn events_waiting_for_one_answer_add_up() {
        let hints = Hints::default();
        let now = Instant::now();
        hints.add("1", now, news(5.0, Some("Old"), Some("356938035643809")));
        hints.add("1", now, news(6.0, None, None));
        let info = hints.take_news("1").expect("news");
        assert_eq!(info.last_event, 6.0);
        assert_eq!(info.network.as_ref().map(|n| n.2.as_str()), Some("Old"));
        assert_eq!(info.imei.as_deref(), Some("356938035643809"));
        assert!(hints.take_news("1").is_none(), "taken");
    }
}
