//! The fleet the benchmarks share: status answers in the documented shapes.

use monogoto_exporter::fleet::Record;
use monogoto_exporter::monogoto::parse_status_page;

/// A status answer for `n` Things in the documented shapes, as the API sends
/// it; the throughputs move with `round`, as between two refreshes.
pub fn status_body(n: usize, offset: usize, round: usize) -> Vec<u8> {
    let data: Vec<serde_json::Value> = (offset..offset + n)
        .map(|i| {
            let connected = i % 5 != 0;
            let sessions = if connected {
                serde_json::json!([{"ActiveSessionId": format!("s{i}"), "ApnName": "data.mono", "IPAddress": "10.0.0.7",
                    "LastConnectedTime": 1_739_955_863_000u64 + i as u64, "UplinkThroughput": (i + round) % 5000, "DownlinkThroughput": (i + round) % 70000}])
            } else {
                serde_json::json!([])
            };
            serde_json::json!({
                "ThingId": format!("ThingId_ICCID_8988{i:015}"), "CustomerId": "cid_0f1e2d3c",
                "ThingName": format!("tracker-{i:05}"), "ThingDescription": "cold-chain tracker",
                "ProvisionStatus": "ACTIVE", "ConnectionStatus": if connected { "CONNECTED" } else { "DISCONNECTED" },
                "ActiveSessions": sessions, "ActiveIMSI": format!("9014{i:011}"),
                "LastConnectionTime": "2025-02-19 09:04:23", "LastDisconnectionTime": 1_739_952_000_000u64,
                "MSISDN": format!("+44{i:010}"),
            })
        })
        .collect();
    serde_json::json!({"Success": true, "Message": "Operation succeeded", "Data": data})
        .to_string()
        .into_bytes()
}

/// `n` Things as a refresh in `round` reads them.
pub fn fleet_in_round(n: usize, round: usize) -> Vec<Record> {
    (0..n / 50)
        .flat_map(|batch| {
            parse_status_page(&status_body(50, batch * 50, round))
                .map(|p| p.things)
                .unwrap_or_default()
        })
        .map(Record::from)
        .collect()
}
