//! The per-Thing metric families: their names, HELP texts and how a
//! [`Record`] becomes samples. Rendered from the snapshot (the "const metrics"
//! pattern), so a Thing that leaves the snapshot leaves /metrics with no
//! bookkeeping.

use std::time::{SystemTime, UNIX_EPOCH};

use super::record::Record;
use crate::exposition::text::{escape_label_value, write_value};

const FRESHNESS: &str = "Data come from the last successful poll of this Thing.";
const FROM_EVENTS: &str = "Data come from Monogoto's webhook events (POST /webhook).";

/// Label names and values beside the ICCID.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// What a family's samples are.
enum Samples {
    /// One sample per Thing whose value is known, labelled by ICCID alone.
    Value(fn(&Record) -> Option<f64>),
    /// Constant 1 per Thing, labelled with what describes it.
    Info,
    /// Constant 1 per Thing that has them, labelled by ICCID and these.
    Labels(fn(&Record) -> Option<Labels<'_>>),
}

struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
    /// Where its data come from, said in its HELP.
    source: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "monogoto_thing_connected",
        help: "1 if the SIM has an open data session (CONNECTED), else 0.",
        samples: Samples::Value(|t| t.connected().map(|c| if c { 1.0 } else { 0.0 })),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_active_sessions",
        help: "Number of active data sessions of the SIM.",
        samples: Samples::Value(|t| t.active_sessions().map(f64::from)),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_uplink_throughput",
        help: "Sum of UplinkThroughput over the active sessions, in the unit Monogoto reports it in.",
        samples: Samples::Value(|t| t.uplink_throughput()),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_downlink_throughput",
        help: "Sum of DownlinkThroughput over the active sessions, in the unit Monogoto reports it in.",
        samples: Samples::Value(|t| t.downlink_throughput()),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_last_connection_timestamp_seconds",
        help: "Unix time of the SIM's last connection (LastConnectionTime).",
        samples: Samples::Value(|t| t.last_connection()),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_last_disconnection_timestamp_seconds",
        help: "Unix time of the SIM's last disconnection (LastDisconnectionTime).",
        samples: Samples::Value(|t| t.last_disconnection()),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_session_start_timestamp_seconds",
        help: "Unix time at which the earliest active data session started (LastConnectedTime).",
        samples: Samples::Value(|t| t.session_start()),
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_info",
        help: "Constant 1, labelled with the SIM's name, IMSI, MSISDN and provisioning status (empty where unknown).",
        samples: Samples::Info,
        source: FRESHNESS,
    },
    Family {
        name: "monogoto_thing_last_event_timestamp_seconds",
        help: "Unix time at which the last webhook event naming the SIM was received.",
        samples: Samples::Value(|t| t.push().map(|p| p.last_event)),
        source: FROM_EVENTS,
    },
    Family {
        name: "monogoto_thing_network_info",
        help: "Constant 1, labelled with the network the SIM was last seen on: MCC, MNC and operator of the last CDR that carried them.",
        samples: Samples::Labels(|t| {
            let (mcc, mnc, operator) = t.push()?.network.as_ref()?;
            Some(vec![("mcc", mcc), ("mnc", mnc), ("operator", operator)])
        }),
        source: FROM_EVENTS,
    },
    Family {
        name: "monogoto_thing_device_info",
        help: "Constant 1, labelled with the IMEI of the device the SIM was last seen in (the last CDR that carried one).",
        samples: Samples::Labels(|t| Some(vec![("imei", t.push()?.imei.as_deref()?)])),
        source: FROM_EVENTS,
    },
];

/// The number of per-Thing metric families.
pub(crate) const THING_FAMILIES: usize = FAMILIES.len();

/// The `# HELP` and `# TYPE` lines of per-Thing family `family`.
pub(crate) fn render_family_header(family: usize, out: &mut Vec<u8>) {
    if let Some(f) = FAMILIES.get(family) {
        let text = format!(
            "# HELP {} {} {}\n# TYPE {} gauge\n",
            f.name, f.help, f.source, f.name
        );
        out.extend_from_slice(text.as_bytes());
    }
}

/// The sample lines of per-Thing family `family` for `things`, in order.
pub(crate) fn render_family_lines<'a>(
    family: usize,
    things: impl Iterator<Item = &'a Record>,
    out: &mut Vec<u8>,
) {
    let Some(f) = FAMILIES.get(family) else {
        return;
    };
    match f.samples {
        Samples::Value(value_of) => {
            for thing in things {
                if let Some(value) = value_of(thing) {
                    out.extend_from_slice(f.name.as_bytes());
                    out.extend_from_slice(b"{iccid=\"");
                    escape_label_value(thing.iccid(), out);
                    out.extend_from_slice(b"\"} ");
                    write_value(value, out);
                    out.push(b'\n');
                }
            }
        }
        Samples::Info => {
            for thing in things {
                let labels = [
                    ("thing_name", thing.thing_name()),
                    ("imsi", thing.imsi()),
                    ("msisdn", thing.msisdn()),
                    ("provision_status", thing.provision_status()),
                ];
                write_info(f.name, thing.iccid(), labels, out);
            }
        }
        Samples::Labels(labels_of) => {
            for thing in things {
                if let Some(labels) = labels_of(thing) {
                    write_info(f.name, thing.iccid(), labels, out);
                }
            }
        }
    }
}

