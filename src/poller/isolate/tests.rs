//! Isolation against a fake API that refuses any request naming a bad ICCID.

use std::collections::HashSet;
use std::sync::Mutex;

use super::*;
use crate::monogoto::ThingStatus;

/// Answers every ICCID it is asked for, or 400 when the request names one
/// of `refused`; records each request.
struct Api {
    refused: HashSet<String>,
    sent: Mutex<Vec<Vec<String>>>,
}

impl Api {
    fn new(refused: &[&str]) -> Self {
        Api {
            refused: refused.iter().map(|s| s.to_string()).collect(),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn send(&self, part: &[String]) -> std::future::Ready<Result<BatchAnswer, ApiError>> {
        self.sent.lock().expect("lock").push(part.to_vec());
        std::future::ready(if part.iter().any(|i| self.refused.contains(i)) {
            Err(ApiError::Status {
                endpoint: "status",
                code: 400,
                body: "Invalid Input Data".into(),
            })
        } else {
            Ok(BatchAnswer {
                things: part
                    .iter()
                    .map(|i| ThingStatus {
                        iccid: i.clone(),
                        ..ThingStatus::default()
                    })
                    .collect(),
                ..BatchAnswer::default()
            })
        })
    }

    fn requests(&self) -> usize {
        self.sent.lock().expect("lock").len()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn read(
    isolation: &Isolation,
    api: &Api,
    batch: &[String],
    answered: &[bool],
) -> Result<BatchAnswer, ApiError> {
    let send = |part: &[String], _: &[bool]| api.send(part);
    block(read_isolating(isolation, batch, answered, &send))
}

/// The shape that turned isolation off for good: two refused ICCIDs, due
/// together, in a batch of their own.
#[test]
fn refused_iccids_together_never_turn_isolation_off() {
    let api = Api::new(&["r0", "r1"]);
    let isolation = Isolation::default();
    let batch = names(&["g0", "g1", "g2", "r0", "g3", "g4", "g5", "r1"]);
    let answer = read(&isolation, &api, &batch, &[false; 8]).expect("answered");
    assert_eq!(answer.things.len(), 6);
    assert_eq!(answer.rejected, names(&["r0", "r1"]));

    // Never answered: refused alone, isolation stays on.
    let pair = names(&["r0", "r1"]);
    let answer = read(&isolation, &api, &pair, &[false, false]).expect("refused alone");
    assert_eq!(answer.rejected, pair);
    assert!(isolation.is_on());
    // With the two as the last batch of the first refresh, the same.
    let answer = read(&isolation, &api, &pair, &[false, false]).expect("refused alone");
    assert_eq!(answer.rejected.len(), 2);
    assert!(isolation.is_on());

    // A third bad ICCID later costs its batch nothing but itself.
    let api = Api::new(&["r0", "r1", "g4"]);
    let batch = names(&["g3", "g4", "g5", "g6"]);
    let answer = read(&isolation, &api, &batch, &[true; 4]).expect("answered");
    assert_eq!(answer.things.len(), 3);
    assert_eq!(answer.rejected, names(&["g4"]));
}

/// A SIM answered before and refused now is isolated like any other.
#[test]
fn a_sim_answered_before_is_isolated_too() {
    let api = Api::new(&["g1"]);
    let isolation = Isolation::default();
    let batch = names(&["g0", "g1", "g2", "g3"]);
    let answer = read(&isolation, &api, &batch, &[true; 4]).expect("answered");
    assert_eq!(answer.rejected, names(&["g1"]));
    assert!(isolation.is_on());
}

/// Everything refused, SIMs answered before among them: the API is broken.
/// Splitting stops, and starts again once the API answers.
#[test]
fn isolation_stops_only_on_evidence_and_comes_back() {
    let all = ["a", "b", "c", "d"];
    let api = Api::new(&all);
    let isolation = Isolation::default();
    let batch = names(&all);
    // One answered before is not enough.
    let answer = read(&isolation, &api, &batch, &[true, false, false, false]).expect("refused");
    assert_eq!(answer.rejected.len(), 4);
    assert!(isolation.is_on());

    let result = read(&isolation, &api, &batch, &[true, true, false, false]);
    assert!(matches!(result, Err(ApiError::Status { code: 400, .. })));
    assert!(!isolation.is_on());
    let before = api.requests();
    assert!(read(&isolation, &api, &batch, &[true; 4]).is_err());
    assert_eq!(api.requests(), before + 1, "not split while off");

    // A lone ICCID is still refused alone, and the API answering turns it on.
    let lone = read(&isolation, &api, &names(&["a"]), &[true]).expect("refused");
    assert_eq!(lone.rejected.len(), 1);
    let working = Api::new(&[]);
    read(&isolation, &working, &names(&["x", "y"]), &[true, true]).expect("answered");
    assert!(isolation.is_on());
}
