//! The account's request budget, enforced on the client side for every request
//! of the process (logins and listings included), whatever its concurrency.
//!
//! A budget is a list of windows (`60/min,1000/h`), all enforced at once. Each
//! is a sliding-window log: a request may go once fewer than N requests went in
//! the last period, so no window of that length ever holds more than N, however
//! it is placed. The API can also pause every request (429 `Retry-After`,
//! `X-RateLimit-Remaining: 0`) or announce a lower limit (`X-RateLimit-Limit`).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// `N/period`, e.g. `60/min`: one window of a [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: Duration,
}

/// No window may be longer than this: a longer one is a typo, and its
/// arithmetic would overflow.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

impl RateLimit {
    /// Requests per second this window sustains.
    pub fn rate(&self) -> f64 {
        f64::from(self.requests) / self.period.as_secs_f64()
    }

    /// The window as the limiter keeps it: a little longer than announced, so
    /// that requests sent exactly a period apart but delayed differently on
    /// the way still arrive a period apart at the API.
    fn guarded_period(&self) -> Duration {
        self.period + (self.period / 20).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            _ if self.period.subsec_nanos() != 0 => {
                humantime::format_duration(self.period).to_string()
            }
            1 => "s".to_string(),
            60 => "min".to_string(),
            3600 => "h".to_string(),
            _ => humantime::format_duration(self.period).to_string(),
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let why = |detail: &str| {
            format!(
                "{detail}: a window is REQUESTS/PERIOD such as \"60/min\", \"1000/h\", \"5/s\" or \"20/10s\""
            )
        };
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| why(&format!("{s:?} has no \"/\"")))?;
        let requests: u32 = count
            .trim()
            .parse()
            .map_err(|_| why(&format!("{:?} is not a whole number", count.trim())))?;
        if requests == 0 {
            return Err(why(
                "a window of 0 requests allows nothing (use 0 alone for no limit)",
            ));
        }
        let unit = unit.trim();
        let period = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            other => humantime::parse_duration(other)
                .map_err(|_| why(&format!("{other:?} is not a period")))?,
        };
        if period.is_zero() {
            return Err(why("the period must be longer than zero"));
        }
        if period > MAX_WINDOW {
            return Err(why("the period must be at most 7d"));
        }
        Ok(RateLimit { requests, period })
    }
}

/// The `--monogoto.rate-limit` value: windows enforced together, such as
/// `60/min,1000/h`; empty (written `0`) for no limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Budget(Vec<RateLimit>);

impl Budget {
    pub fn unlimited() -> Self {
        Budget(Vec::new())
    }

    pub fn windows(&self) -> &[RateLimit] {
        &self.0
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.0.is_empty()
    }

    /// Requests per second the budget sustains: its tightest window's rate,
    /// as the limiter keeps the windows (a little longer than announced),
    /// so that a plan at this rate never runs into the windows.
    pub(crate) fn sustained_rate(&self) -> Option<f64> {
        self.0
            .iter()
            .map(|w| f64::from(w.requests) / w.guarded_period().as_secs_f64())
            .reduce(f64::min)
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("0");
        }
        for (i, window) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{window}")?;
        }
        Ok(())
    }
}

impl FromStr for Budget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "0" {
            return Ok(Budget::unlimited());
        }
        if s.is_empty() {
            return Err("empty: give windows such as \"60/min,1000/h\", or 0 for no limit".into());
        }
        let mut windows = s
            .split(',')
            .map(|w| w.trim().parse::<RateLimit>())
            .collect::<Result<Vec<_>, _>>()?;
        windows.sort_by_key(|w| w.period);
        Ok(Budget(windows))
    }
}

/// The requests the limiter counts against the budget: their send times
/// (the last N of the window that holds most), and a pause the API asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spent {
    pub sent: Vec<Instant>,
    pub paused_until: Option<Instant>,
}

/// Keeps what was spent where the next process finds it (`storage`).
pub trait SpendJournal: Send + Sync {
    /// Makes `spent` durable before the request it adds goes out; blocking.
    fn keep(&self, spent: Spent);
}

