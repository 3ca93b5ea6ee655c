//! The domain vocabulary shared by the routing core and the two protocol clients.
//!
//! These types carry no protocol knowledge: the Salesforce client turns Salesforce JSON into
//! them, the ICWS client turns ICWS JSON into them, and the routing rules work on them alone.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// Salesforce record id of a routing-table row (`Object_Routing_Queue__c`).
    RowId
);
id_type!(
    /// Salesforce record id of a Case.
    CaseId
);
id_type!(
    /// CIC interaction id.
    InteractionId
);

/// `Event__c` of a routing row (routing.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowEvent {
    New,
    OwnerChanged,
    QueueChanged,
    Comment,
    EmailReceived,
    AgentReply,
    CaseClosed,
    SwitchoverRecovery,
}

impl RowEvent {
    pub const ALL: [RowEvent; 8] = [
        RowEvent::New,
        RowEvent::OwnerChanged,
        RowEvent::QueueChanged,
        RowEvent::Comment,
        RowEvent::EmailReceived,
        RowEvent::AgentReply,
        RowEvent::CaseClosed,
        RowEvent::SwitchoverRecovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RowEvent::New => "New",
            RowEvent::OwnerChanged => "OwnerChanged",
            RowEvent::QueueChanged => "QueueChanged",
            RowEvent::Comment => "Comment",
            RowEvent::EmailReceived => "EmailReceived",
            RowEvent::AgentReply => "AgentReply",
            RowEvent::CaseClosed => "CaseClosed",
            RowEvent::SwitchoverRecovery => "SwitchoverRecovery",
        }
    }

    /// Parses the exact API value; anything else is `None` (the router fails such a row).
    pub fn parse(s: &str) -> Option<RowEvent> {
        RowEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Route rows ask for an interaction; the others disconnect.
    pub fn is_route(self) -> bool {
        !matches!(self, RowEvent::AgentReply | RowEvent::CaseClosed)
    }
}

impl fmt::Display for RowEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Status__c` of a routing row: `New` → `Processing` → `Processed`, or `Failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowStatus {
    New,
    Processing,
    Processed,
    Failed,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::New => "New",
            RowStatus::Processing => "Processing",
            RowStatus::Processed => "Processed",
            RowStatus::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<RowStatus> {
        [
            RowStatus::New,
            RowStatus::Processing,
            RowStatus::Processed,
            RowStatus::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, RowStatus::Processed | RowStatus::Failed)
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One routing-table row as read from Salesforce.
///
/// Fields that the router validates (`event`, `workgroup`, `skills`) are kept raw, so that a
/// malformed row reaches the routing rules and ends `Failed` with a readable reason instead of
/// being dropped by a parser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRow {
    pub id: RowId,
    /// `Case__c`; `None` when the lookup is empty (a malformed row).
    pub case_id: Option<CaseId>,
    /// `Event__c`, raw.
    pub event: String,
    pub status: RowStatus,
    /// `Salesforce_Queue_Id__c`.
    pub queue_id: Option<String>,
    /// `Workgroup__c`, raw.
    pub workgroup: String,
    /// `Skills__c`, raw (`;`-separated).
    pub skills: String,
    pub case_number: String,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
    /// `Attempts__c` (0 when blank).
    pub attempts: u32,
    /// `Interaction_Id__c`.
    pub interaction_id: Option<InteractionId>,
    /// `Error__c`.
    pub error: Option<String>,
    /// `CreatedDate`: rows of one case are handled in (`created_date`, `id`) order.
    pub created_date: DateTime<Utc>,
}

/// The current state of a case, read in one batch query before routing (routing.md §3).
/// A case that the query did not return is deleted (or invisible to the integration user).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSnapshot {
    pub id: CaseId,
    /// `OwnerId`: a queue (`00G…`) or a user (`005…`).
    pub owner_id: String,
    pub is_closed: bool,
    pub case_number: String,
    pub subject: String,
    /// The case's `ObjectRouting_Skills__c` now (raw).
    pub skills: String,
    /// `SuppliedEmail` / `SuppliedName` (Email-to-Case sender).
    pub supplied_email: String,
    pub supplied_name: String,
    /// `CreatedDate` of the case's newest `AgentReply` or `CaseClosed` routing row, whatever its
    /// status: a route row older than this was answered already, even if it arrives late (a lost
    /// push found by the sweep).
    #[serde(default)]
    pub last_closing_row_at: Option<DateTime<Utc>>,
    /// `CreatedDate` of the case's newest route row (any event but `AgentReply`/`CaseClosed`)
    /// that is not `Failed`: a closing row older than this arrives after the customer wrote
    /// again, and must not disconnect the newer interaction.
    #[serde(default)]
    pub last_route_row_at: Option<DateTime<Utc>>,
    /// The newest route row that is not `Failed` (what reconciliation judges the case by).
    #[serde(default)]
    pub last_route_row: Option<RowSummary>,
    /// The event of the newest closing row (`AgentReply` or `CaseClosed`), if any.
    #[serde(default)]
    pub last_closing_event: Option<RowEvent>,
}

