//! ICWS JSON: request bodies, response bodies and messages. Nothing outside this crate sees
//! these shapes.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) const MEDIA_TYPE: &str = "application/vnd.inin.icws+json";
pub(crate) const CONTENT_TYPE: &str = "application/vnd.inin.icws+json;charset=utf-8";
pub(crate) const CSRF_HEADER: &str = "ININ-ICWS-CSRF-Token";
pub(crate) const SESSION_HEADER: &str = "ININ-ICWS-Session-ID";

pub(crate) const OBJECT_ID: &str = "SalesforceObjectRouting";
pub(crate) const ROUTE_EVENT: &str = "RouteCase";
pub(crate) const RESULT_EVENT: &str = "RouteCaseResult";
pub(crate) const CONTRACT_VERSION: &str = "1";

/// Subscription id prefix of a workgroup queue watch: `sors-wg-<workgroup>`.
pub(crate) const QUEUE_SUB_PREFIX: &str = "sors-wg-";

/// The attributes watched on every workgroup queue (routing.md §4, plus state and agent).
pub const WATCHED_ATTRIBUTES: [&str; 12] = [
    "SF_RoutingEntryId",
    "SF_CaseId",
    "SF_CaseNumber",
    "Eic_WorkgroupName",
    "Eic_RemoteName",
    "Eic_RemoteAddress",
    "Eic_Subject",
    "Eic_AcdSkillSet",
    "SF_URLPop",
    "SF_SuppressEmailForm",
    "Eic_State",
    "Eic_UserName",
];

pub(crate) fn connect_body(application_name: &str, user: &str, password: &str) -> Value {
    json!({
        "__type": "urn:inin.com:connection:icAuthConnectionRequestSettings",
        "applicationName": application_name,
        "userID": user,
        "password": password,
    })
}

pub(crate) fn queue_subscription_body(workgroup: &str) -> Value {
    json!({
        "queueIds": [{ "queueType": 2, "queueName": workgroup }],
        "attributeNames": WATCHED_ATTRIBUTES,
    })
}

pub(crate) fn handler_sent_subscription_body() -> Value {
    json!({ "headers": [{ "objectId": OBJECT_ID, "eventIds": [RESULT_EVENT] }] })
}

/// The `200`/`201` body of `POST /icws/connection` (only what the client uses).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ConnectionResponse {
    pub csrf_token: Option<String>,
    pub session_id: Option<String>,
    pub alternate_host_list: Vec<String>,
    pub features: Vec<Feature>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Feature {
    pub feature_id: String,
    pub version: i64,
}

/// The ICWS error body, plus the 503 `alternateHostList`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ErrorBody {
    pub error_id: Option<String>,
    pub message: Option<String>,
    pub alternate_host_list: Vec<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> ErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// `GET /icws/{sid}/connection`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ConnectionSettings {
    pub connection_state: Option<i64>,
    pub reason: Option<String>,
}

/// `connectionState` / `newConnectionState` value meaning "down".
pub(crate) const CONNECTION_DOWN: i64 = 2;

