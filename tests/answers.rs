//! How the exporter copes with answers it did not expect: another form of
//! `ThingIds`, SIMs missing from the answers, and an ICCID the API refuses.

mod common;

use std::time::Duration;

use common::*;
use monogoto_exporter::monogoto::ThingIdsFormat;
use monogoto_exporter::simulator::{SimEndpoint, SimulatorConfig, ThingIdsForm};

async fn repeat_only_simulator(things: usize) -> monogoto_exporter::simulator::RunningSimulator {
    simulator_with(SimulatorConfig {
        things,
        seed: 7,
        thing_ids_format: ThingIdsForm::Repeat,
        ..SimulatorConfig::default()
    })
    .await
}

/// Against an API that takes only `form` (repeated `ThingIds`), the form is
/// found on the first batch, asked once more in the other form, and kept:
/// one request a batch from then on.
async fn assert_the_form_is_found_and_kept(form: ThingIdsForm) {
    let sim = simulator_with(SimulatorConfig {
        things: 120,
        seed: 7,
        thing_ids_format: form,
        ..SimulatorConfig::default()
    })
    .await;
    let mut cfg = config(&sim);
    cfg.poll.inactive_interval = Duration::ZERO;
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(
        value(&s, "monogoto_things_reported"),
        Some(120.0),
        "{form:?}"
    );
    assert_eq!(value(&s, "monogoto_things_missing"), Some(0.0), "{form:?}");
    assert_eq!(value(&s, "monogoto_up"), Some(1.0), "{form:?}");
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        4,
        "{form:?}: 3 batches, and the first asked once more in the other form"
    );
    assert!(exporter.poller.refresh().await.succeeded());
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        7,
        "{form:?}: the form is kept: one request a batch"
    );
    assert!(
        sim.simulator
            .status_queries()
            .last()
            .is_some_and(|q| q.matches("ThingIds=").count() > 1),
        "{form:?}: repeated parameters"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn the_form_of_thing_ids_the_api_takes_is_found_and_kept() {
    assert_the_form_is_found_and_kept(ThingIdsForm::Repeat).await;
}

/// An API that refuses the comma form with 400 is not taken for one that
/// refuses every ICCID: no SIM is split off.
#[tokio::test]
async fn a_form_the_api_refuses_is_found_and_not_split_sim_by_sim() {
    assert_the_form_is_found_and_kept(ThingIdsForm::RepeatStrict).await;
}

#[tokio::test]
async fn an_operator_can_name_the_form() {
    let sim = repeat_only_simulator(120).await;
    let mut cfg = config(&sim);
    cfg.poll.inactive_interval = Duration::ZERO;
    cfg.thing_ids_format = ThingIdsFormat::Repeat;
    let exporter = start_exporter(&cfg).await;
    assert_eq!(exporter.health.things_reported.get(), 120);
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        3,
        "no detection"
    );
    exporter.shutdown().await;

    // Told the wrong form, it does not guess: every SIM is reported missing.
    cfg.thing_ids_format = ThingIdsFormat::Comma;
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_reported"), Some(0.0));
    assert_eq!(value(&s, "monogoto_things_missing"), Some(120.0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn sims_not_in_the_answers_are_counted_missing() {
    let sim = simulator(10).await;
    let exporter = start_exporter(&config(&sim)).await;
    assert_eq!(exporter.health.things_missing.get(), 0);
    let gone = sim.simulator.iccids()[3].clone();
    sim.simulator.remove_thing(&gone);
    exporter.poller.refresh().await;
    assert_eq!(exporter.health.things_missing.get(), 1);
    exporter.shutdown().await;
}

#[tokio::test]
async fn one_refused_iccid_does_not_take_its_batch_down() {
    let sim = simulator(50).await;
    let fleet = sim.simulator.iccids();
    let bad = fleet[17].clone();
    sim.simulator.refuse_thing(&bad);
    let mut cfg = config(&sim);
    cfg.poll.inactive_interval = Duration::ZERO;
    let exporter = start_exporter(&cfg).await;
    let text = scrape(&exporter).await;
    let s = samples(&text);
    assert_eq!(
        value(&s, "monogoto_things_reported"),
        Some(49.0),
        "the 49 good ones"
    );
    assert_eq!(value(&s, "monogoto_things_missing"), Some(1.0));
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert!(!text.contains(&bad));
    let first = sim.simulator.requests(SimEndpoint::Status);
    // The first 400 also tries the other form of ThingIds once.
    assert!(
        first <= 2 * 6 + 2,
        "bisected in about 2 log2(50) requests, not one per SIM: {first}"
    );
    // The refused one waits its turn (hourly); the others cost one request.
    assert!(exporter.poller.refresh().await.succeeded());
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), first + 1);
    assert_eq!(exporter.health.things_missing.get(), 1);
    exporter.shutdown().await;
}

/// Two refused ICCIDs side by side (the 2nd and 3rd) fill a split of a batch
/// on their own: that part is refused whole, yet the request form is fine.
#[tokio::test]
async fn neighbouring_refused_iccids_cost_only_themselves() {
    let sim = simulator(50).await;
    let fleet = sim.simulator.iccids();
    for bad in &fleet[1..3] {
        sim.simulator.refuse_thing(bad);
    }
    let mut cfg = config(&sim);
    cfg.poll.inactive_interval = Duration::ZERO;
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_reported"), Some(48.0));
    assert_eq!(value(&s, "monogoto_things_missing"), Some(2.0));
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    // And the next refresh still splits nothing: the good 48 in one request.
    let before = sim.simulator.requests(SimEndpoint::Status);
    assert!(exporter.poller.refresh().await.succeeded());
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), before + 1);
    exporter.shutdown().await;
}

/// A request for one SIM reads the same in both forms: answered, it must not
/// settle the form, or the next multi-SIM request asks in the wrong one.
#[tokio::test]
async fn a_one_sim_answer_does_not_settle_the_thing_ids_form() {
    use monogoto_exporter::monogoto::{ApiMetrics, Client, ClientOptions, Credentials};
    let sim = repeat_only_simulator(10).await;
    let client = Client::new(
        ClientOptions::new(sim.url()),
        Credentials::Token(secrecy::SecretString::from(sim.simulator.static_token())),
        std::sync::Arc::new(ApiMetrics::new()),
    )
    .expect("client");
    let iccids = sim.simulator.iccids();
    let one = client
        .thing_status(&iccids[..1], 50, 0, None)
        .await
        .expect("answered");
    assert_eq!(one.things.len(), 1);
    let all = client
        .thing_status(&iccids, 50, 0, None)
        .await
        .expect("answered");
    assert_eq!(all.things.len(), 10, "asked in the form the API takes");
}