/// The journal, and up to when the slots it holds go.
struct Journal {
    sink: Arc<dyn SpendJournal>,
    kept: tokio::sync::Mutex<Option<Instant>>,
}

/// Paces requests; cheap to share behind an `Arc`.
pub(crate) struct Limiter {
    state: Mutex<State>,
    journal: OnceLock<Journal>,
}

struct Window {
    limit: RateLimit,
    /// The send times of the last N requests (N = the limit), oldest first.
    sent: VecDeque<Instant>,
}

struct State {
    windows: Vec<Window>,
    /// The API asked us to hold off until then.
    paused_until: Option<Instant>,
}

impl State {
    fn spent(&self) -> Spent {
        let sent = self
            .windows
            .iter()
            .max_by_key(|w| w.sent.len())
            .map(|w| w.sent.iter().copied().collect())
            .unwrap_or_default();
        Spent {
            sent,
            paused_until: self.paused_until,
        }
    }
}

/// The next free slot is after the caller's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PastDeadline;

impl Limiter {
    pub fn new(budget: &Budget) -> Self {
        Limiter {
            state: Mutex::new(State {
                windows: budget
                    .windows()
                    .iter()
                    .map(|&limit| Window {
                        limit,
                        sent: VecDeque::with_capacity(limit.requests.min(16_384) as usize),
                    })
                    .collect(),
                paused_until: None,
            }),
            journal: OnceLock::new(),
        }
    }

    /// Counts `spent` (a previous process's requests) against the budget.
    pub(crate) fn restore(&self, spent: &Spent) {
        let mut state = self.state();
        let mut sent = spent.sent.clone();
        sent.sort_unstable();
        for window in &mut state.windows {
            let mut merged: Vec<Instant> = window
                .sent
                .iter()
                .copied()
                .chain(sent.iter().copied())
                .collect();
            merged.sort_unstable();
            let keep = merged.len().saturating_sub(window.limit.requests as usize);
            window.sent = merged.into_iter().skip(keep).collect();
        }
        if let Some(until) = spent.paused_until
            && state.paused_until.is_none_or(|current| current < until)
        {
            state.paused_until = Some(until);
        }
    }

    /// What is counted against the budget now.
    #[cfg(test)]
    pub(crate) fn spent(&self) -> Spent {
        self.state().spent()
    }

    /// From now on, every slot given out is kept in `sink` before it is used.
    pub(crate) fn keep_in(&self, sink: Arc<dyn SpendJournal>) {
        let _ = self.journal.set(Journal {
            sink,
            kept: tokio::sync::Mutex::new(None),
        });
    }

    /// Waits until the journal holds reservation `seq` (one write may hold
    /// several: the requests that wait for it meanwhile).
    async fn journal(&self, slot: Instant) {
        let Some(journal) = self.journal.get() else {
            return;
        };
        let mut kept = journal.kept.lock().await;
        // Strictly later: a slot of the very instant may have come after it.
        if kept.is_some_and(|until| until > slot) {
            return;
        }
        // Only slots that have come: one reserved ahead by a process killed
        // before it sends must not count against the next one.
        let until = Instant::now();
        let spent = {
            let mut spent = self.state().spent();
            spent.sent.retain(|&at| at <= until);
            spent
        };
        let sink = journal.sink.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sink.keep(spent)).await {
            tracing::error!(error = %e, "keeping the budget spent failed");
        }
        *kept = Some(until);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The budget in force: the configured one, or lower where the API said so.
    pub fn budget(&self) -> Budget {
        Budget(self.state().windows.iter().map(|w| w.limit).collect())
    }

