//! What each status request of a refresh carries, chosen when its slot
//! comes: SIMs that webhook events named, or the pass's next batch. Hints
//! take at most every other request while the pass goes on, so a storm of
//! events never stops it; once the pass is done they take every request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::hints::Hints;
use super::schedule::Batch;

/// What one request carries: positions in the followed list.
pub(super) struct Work {
    pub(super) positions: Vec<usize>,
    /// SIMs that events named, rather than the pass's batch.
    pub(super) hinted: bool,
}

pub(super) struct Chooser<'a> {
    regular: Mutex<VecDeque<Batch>>,
    /// Requests started and still waiting for their slot.
    waiting: AtomicUsize,
    hinted_sent: AtomicUsize,
    regular_sent: AtomicUsize,
    /// ICCID to position in the followed list.
    positions: &'a HashMap<String, usize>,
    /// Whether a SIM may go in a hinted batch: not refused, not failing, as
    /// either would sink the batch.
    hintable: &'a [bool],
    hints: &'a Hints,
    batch_size: usize,
    /// SIMs this refresh already asked for on a hint: the pass's batches
    /// leave them out instead of asking twice.
    asked: Mutex<HashSet<usize>>,
}

impl<'a> Chooser<'a> {
    pub(super) fn new(
        batches: Vec<Batch>,
        positions: &'a HashMap<String, usize>,
        hintable: &'a [bool],
        hints: &'a Hints,
        batch_size: usize,
    ) -> Self {
        Chooser {
            regular: Mutex::new(batches.into()),
            waiting: AtomicUsize::new(0),
            hinted_sent: AtomicUsize::new(0),
            regular_sent: AtomicUsize::new(0),
            positions,
            hintable,
            hints,
            batch_size: batch_size.max(1),
            asked: Mutex::default(),
        }
    }

    fn regular_left(&self) -> usize {
        self.regular.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether to start another request: one for each batch of the pass no
    /// request waits for yet, and one for hints when none waits at all.
    /// None ends the refresh's requests.
    pub(super) fn pull(&self) -> Option<()> {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let wanted = self.regular_left() > waiting || (waiting == 0 && !self.hints.is_empty());
        wanted.then(|| {
            self.waiting.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// What a request whose slot has come carries; None when nothing is left.
    pub(super) fn choose(&self) -> Option<Work> {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let regular_left = self.regular_left();
        let hints_turn = regular_left == 0
            || self.hinted_sent.load(Ordering::Relaxed)
                <= self.regular_sent.load(Ordering::Relaxed);
        if hints_turn && !self.hints.is_empty() {
            let index = self.positions;
            let usable = |iccid: &str| {
                index
                    .get(iccid)
                    .is_some_and(|&p| self.hintable.get(p).copied().unwrap_or(false))
            };
            let positions: Vec<usize> = self
                .hints
                .take(self.batch_size, usable)
                .iter()
                .filter_map(|iccid| index.get(iccid.as_str()).copied())
                .collect();
            if !positions.is_empty() {
                self.hinted_sent.fetch_add(1, Ordering::Relaxed);
                self.asked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(positions.iter().copied());
                return Some(Work {
                    positions,
                    hinted: true,
                });
            }
        }
        self.next_regular()
    }

    /// The pass's next batch, for a request that will not be sent (the
    /// credentials were rejected): its SIMs count as unanswered.
    pub(super) fn choose_regular(&self) -> Option<Work> {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.next_regular()
    }

    fn next_regular(&self) -> Option<Work> {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        let mut regular = self.regular.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut batch = regular.pop_front()?;
            batch.positions.retain(|p| !asked.contains(p));
            if !batch.positions.is_empty() {
                self.regular_sent.fetch_add(1, Ordering::Relaxed);
                return Some(Work {
                    positions: batch.positions,
                    hinted: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::hints::EventNews;
    use tokio::time::Instant;

    fn positions(n: usize) -> HashMap<String, usize> {
        (0..n).map(|i| (format!("{i}"), i)).collect()
    }

    fn batches(n: usize) -> Vec<Batch> {
        (0..n)
            .map(|i| Batch {
                positions: vec![i * 2, i * 2 + 1],
            })
            .collect()
    }

    #[test]
    fn hints_take_every_other_request_while_the_pass_goes_on() {
        let followed = positions(20);
        let hintable = vec![true; 20];
        let hints = Hints::default();
        for i in 10..20 {
            hints.add(&format!("{i}"), Instant::now(), EventNews::default());
        }
        let chooser = Chooser::new(batches(3), &followed, &hintable, &hints, 2);
        let mut kinds = Vec::new();
        while chooser.pull().is_some() {
            let Some(work) = chooser.choose() else { break };
            kinds.push(work.hinted);
        }
        // The first request may be a hint; never two hints in a row while
        // the pass has batches left; then the hints take the rest.
        assert_eq!(kinds, [true, false, true, false, true, false, true, true]);
    }

    #[test]
    fn a_sim_asked_for_on_a_hint_is_not_asked_again_in_the_pass() {
        let followed = positions(4);
        let hintable = vec![true; 4];
        let hints = Hints::default();
        for iccid in ["1", "2", "3"] {
            hints.add(iccid, Instant::now(), EventNews::default());
        }
        let chooser = Chooser::new(batches(2), &followed, &hintable, &hints, 3);
        let mut sent = Vec::new();
        while chooser.pull().is_some() {
            let Some(work) = chooser.choose() else { break };
            sent.push(work.positions);
        }
        // [0, 1] loses 1, and [2, 3] would hold only 2 and 3, both asked.
        assert_eq!(sent, [vec![1, 2, 3], vec![0]]);
    }

    #[test]
    fn hints_for_sims_not_followed_or_not_hintable_are_dropped() {
        let followed = positions(4);
        let hintable = vec![true, false, true, true];
        let hints = Hints::default();
        for iccid in ["1", "9", "3"] {
            hints.add(iccid, Instant::now(), EventNews::default());
        }
        let chooser = Chooser::new(Vec::new(), &followed, &hintable, &hints, 50);
        assert!(chooser.pull().is_some());
        let work = chooser.choose().expect("hinted");
        assert_eq!(work.positions, [3]);
        assert!(hints.is_empty(), "the unusable ones are not kept");
        assert!(chooser.pull().is_none(), "nothing left: no request");
    }
}