/// One item of a configuration list (`{"items":[{"configurationId":{...}, ...}]}`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigItem {
    pub configuration_id: ConfigurationId,
    #[serde(default)]
    pub has_queue: Option<bool>,
    #[serde(default)]
    pub queue_type: Option<i64>,
    #[serde(default)]
    pub is_acd_email_routing_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigurationId {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl ConfigurationId {
    /// The object's name: `id` (ICWS uses the name as id for workgroups and skills),
    /// `displayName` when `id` is missing.
    pub(crate) fn name(&self) -> Option<&str> {
        self.id
            .as_deref()
            .or(self.display_name.as_deref())
            .filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfigList {
    #[serde(default)]
    pub items: Vec<ConfigItem>,
}

/// `queueType` of an ACD workgroup.
pub(crate) const QUEUE_TYPE_ACD: i64 = 5;

/// Interaction attributes from `GET /icws/{sid}/interactions/{id}`: `{"attributes":{...}}` or a
/// flat dictionary. Non-string scalar values are turned into strings; nulls and nested values
/// are dropped.
pub(crate) fn parse_interaction_attributes(v: &Value) -> Option<HashMap<String, String>> {
    let obj = v.as_object()?;
    let dict = match obj.get("attributes") {
        Some(Value::Object(inner)) => inner,
        _ => obj,
    };
    Some(
        dict.iter()
            .filter_map(|(k, v)| scalar_string(v).map(|s| (k.clone(), s)))
            .collect(),
    )
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A message from the session's queue, reduced to what the client acts on.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    ConnectionDown {
        reason: String,
    },
    Queue(QueueContents),
    RouteResult {
        entry_id: String,
        ok: bool,
        detail: String,
    },
    SubscriptionState {
        subscription_id: Option<String>,
        state: i64,
    },
    /// A message type the client does not use (or a connection message that is not "down").
    Ignored(String),
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueContents {
    #[serde(default = "yes")]
    pub is_delta: bool,
    pub subscription_id: String,
    #[serde(default)]
    pub interactions_added: Vec<QueueInteraction>,
    #[serde(default)]
    pub interactions_changed: Vec<QueueInteraction>,
    #[serde(default)]
    pub interactions_removed: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueInteraction {
    pub interaction_id: String,
    #[serde(default)]
    pub attributes: HashMap<String, Option<String>>,
    #[serde(default)]
    pub conference_parent_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionStateChange {
    new_connection_state: i64,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandlerSent {
    object_id: String,
    event_id: String,
    data: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionStateMsg {
    state: i64,
    #[serde(default)]
    subscription_id: Option<String>,
}

/// Why a message was not understood (logged, then the message is skipped).
#[derive(Debug, PartialEq)]
pub(crate) struct Malformed(pub String);

/// Turns one message object into a [`Message`].
pub(crate) fn parse_message(v: Value) -> Result<Message, Malformed> {
    let ty = v
        .get("__type")
        .and_then(Value::as_str)
        .ok_or_else(|| Malformed("message without __type".into()))?
        .to_owned();
    let bad = |e: serde_json::Error| Malformed(format!("{ty}: {e}"));
    match ty.as_str() {
        "urn:inin.com:connection:connectionStateChangeMessage" => {
            let m: ConnectionStateChange = serde_json::from_value(v).map_err(bad)?;
            if m.new_connection_state == CONNECTION_DOWN {
                Ok(Message::ConnectionDown {
                    reason: m.reason.unwrap_or_else(|| "connection down".into()),
                })
            } else {
                Ok(Message::Ignored(ty))
            }
        }
        "urn:inin.com:queues:queueContentsMessage" => {
            Ok(Message::Queue(serde_json::from_value(v).map_err(bad)?))
        }
        "urn:inin.com:system:handlerSentNotificationMessage" => {
            let m: HandlerSent = serde_json::from_value(v).map_err(bad)?;
            if !m.object_id.eq_ignore_ascii_case(OBJECT_ID)
                || !m.event_id.eq_ignore_ascii_case(RESULT_EVENT)
            {
                return Ok(Message::Ignored(format!(
                    "{ty} {}/{}",
                    m.object_id, m.event_id
                )));
            }
            match m.data.as_slice() {
                [version, entry, status, rest @ ..] if version == CONTRACT_VERSION => {
                    let ok = match status.as_str() {
                        "ok" => true,
                        "error" => false,
                        other => {
                            return Err(Malformed(format!("{RESULT_EVENT} status {other:?}")));
                        }
                    };
                    let detail = rest.first().cloned().unwrap_or_default();
                    if entry.is_empty() || (ok && detail.is_empty()) {
                        return Err(Malformed(format!(
                            "{RESULT_EVENT} without entry id or interaction id"
                        )));
                    }
                    Ok(Message::RouteResult {
                        entry_id: entry.clone(),
                        ok,
                        detail,
                    })
                }
                _ => Err(Malformed(format!(
                    "{RESULT_EVENT} data is not [\"{CONTRACT_VERSION}\", entryId, status, ...]"
                ))),
            }
        }
        "urn:inin.com:messaging:subscriptionStateMessage"
        | "urn:inin.com:queues:queueSubscriptionStateMessage" => {
            let m: SubscriptionStateMsg = serde_json::from_value(v).map_err(bad)?;
            Ok(Message::SubscriptionState {
                subscription_id: m.subscription_id,
                state: m.state,
            })
        }
        _ => Ok(Message::Ignored(ty)),
    }
}

/// Splits a message payload (a poll answer or one SSE event's data) into message objects: a
/// JSON array yields its items; otherwise every JSON value in the text (one or several,
/// separated by white space) is one message. Text that is not JSON is reported.
pub(crate) fn split_payload(text: &str) -> (Vec<Value>, Option<Malformed>) {
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match item {
            Ok(Value::Array(items)) => out.extend(items),
            Ok(v) => out.push(v),
            Err(e) => return (out, Some(Malformed(format!("not JSON: {e}")))),
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_results() {
        let ok = json!({"__type":"urn:inin.com:system:handlerSentNotificationMessage","isDelta":false,
            "objectId":"salesforceobjectrouting","eventId":"RouteCaseResult","data":["1","a0X1","ok","1001"]});
        assert_eq!(
            parse_message(ok).unwrap(),
            Message::RouteResult {
                entry_id: "a0X1".into(),
                ok: true,
                detail: "1001".into()
            }
        );
        let err = json!({"__type":"urn:inin.com:system:handlerSentNotificationMessage",
            "objectId":"SalesforceObjectRouting","eventId":"RouteCaseResult","data":["1","a0X2","error","no such workgroup"]});
        assert_eq!(
            parse_message(err).unwrap(),
            Message::RouteResult {
                entry_id: "a0X2".into(),
                ok: false,
                detail: "no such workgroup".into()
            }
        );
        for data in [
            json!(["2", "a", "ok", "1"]),
            json!(["1", "a"]),
            json!(["1", "a", "maybe", "x"]),
            json!(["1", "a", "ok"]),
        ] {
            let m = json!({"__type":"urn:inin.com:system:handlerSentNotificationMessage",
                "objectId":"SalesforceObjectRouting","eventId":"RouteCaseResult","data":data});
            assert!(parse_message(m).is_err(), "{data}");
        }
        let other = json!({"__type":"urn:inin.com:system:handlerSentNotificationMessage",
            "objectId":"Other","eventId":"X","data":[]});
        assert!(matches!(parse_message(other), Ok(Message::Ignored(_))));
    }

    #[test]
    fn connection_state() {
        let down = json!({"__type":"urn:inin.com:connection:connectionStateChangeMessage","isDelta":true,
            "previousConnectionState":1,"newConnectionState":2,"reason":"switchover","shouldReconnect":true});
        assert_eq!(
            parse_message(down).unwrap(),
            Message::ConnectionDown {
                reason: "switchover".into()
            }
        );
        let up = json!({"__type":"urn:inin.com:connection:connectionStateChangeMessage",
            "previousConnectionState":0,"newConnectionState":1,"reason":"up"});
        assert!(matches!(parse_message(up), Ok(Message::Ignored(_))));
    }

    #[test]
    fn malformed_messages() {
        assert!(parse_message(json!({"isDelta":true})).is_err());
        assert!(parse_message(json!([1, 2])).is_err());
        assert!(
            parse_message(json!({"__type":"urn:inin.com:queues:queueContentsMessage",
                "interactionsAdded":"nope","subscriptionId":"x"}))
            .is_err()
        );
    }

    #[test]
    fn payload_splitting() {
        let (v, e) = split_payload("[{\"a\":1},{\"b\":2}]");
        assert_eq!(v.len(), 2);
        assert!(e.is_none());
        let (v, e) = split_payload("{\"a\":1}\n{\"b\":\n2}");
        assert_eq!(v, vec![json!({"a":1}), json!({"b":2})]);
        assert!(e.is_none());
        let (v, e) = split_payload("{\"a\":1} garbage");
        assert_eq!(v.len(), 1);
        assert!(e.is_some());
        let (v, e) = split_payload("");
        assert!(v.is_empty() && e.is_none());
    }

    #[test]
    fn interaction_attribute_shapes() {
        let wrapped = json!({"attributes":{"Eic_State":"C","n":3,"x":null}});
        let flat = json!({"Eic_State":"C","n":3,"x":{"y":1}});
        for v in [wrapped, flat] {
            let m = parse_interaction_attributes(&v).unwrap();
            assert_eq!(m.get("Eic_State").map(String::as_str), Some("C"));
            assert_eq!(m.get("n").map(String::as_str), Some("3"));
            assert!(!m.contains_key("x"));
        }
        assert!(parse_interaction_attributes(&json!([1])).is_none());
    }
}
