//! Isolating the ICCIDs the API refuses. A batch answered 400 ("Invalid Input
//! Data") is split in halves until each refused SIM is alone, so that one bad
//! ICCID does not cost the others their data; from then on the schedule asks
//! for a refused SIM alone.
//!
//! Splitting stops only on evidence that the API, not the ICCIDs, is broken: a
//! whole batch refused SIM by SIM, at least two of which were answered before.
//! It starts again by itself once the API answers a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::monogoto::ApiError;
use crate::monogoto::paging::BatchAnswer;

/// Whether batches answered 400 are split (shared by every refresh).
#[derive(Default)]
pub(crate) struct Isolation {
    off: AtomicBool,
}

impl Isolation {
    pub(crate) fn is_on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// The API answered a request: it works, so a 400 is about the ICCIDs again.
    pub(crate) fn answered(&self) {
        if self.off.swap(false, Ordering::Relaxed) {
            tracing::info!("the API answers again: batches it refuses are split again");
        }
    }

    fn turn_off(&self, sims: usize) {
        if !self.off.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                sims,
                "the API refused every SIM of a batch one by one, SIMs it answered before among them: the API is refusing requests, not ICCIDs; not splitting batches until it answers again"
            );
        }
    }
}

/// The API's documented answer to a request it cannot take ("Invalid Input Data").
pub(crate) fn is_invalid_input(e: &ApiError) -> bool {
    matches!(e, ApiError::Status { code: 400, .. })
}

type Reading<'a> = Pin<Box<dyn Future<Output = Result<BatchAnswer, ApiError>> + Send + 'a>>;

/// Reads `batch` with `send` (one whole read of a list of ICCIDs, pages
/// included, given which were answered before), splitting it as the module
/// doc says. `answered_before[i]` says whether `batch[i]` was ever answered.
pub(crate) async fn read_isolating<F, Fut>(
    isolation: &Isolation,
    batch: &[String],
    answered_before: &[bool],
    send: &F,
) -> Result<BatchAnswer, ApiError>
where
    F: Fn(&[String], &[bool]) -> Fut + Sync,
    Fut: Future<Output = Result<BatchAnswer, ApiError>> + Send,
{
    let answer = read_part(isolation, batch, answered_before, send).await?;
    if batch.len() > 1 && answer.rejected.len() == batch.len() {
        let known = answered_before.iter().filter(|&&before| before).count();
        if known >= 2 {
            isolation.turn_off(batch.len());
            return Err(ApiError::Status {
                endpoint: "status",
                code: 400,
                body: format!("every SIM of a batch of {} refused alone", batch.len()),
            });
        }
    }
    Ok(answer)
}

/// One part of a batch: a 400 for it whole splits it while isolation is on;
/// a lone ICCID answered 400 is refused. Two refused ICCIDs side by side make
/// a part refused whole, which says nothing of the API: only the whole batch
/// is judged, by [`read_isolating`].
fn read_part<'a, F, Fut>(
    isolation: &'a Isolation,
    part: &'a [String],
    known: &'a [bool],
    send: &'a F,
) -> Reading<'a>
where
    F: Fn(&[String], &[bool]) -> Fut + Sync,
    Fut: Future<Output = Result<BatchAnswer, ApiError>> + Send,
{
    Box::pin(async move {
        match send(part, known).await {
            Ok(answer) => {
                isolation.answered();
                Ok(answer)
            }
            Err(e) if is_invalid_input(&e) => {
                if let [iccid] = part {
                    return Ok(BatchAnswer {
                        rejected: vec![iccid.clone()],
                        ..BatchAnswer::default()
                    });
                }
                if !isolation.is_on() {
                    return Err(e);
                }
                let half = part.len() / 2;
                let (left, right) = part.split_at(half);
                let (known_left, known_right) = known.split_at(half.min(known.len()));
                let mut answer = read_part(isolation, left, known_left, send).await?;
                let more = read_part(isolation, right, known_right, send).await?;
                answer.things.extend(more.things);
                answer.strangers += more.strangers;
                answer.rejected.extend(more.rejected);
                Ok(answer)
            }
            Err(e) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests;
