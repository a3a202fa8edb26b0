//! The Monogoto API's answers as the exporter understands them: a Thing's
//! status, a page of statuses or of the Things listing, and what could not be
//! understood (`FieldError`, `Unparsed`). How a body becomes these is in
//! `monogoto::decode`, whose entry points are re-exported here.

/// The prefix of a Thing's id; the rest is its ICCID.
pub(crate) const THING_ID_PREFIX: &str = "ThingId_ICCID_";

/// One Thing's data-session status as the exporter understands it.
/// `None` means unknown: absent from the answer or not understood.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThingStatus {
    pub iccid: String,
    pub thing_name: String,
    pub imsi: String,
    pub msisdn: String,
    pub provision_status: String,
    pub connected: Option<bool>,
    pub active_sessions: Option<u32>,
    pub uplink_throughput: Option<f64>,
    pub downlink_throughput: Option<f64>,
    /// Epoch seconds.
    pub last_connection: Option<f64>,
    pub last_disconnection: Option<f64>,
    /// Earliest `LastConnectedTime` over the active sessions, epoch seconds.
    pub session_start: Option<f64>,
    /// The values that were present but not understood: the snapshot keeps
    /// their last good values instead of dropping the series.
    pub(crate) unparsed: Unparsed,
}

/// A set of [`ThingStatus`] values, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Unparsed(pub u16);

impl Unparsed {
    pub(crate) const THING_NAME: u16 = 1 << 0;
    pub(crate) const IMSI: u16 = 1 << 1;
    pub const MSISDN: u16 = 1 << 2;
    pub(crate) const PROVISION_STATUS: u16 = 1 << 3;
    pub const CONNECTED: u16 = 1 << 4;
    pub(crate) const ACTIVE_SESSIONS: u16 = 1 << 5;
    pub(crate) const UPLINK: u16 = 1 << 6;
    pub(crate) const DOWNLINK: u16 = 1 << 7;
    pub(crate) const LAST_CONNECTION: u16 = 1 << 8;
    pub(crate) const LAST_DISCONNECTION: u16 = 1 << 9;
    pub(crate) const SESSION_START: u16 = 1 << 10;

    pub fn has(self, bits: u16) -> bool {
        self.0 & bits != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn mark(&mut self, bits: u16) {
        self.0 |= bits;
    }

    pub(super) fn mark_if(&mut self, condition: bool, bits: u16) {
        if condition {
            self.0 |= bits;
        }
    }
}

/// Takes the previous value of a field not understood this time; a field with
/// no good predecessor keeps what this answer offered.
fn keep<T>(unparsed: Unparsed, bit: u16, value: &mut Option<T>, previous: Option<T>) {
    if unparsed.has(bit) && previous.is_some() {
        *value = previous;
    }
}

impl ThingStatus {
    /// Fills the values this status could not understand from `previous`.
    pub(crate) fn keep_last_good(&mut self, previous: &ThingStatus) {
        let u = self.unparsed;
        if u.has(Unparsed::THING_NAME) {
            self.thing_name.clone_from(&previous.thing_name);
        }
        if u.has(Unparsed::IMSI) {
            self.imsi.clone_from(&previous.imsi);
        }
        if u.has(Unparsed::MSISDN) {
            self.msisdn.clone_from(&previous.msisdn);
        }
        if u.has(Unparsed::PROVISION_STATUS) {
            self.provision_status.clone_from(&previous.provision_status);
        }
        keep(
            u,
            Unparsed::UPLINK,
            &mut self.uplink_throughput,
            previous.uplink_throughput,
        );
        keep(
            u,
            Unparsed::DOWNLINK,
            &mut self.downlink_throughput,
            previous.downlink_throughput,
        );
        keep(
            u,
            Unparsed::LAST_CONNECTION,
            &mut self.last_connection,
            previous.last_connection,
        );
        keep(
            u,
            Unparsed::LAST_DISCONNECTION,
            &mut self.last_disconnection,
            previous.last_disconnection,
        );
        keep(
            u,
            Unparsed::SESSION_START,
            &mut self.session_start,
            previous.session_start,
        );
        keep(
            u,
            Unparsed::ACTIVE_SESSIONS,
            &mut self.active_sessions,
            previous.active_sessions,
        );
        keep(
            u,
            Unparsed::CONNECTED,
            &mut self.connected,
            previous.connected,
        );
    }
}

/// A value that could not be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unparseable;

/// A field of the answer that could not be understood; the name is the API's
/// field name and becomes the `field` label of `monogoto_parse_errors_total`.
pub(crate) type FieldError = &'static str;

/// One decoded page of `GET /thing/status`.
#[derive(Debug, Default, PartialEq)]
pub struct StatusPage {
    /// Entries in `Data`, understood or not: paging advances `offset` by this.
    pub returned: usize,
    pub things: Vec<ThingStatus>,
    pub field_errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("API answered Success={success}: {message}")]
    NotSuccessful { success: String, message: String },
    #[error("answer has no Data array")]
    NoData,
    #[error("answer is not a JSON array of Things")]
    NotAList,
}

