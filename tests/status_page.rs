//! The status page at `/` against the simulator on 127.0.0.1: its headers,
//! its figures against the simulator's truth, and hostile Thing names.

mod common;

use common::*;

/// A fleet of 10 has the simulator's awkward names at fixed positions: made
/// ACTIVE and disconnected, they are listed on the page.
const AWKWARD: [(&str, &str); 3] = [
    ("meter \"north\" \\ 7", "meter &quot;north&quot; \\ 7"),
    ("tracker-00005\nspare", "tracker-00005\u{FFFD}spare"),
    ("Zähler-東京-🚚", "Zähler-東京-🚚"),
];

#[tokio::test]
async fn the_status_page_shows_the_fleet_and_escapes_names() {
    let sim = simulator(10).await;
    let iccids = sim.simulator.iccids();
    let mut truths: Vec<_> = iccids
        .iter()
        .map(|i| sim.simulator.truth(i).expect("known Thing"))
        .collect();
    for (name, _) in AWKWARD {
        let truth = truths
            .iter_mut()
            .find(|t| t.thing_name == name)
            .unwrap_or_else(|| panic!("the simulator names a Thing {name:?}"));
        sim.simulator
            .set_provision_status(&truth.iccid, Some("ACTIVE"));
        sim.simulator.set_connected(&truth.iccid, Some(false));
        // `truth` does not follow a status set this way: the expectations do.
        truth.provision_status = "ACTIVE".into();
        truth.connected = false;
    }
    let connected = truths.iter().filter(|t| t.connected).count();
    let inactive = truths
        .iter()
        .filter(|t| matches!(t.provision_status.as_str(), "SUSPENDED" | "RETIRED"))
        .count();
    let disconnected_active = truths
        .iter()
        .filter(|t| !t.connected && t.provision_status == "ACTIVE")
        .count();
    assert!(connected > 0, "the fleet mixes states");

    let exporter = start_exporter(&config(&sim)).await;
    // The tiers are known once the first refresh has ended, a moment after
    // the exporter is ready.
    wait_until("the first refresh's plan", || {
        exporter.health.things_inactive.get() == inactive as i64
            && exporter.health.last_refresh_success.get() > 0.0
    })
    .await;

    let response = get(&format!("{}/", exporter.url())).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header("content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    let page = response.text().await.expect("body");

    assert!(page.contains("<title>Monogoto Exporter status</title>"));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(page.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        page.contains("<tr><th>Followed</th><td>10</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "polled every refresh</th><td>{}</td>",
            10 - inactive
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "polled once per inactive interval</th><td>{inactive}</td>"
        )),
        "{page}"
    );
    assert!(
        page.contains("<tr><th>Missing from the API's answers</th><td>0</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<strong>{connected}</strong> of 10 reported")),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<tr><th>ACTIVE and disconnected</th><td>{disconnected_active}</td></tr>"
        )),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"badge ok\">up</span>"),
        "{page}"
    );
    assert!(page.contains("total since start"));
    for link in ["/metrics", "/healthz", "/readyz"] {
        assert!(page.contains(&format!("<a href=\"{link}\">")), "{link}");
    }

    for (raw, escaped) in AWKWARD {
        assert!(page.contains(escaped), "{escaped:?} in {page}");
        if raw != escaped {
            assert!(!page.contains(raw), "{raw:?} unescaped");
        }
    }
    assert!(!page.contains("\"north\""));
    exporter.shutdown().await;
}