    /// Waits for a slot to send one request and returns how long it waited. A
    /// slot later than `deadline` is not taken (so a request that could not
    /// be sent in time does not use up the budget of what comes next).
    pub(crate) async fn acquire(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Duration, PastDeadline> {
        let now = Instant::now();
        let slot = {
            let mut state = self.state();
            let mut slot = now;
            if let Some(until) = state.paused_until {
                if until > now {
                    slot = until;
                } else {
                    state.paused_until = None;
                }
            }
            for window in &state.windows {
                if window.sent.len() >= window.limit.requests as usize
                    && let Some(&oldest) = window.sent.front()
                {
                    // The N-th last request must have left the window.
                    slot = slot.max(oldest + window.limit.guarded_period());
                }
            }
            if deadline.is_some_and(|d| slot > d) {
                return Err(PastDeadline);
            }
            for window in &mut state.windows {
                window.sent.push_back(slot);
                while window.sent.len() > window.limit.requests as usize {
                    window.sent.pop_front();
                }
            }
            slot
        };
        tokio::time::sleep_until(slot).await;
        // On disk before it goes out (one write may cover several requests).
        self.journal(slot).await;
        Ok(slot.saturating_duration_since(now))
    }

    /// Holds every request back until `until` (the API said its window is spent).
    pub(crate) fn pause_until(&self, until: Instant) {
        let mut state = self.state();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }

    /// The API announced a limit (`X-RateLimit-Limit`, a count without its
    /// period). Lower than every configured window, it is taken for the
    /// shortest one, which is the one such headers usually describe; returns
    /// the new budget when that changed it. A higher figure is never followed:
    /// the configured budget is the operator's share of the account.
    pub(crate) fn follow_announced_limit(&self, announced: u32) -> Option<Budget> {
        let mut state = self.state();
        let lowest = state.windows.iter().map(|w| w.limit.requests).min()?;
        if announced == 0 || announced >= lowest {
            return None;
        }
        let window = state.windows.first_mut()?;
        window.limit.requests = announced;
        while window.sent.len() > announced as usize {
            window.sent.pop_front();
        }
        Some(Budget(state.windows.iter().map(|w| w.limit).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(s: &str) -> Budget {
        s.parse::<Budget>().expect("valid")
    }

    fn window(requests: u32, secs: u64) -> RateLimit {
        RateLimit {
            requests,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn parses_budgets() {
        assert_eq!(budget("60/min").windows(), &[window(60, 60)]);
        assert_eq!(budget("5/s").windows(), &[window(5, 1)]);
        assert_eq!(budget("1000/h").windows(), &[window(1000, 3600)]);
        assert_eq!(budget("10/30s").windows(), &[window(10, 30)]);
        assert_eq!(
            budget(" 1000/h , 60/min ").windows(),
            &[window(60, 60), window(1000, 3600)],
            "windows are kept shortest first"
        );
        assert_eq!(
            budget("4/s,20/10s").windows(),
            &[window(4, 1), window(20, 10)]
        );
        assert!(budget("0").is_unlimited());
        for bad in [
            "",
            "60",
            "x/min",
            "60/fortnight",
            "-1/s",
            "5/0s",
            "0/s",
            "60/min,",
            "60/min,,1000/h",
            "1/300000000000y",
            "1/8d",
        ] {
            assert!(bad.parse::<Budget>().is_err(), "{bad}");
        }
        assert_eq!(budget("60/min,1000/h").to_string(), "60/min,1000/h");
        assert_eq!(budget("20/10s").to_string(), "20/10s");
        assert_eq!(budget("0").to_string(), "0");
    }

    #[test]
    fn the_tightest_window_sets_the_sustained_rate() {
        // As the limiter keeps them: the hour 2 s longer, 10 s half a second.
        let standard = budget("60/min,1000/h").sustained_rate().expect("limited");
        assert!((standard - 1000.0 / 3602.0).abs() < 1e-12);
        let scaled = budget("4/s,20/10s").sustained_rate().expect("limited");
        assert!((scaled - 20.0 / 10.5).abs() < 1e-12);
        assert_eq!(Budget::unlimited().sustained_rate(), None);
    }

    /// Every window of every period holds at most its count, checked from
    /// each send time of `times`.
    fn assert_within(spec: &str, times: &[Duration]) {
        for limit in budget(spec).windows() {
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..]
                    .iter()
                    .filter(|u| **u < *t + limit.period)
                    .count();
                assert!(
                    in_window <= limit.requests as usize,
                    "{spec}: {in_window} in the {limit} window from {t:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_its_count() {
        for spec in [
            "5/s",
            "7/s",
            "1/s",
            "4/s,20/10s",
            "60/min,1000/h",
            "3/s,10/5s,12/20s",
        ] {
            let limiter = Limiter::new(&budget(spec));
            let start = Instant::now();
            let mut times = Vec::new();
            for _ in 0..80 {
                limiter.acquire(None).await.expect("no deadline");
                times.push(start.elapsed());
            }
            assert_within(spec, &times);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_windows() {
        let limiter = std::sync::Arc::new(Limiter::new(&budget("4/s,20/10s")));
        let start = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire(None).await.expect("no deadline");
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.expect("joins"));
        }
        times.sort();
        assert_within("4/s,20/10s", &times);
    }

    #[tokio::test(start_paused = true)]
    async fn up_to_the_limit_at_once_then_paced() {
        let limiter = Limiter::new(&budget("5/s"));
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.acquire(None).await, Ok(Duration::ZERO));
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "five at once");
        let waited = limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1100),
            "the sixth once the first has left the window, with its guard"
        );
        assert_eq!(waited, start.elapsed(), "the wait is reported");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_and_not_taken() {
        let limiter = Limiter::new(&budget("1/s"));
        limiter.acquire(None).await.expect("first at once");
        let deadline = Instant::now() + Duration::from_millis(500);
        assert_eq!(limiter.acquire(Some(deadline)).await, Err(PastDeadline));
        let start = Instant::now();
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1100),
            "the refused slot was not used up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone() {
        let limiter = Limiter::new(&Budget::unlimited());
        let start = Instant::now();
        limiter.pause_until(start + Duration::from_secs(3));
        limiter.pause_until(start + Duration::from_secs(1));
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "the longer pause wins"
        );
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_announced_limit_is_followed() {
        let limiter = Limiter::new(&budget("60/min,1000/h"));
        assert_eq!(limiter.follow_announced_limit(60), None, "the same");
        assert_eq!(limiter.follow_announced_limit(300), None, "higher");
        assert_eq!(limiter.follow_announced_limit(0), None, "nonsense");
        assert_eq!(
            limiter.follow_announced_limit(30),
            Some(budget("30/min,1000/h"))
        );
        assert_eq!(limiter.budget(), budget("30/min,1000/h"));
        let start = Instant::now();
        for _ in 0..31 {
            limiter.acquire(None).await.expect("no deadline");
        }
        assert!(start.elapsed() >= Duration::from_secs(60), "30 a minute");
        assert_eq!(
            Limiter::new(&Budget::unlimited()).follow_announced_limit(5),
            None,
            "no limit configured: nothing to lower"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_previous_process_sent_counts_against_the_windows() {
        let limiter = Limiter::new(&budget("3/10s"));
        let now = Instant::now();
        let sent = vec![
            now - Duration::from_secs(2),
            now - Duration::from_secs(1),
            now,
        ];
        limiter.restore(&Spent {
            sent: sent.clone(),
            paused_until: None,
        });
        assert_eq!(limiter.spent().sent, sent);
        // The oldest leaves the window (10 s kept as 10.5 s) 8.5 s from now.
        let waited = limiter.acquire(None).await.expect("no deadline");
        assert_eq!(waited, Duration::from_millis(8500));
    }

    struct Recorder(std::sync::Mutex<Vec<Spent>>);

    impl SpendJournal for Recorder {
        fn keep(&self, spent: Spent) {
            self.0.lock().expect("lock").push(spent);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_slot_is_kept_before_it_is_used() {
        let limiter = Limiter::new(&budget("5/s"));
        let recorder = Arc::new(Recorder(std::sync::Mutex::new(Vec::new())));
        limiter.keep_in(recorder.clone());
        for n in 1..=3 {
            limiter.acquire(None).await.expect("no deadline");
            let kept = recorder.0.lock().expect("lock");
            assert_eq!(kept.last().map(|s| s.sent.len()), Some(n), "slot {n} kept");
        }
    }
}