/// One decoded page of `GET /things`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ThingsPage {
    /// Entries in the listing, understood or not: paging advances by this.
    pub returned: usize,
    /// The ICCIDs listed, canonical, in order.
    pub iccids: Vec<String>,
    /// For each of them, what its `State` says: inactive (SUSPENDED,
    /// RETIRED) or not; `None` when the listing does not say.
    pub inactive: Vec<Option<bool>>,
    /// `ThingId` for an entry without an ICCID, `Data` for one that is not
    /// an object, as in a status answer.
    pub field_errors: Vec<FieldError>,
}

/// A Thing as a `GET /things` listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedThing {
    pub iccid: String,
    /// What its `State` says: inactive (SUSPENDED, RETIRED) or not; `None`
    /// when the listing does not say.
    pub inactive: Option<bool>,
}

impl ThingsPage {
    /// The Things listed, with what the listing says of their state.
    pub fn things(self) -> Vec<ListedThing> {
        self.iccids
            .into_iter()
            .zip(self.inactive.into_iter().chain(std::iter::repeat(None)))
            .map(|(iccid, inactive)| ListedThing { iccid, inactive })
            .collect()
    }
}

/// A provisioning status whose SIM cannot connect, so that it is polled rarely.
pub(crate) fn is_inactive_status(status: &str) -> bool {
    let status = status.trim();
    status.eq_ignore_ascii_case("SUSPENDED") || status.eq_ignore_ascii_case("RETIRED")
}

/// The API's field names a `FieldError` can name, defined once: the decoder
/// matches keys against them and reports its errors with them.
pub mod field {
    pub(crate) const THING_ID: &str = "ThingId";
    pub(crate) const THING_NAME: &str = "ThingName";
    pub(crate) const ACTIVE_IMSI: &str = "ActiveIMSI";
    pub const MSISDN: &str = "MSISDN";
    pub(crate) const PROVISION_STATUS: &str = "ProvisionStatus";
    pub(crate) const CONNECTION_STATUS: &str = "ConnectionStatus";
    pub(crate) const ACTIVE_SESSIONS: &str = "ActiveSessions";
    pub(crate) const UPLINK_THROUGHPUT: &str = "UplinkThroughput";
    pub(crate) const DOWNLINK_THROUGHPUT: &str = "DownlinkThroughput";
    pub(crate) const LAST_CONNECTED_TIME: &str = "LastConnectedTime";
    pub(crate) const LAST_CONNECTION_TIME: &str = "LastConnectionTime";
    pub(crate) const LAST_DISCONNECTION_TIME: &str = "LastDisconnectionTime";
    pub(crate) const DATA: &str = "Data";
}

/// Every [`FieldError`] there can be: the values of the `field` label of
/// `monogoto_parse_errors_total`.
pub(crate) const PARSE_ERROR_FIELDS: &[FieldError] = &[
    field::THING_ID,
    field::THING_NAME,
    field::ACTIVE_IMSI,
    field::MSISDN,
    field::PROVISION_STATUS,
    field::CONNECTION_STATUS,
    field::ACTIVE_SESSIONS,
    field::UPLINK_THROUGHPUT,
    field::DOWNLINK_THROUGHPUT,
    field::LAST_CONNECTED_TIME,
    field::LAST_CONNECTION_TIME,
    field::LAST_DISCONNECTION_TIME,
    field::DATA,
];