/// One info sample: `name{iccid="...",label="value",...} 1`.
fn write_info<'a>(
    name: &str,
    iccid: &str,
    labels: impl IntoIterator<Item = (&'static str, &'a str)>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"{iccid=\"");
    escape_label_value(iccid, out);
    out.push(b'"');
    for (label, value) in labels {
        out.push(b',');
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label_value(value, out);
        out.push(b'"');
    }
    out.extend_from_slice(b"} 1\n");
}

/// Renders the per-Thing series of `things` (in the order given) in the text
/// exposition format 0.0.4, family by family.
pub fn render_things<'a>(things: impl Iterator<Item = &'a Record> + Clone, out: &mut Vec<u8>) {
    for family in 0..THING_FAMILIES {
        render_family_header(family, out);
        render_family_lines(family, things.clone(), out);
    }
}

/// The oldest data the snapshot still serves. Rendered with the snapshot
/// rather than registered, because it is a property of the snapshot, and one
/// series instead of a per-Thing one.
pub(crate) fn render_oldest_refresh(oldest: SystemTime, out: &mut Vec<u8>) {
    let seconds = oldest
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    out.extend_from_slice(
        b"# HELP monogoto_snapshot_oldest_refresh_timestamp_seconds Unix time of the last successful poll of the least recently refreshed Thing still served.\n",
    );
    out.extend_from_slice(b"# TYPE monogoto_snapshot_oldest_refresh_timestamp_seconds gauge\n");
    out.extend_from_slice(b"monogoto_snapshot_oldest_refresh_timestamp_seconds ");
    write_value(seconds, out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::monogoto::ThingStatus;

    fn thing(iccid: &str) -> ThingStatus {
        ThingStatus {
            iccid: iccid.into(),
            ..ThingStatus::default()
        }
    }

    fn render(things: &[ThingStatus]) -> String {
        let mut out = Vec::new();
        let records: Vec<Record> = things.iter().cloned().map(Record::from).collect();
        render_things(records.iter(), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn escapes_label_values() {
        let mut t = thing("898800000000000001");
        t.thing_name = "meter \"north\" \\ 7\nline 2 Zähler-東京-🚚".into();
        let text = render(&[t]);
        assert!(
            text.contains(r#"thing_name="meter \"north\" \\ 7\nline 2 Zähler-東京-🚚""#),
            "{text}"
        );
    }

    #[test]
    fn unknown_values_are_absent_and_known_ones_exact() {
        let mut t = thing("898800000000000001");
        t.connected = Some(true);
        t.active_sessions = Some(2);
        t.uplink_throughput = Some(1500.5);
        t.last_connection = Some(1_739_955_863.0);
        t.provision_status = "ACTIVE".into();
        let text = render(&[t, thing("898800000000000002")]);
        assert!(text.contains("monogoto_thing_connected{iccid=\"898800000000000001\"} 1\n"));
        assert!(text.contains("monogoto_thing_active_sessions{iccid=\"898800000000000001\"} 2\n"));
        assert!(
            text.contains(
                "monogoto_thing_uplink_throughput{iccid=\"898800000000000001\"} 1500.5\n"
            )
        );
        assert!(text.contains(
            "monogoto_thing_last_connection_timestamp_seconds{iccid=\"898800000000000001\"} 1739955863\n"
        ));
        assert!(!text.contains("monogoto_thing_downlink_throughput{"));
        assert!(!text.contains("monogoto_thing_connected{iccid=\"898800000000000002\"}"));
        assert!(text.contains(
            "monogoto_thing_info{iccid=\"898800000000000002\",thing_name=\"\",imsi=\"\",msisdn=\"\",provision_status=\"\"} 1\n"
        ));
        assert_eq!(text.matches("# TYPE ").count(), FAMILIES.len());
    }

    #[test]
    fn an_empty_sum_renders_as_zero() {
        // Summing no sessions gives -0.
        let mut t = thing("898800000000000001");
        t.uplink_throughput = Some(std::iter::empty::<f64>().sum());
        t.downlink_throughput = Some(0.25);
        let text = render(&[t]);
        assert!(
            text.contains("monogoto_thing_uplink_throughput{iccid=\"898800000000000001\"} 0\n")
        );
        assert!(
            text.contains(
                "monogoto_thing_downlink_throughput{iccid=\"898800000000000001\"} 0.25\n"
            )
        );
    }

    #[test]
    fn what_events_said_is_rendered_only_for_the_sims_they_named() {
        use std::sync::Arc;

        let told = Record::from(thing("898800000000000001")).with_push(Some(Arc::new(
            crate::fleet::PushInfo {
                last_event: 1_764_970_000.5,
                network: Some(("425".into(), "01".into(), "Partner \"IL\"".into())),
                imei: Some("356938035643809".into()),
            },
        )));
        let silent = Record::from(thing("898800000000000002"));
        let mut out = Vec::new();
        render_things([&told, &silent].into_iter(), &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        for line in [
            "monogoto_thing_last_event_timestamp_seconds{iccid=\"898800000000000001\"} 1764970000.5\n",
            "monogoto_thing_network_info{iccid=\"898800000000000001\",mcc=\"425\",mnc=\"01\",operator=\"Partner \\\"IL\\\"\"} 1\n",
            "monogoto_thing_device_info{iccid=\"898800000000000001\",imei=\"356938035643809\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("_event_timestamp_seconds{iccid=\"898800000000000002\""));
        assert!(!text.contains("network_info{iccid=\"898800000000000002\""));
        assert!(
            text.contains("# HELP monogoto_thing_device_info Constant 1, labelled with the IMEI")
        );
    }
}