/// What reconciliation needs to know of one routing row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSummary {
    pub id: RowId,
    pub status: RowStatus,
    pub workgroup: String,
    pub interaction_id: Option<InteractionId>,
    pub created_date: DateTime<Utc>,
}

/// The outcome of one row write, as the Salesforce client classifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    /// The row no longer exists (deleted): forget it.
    Gone,
    /// Salesforce could not take the write now (down, 5xx, timeout, lock, limit, session):
    /// tried again, with back-off, until it succeeds. Never a reason to fail the row.
    Retry(String),
    /// Salesforce refused this row's write for its data (a validation rule, a field): the row
    /// cannot be written as it is.
    Rejected(String),
}

/// A write to a routing row. `None` fields are left as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowUpdate {
    pub id: RowId,
    pub status: RowStatus,
    pub attempts: Option<u32>,
    pub interaction_id: Option<InteractionId>,
    /// `Error__c`: the failure reason, or a note such as "superseded".
    pub error: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// A routing row the router inserts itself (`Event__c = SwitchoverRecovery`, routing.md §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRoutingRow {
    pub case_id: CaseId,
    pub event: RowEvent,
    pub queue_id: Option<String>,
    pub workgroup: String,
    pub skills: String,
    pub case_number: String,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
}

/// An interaction present in a watched CIC workgroup queue ("live", routing.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveInteraction {
    pub id: InteractionId,
    /// `SF_CaseId`; `None` for interactions that SORS did not create.
    pub case_id: Option<CaseId>,
    /// `SF_RoutingEntryId`: the routing row that created it.
    pub entry_id: Option<RowId>,
    /// The watched workgroup queue it sits in.
    pub workgroup: String,
    /// `Eic_AcdSkillSet`.
    pub skills: String,
    /// `Eic_State` (`O` offering, `A` alerting, `C` connected, ...).
    pub state: String,
    /// The agent (user) it is assigned to, when known.
    pub agent: Option<String>,
}

/// What the router asks the CIC handler to do for one route row (routing.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub entry_id: RowId,
    pub case_id: CaseId,
    pub case_number: String,
    pub workgroup: String,
    /// Validated skill names, in order, without empties.
    pub skills: Vec<String>,
    pub subject: String,
    pub from_address: String,
    pub from_name: String,
}

/// The handler's answer (`RouteCaseResult`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteOutcome {
    Created(InteractionId),
    Error(String),
}

/// A CIC workgroup as the router needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkgroupInfo {
    pub name: String,
    /// `hasQueue && queueType == ACD && isAcdEmailRoutingActive`.
    pub acd_email: bool,
}

/// A monitored Salesforce queue and its CIC workgroup (`Interaction_Routing_Queue__c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMapping {
    pub queue_id: String,
    pub queue_name: String,
    pub workgroup: String,
}

/// The Salesforce REST and Streaming API version sors is built and tested against (the
/// default of `[salesforce] api_version`, defined only here).
pub const SALESFORCE_API_VERSION: &str = "62.0";
/// The SOAP login endpoint's version (`/services/Soap/u/{v}`): 64.0 is the last with `login()`.
pub const SALESFORCE_SOAP_API_VERSION: &str = "64.0";
