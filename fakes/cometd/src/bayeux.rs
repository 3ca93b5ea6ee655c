//! Bayeux message handling: one incoming message in, its reply messages out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::state::{Client, Held, QueuedEvent, ReplayFrom};
use crate::{ForgetAdvice, Shared};

pub(crate) const LONG_POLLING: &str = "long-polling";

/// What the HTTP layer learned about the request that carries the messages.
pub(crate) struct RequestContext {
    /// The Authenticator accepted the request's token.
    pub authenticated: bool,
    /// The request carried a `BAYEUX_BROWSER` cookie.
    pub has_browser_cookie: bool,
}

/// Handles one message; returns the messages of the reply (events first, then the meta reply)
/// and whether it was a successful handshake (the HTTP layer then sets the cookies).
pub(crate) async fn process(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    message: &Value,
) -> (Vec<Value>, bool) {
    let Some(msg) = message.as_object() else {
        return (
            vec![error_without_channel("400::Message must be a JSON object")],
            false,
        );
    };
    let Some(channel) = msg.get("channel").and_then(Value::as_str) else {
        let mut reply = base_reply(msg, None);
        fail(&mut reply, "400::Channel name not specified");
        return (vec![Value::Object(reply)], false);
    };
    match channel {
        "/meta/handshake" => handshake(shared, ctx, msg),
        "/meta/connect" => (connect(shared, ctx, msg).await, false),
        "/meta/subscribe" => (vec![subscribe(shared, ctx, msg)], false),
        "/meta/unsubscribe" => (vec![unsubscribe(shared, ctx, msg)], false),
        "/meta/disconnect" => (vec![disconnect(shared, ctx, msg)], false),
        other => {
            let mut reply = base_reply(msg, Some(other));
            let error = if other.starts_with("/meta/") {
                format!("400::Unknown meta channel {other}")
            } else {
                "403::Publishing is not supported by this server".to_owned()
            };
            fail(&mut reply, &error);
            (vec![Value::Object(reply)], false)
        }
    }
}

/// A reply that echoes the request's channel (or the given one) and `id`.
fn base_reply(msg: &Map<String, Value>, channel: Option<&str>) -> Map<String, Value> {
    let mut reply = Map::new();
    let channel = channel
        .map(|c| Value::String(c.to_owned()))
        .or_else(|| msg.get("channel").cloned());
    if let Some(channel) = channel {
        reply.insert("channel".into(), channel);
    }
    if let Some(id) = msg.get("id") {
        reply.insert("id".into(), id.clone());
    }
    reply
}

fn fail(reply: &mut Map<String, Value>, error: &str) {
    reply.insert("successful".into(), Value::Bool(false));
    reply.insert("error".into(), Value::String(error.to_owned()));
}

pub(crate) fn error_without_channel(error: &str) -> Value {
    json!({"successful": false, "error": error})
}

fn client_id(msg: &Map<String, Value>) -> Option<&str> {
    msg.get("clientId").and_then(Value::as_str)
}

fn auth_invalid(msg: &Map<String, Value>) -> Value {
    let mut reply = base_reply(msg, None);
    if let Some(id) = client_id(msg) {
        reply.insert("clientId".into(), id.into());
    }
    fail(&mut reply, "401::Authentication invalid");
    reply.insert("advice".into(), json!({"reconnect": "none", "interval": 0}));
    Value::Object(reply)
}

fn unknown_client(msg: &Map<String, Value>, advice: ForgetAdvice) -> Value {
    let mut reply = base_reply(msg, None);
    fail(&mut reply, "403::Unknown client");
    let reconnect = match advice {
        ForgetAdvice::Handshake => "handshake",
        ForgetAdvice::None => "none",
    };
    reply.insert(
        "advice".into(),
        json!({"reconnect": reconnect, "interval": 0}),
    );
    Value::Object(reply)
}

fn new_client_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(27)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

fn handshake(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    msg: &Map<String, Value>,
) -> (Vec<Value>, bool) {
    let mut reply = base_reply(msg, None);
    if !ctx.authenticated {
        tracing::warn!("handshake denied: invalid token");
        fail(&mut reply, "403::Handshake denied");
        reply.insert(
            "ext".into(),
            json!({"sfdc": {"failureReason": "401::Authentication invalid"}}),
        );
        reply.insert("advice".into(), json!({"reconnect": "none"}));
        return (vec![Value::Object(reply)], false);
    }
    if let Some(types) = msg
        .get("supportedConnectionTypes")
        .and_then(Value::as_array)
        && !types.iter().any(|t| t.as_str() == Some(LONG_POLLING))
    {
        let offered: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
        fail(
            &mut reply,
            &format!("400::Invalid connection type {{{}}}", offered.join(",")),
        );
        return (vec![Value::Object(reply)], false);
    }

    let id = new_client_id();
    {
        let mut state = shared.lock();
        state.expire_clients(Instant::now());
        state.add_client(
            id.clone(),
            Client::new(Some(Instant::now() + shared.config.reconnect_expiry)),
        );
        state.counters.handshakes += 1;
    }
    tracing::info!(client_id = %id, "handshake");
    reply.insert("successful".into(), Value::Bool(true));
    reply.insert("clientId".into(), Value::String(id));
    reply.insert("version".into(), "1.0".into());
    reply.insert("minimumVersion".into(), "1.0".into());
    reply.insert("supportedConnectionTypes".into(), json!([LONG_POLLING]));
    reply.insert(
        "ext".into(),
        json!({"replay": true, "payload.format": true}),
    );
    (vec![Value::Object(reply)], true)
}

/// Turns queued events into event messages for `client_id` and counts them as delivered.
fn event_messages(queue: Vec<QueuedEvent>, client_id: &str) -> Vec<Value> {
    queue
        .into_iter()
        .map(|e| json!({"channel": &*e.channel, "clientId": client_id, "data": *e.data}))
        .collect()
}

fn connect_success(msg: &Map<String, Value>, id: &str) -> Map<String, Value> {
    let mut reply = base_reply(msg, None);
    reply.insert("clientId".into(), id.into());
    reply.insert("successful".into(), Value::Bool(true));
    reply
}

/// The hold the client asks for in `advice.timeout` (ms), capped by the configured hold.
fn hold_for(shared: &Shared, msg: &Map<String, Value>) -> Duration {
    let asked = msg
        .get("advice")
        .and_then(|a| a.get("timeout"))
        .and_then(Value::as_u64)
        .map(Duration::from_millis);
    asked.map_or(shared.config.connect_hold, |t| {
        t.min(shared.config.connect_hold)
    })
}

async fn connect(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    msg: &Map<String, Value>,
) -> Vec<Value> {
    if !ctx.authenticated {
        return vec![auth_invalid(msg)];
    }
    let (id, token, wake) = {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let now = Instant::now();
        state.expire_clients(now);
        let id = client_id(msg);
        let advice = state.unknown_advice(id);
        // The token this connect gets if it is held.
        let token = state.next_token + 1;
        let Some((id, client)) = id.and_then(|id| state.client_mut(id).map(|c| (id, c))) else {
            return vec![unknown_client(msg, advice)];
        };
        if !ctx.has_browser_cookie {
            let mut reply = base_reply(msg, None);
            reply.insert("clientId".into(), id.into());
            fail(
                &mut reply,
                &format!(
                    "400::Client {id} has established a session, but no BAYEUX_BROWSER cookie present"
                ),
            );
            return vec![Value::Object(reply)];
        }
        if let Some(kind) = msg.get("connectionType").and_then(Value::as_str)
            && kind != LONG_POLLING
        {
            let mut reply = base_reply(msg, None);
            reply.insert("clientId".into(), id.into());
            fail(
                &mut reply,
                &format!("400::Invalid connection type {{{kind}}}"),
            );
            return vec![Value::Object(reply)];
        }
        // A new connect always releases the one held before it.
        if let Some(previous) = client.held.take() {
            previous.wake.notify_one();
        }
        let first = !client.connected;
        if first || !client.queue.is_empty() {
            client.connected = true;
            let events = event_messages(std::mem::take(&mut client.queue), id);
            state.set_expiry(id, Some(now + shared.config.reconnect_expiry));
            state.counters.delivered += events.len() as u64;
            let mut reply = connect_success(msg, id);
            if first {
                let timeout =
                    u64::try_from(shared.config.connect_hold.as_millis()).unwrap_or(u64::MAX);
                reply.insert(
                    "advice".into(),
                    json!({"interval": 0, "timeout": timeout, "reconnect": "retry"}),
                );
            }
            let mut out = events;
            out.push(Value::Object(reply));
            return out;
        }
        let wake = Arc::new(Notify::new());
        client.held = Some(Held {
            token,
            wake: wake.clone(),
        });
        state.next_token = token;
        state.set_expiry(id, None);
        (id, token, wake)
    };
    let guard = HeldGuard {
        shared,
        client_id: id,
        token,
    };
    // Woken early by an event, a newer connect, or the client being forgotten.
    let _timed_out = tokio::time::timeout(hold_for(shared, msg), wake.notified()).await;
    let out = finish_held(shared, msg, id, token);
    drop(guard);
    out
}

/// Answers a held connect once it wakes up or times out.
fn finish_held(shared: &Shared, msg: &Map<String, Value>, id: &str, token: u64) -> Vec<Value> {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let advice = state.unknown_advice(Some(id));
    let Some(client) = state.client_mut(id) else {
        tracing::debug!(client_id = %id, "held connect answered: client is gone");
        return vec![unknown_client(msg, advice)];
    };
    let ours = client.held.as_ref().is_some_and(|h| h.token == token);
    if !ours {
        // A newer connect took over; this one ends empty-handed.
        return vec![Value::Object(connect_success(msg, id))];
    }
    client.held = None;
    let events = event_messages(std::mem::take(&mut client.queue), id);
    state.set_expiry(id, Some(Instant::now() + shared.config.reconnect_expiry));
    state.counters.delivered += events.len() as u64;
    let mut out = events;
    out.push(Value::Object(connect_success(msg, id)));
    out
}

/// Makes sure a held connect whose HTTP request went away does not keep the client alive forever.
struct HeldGuard<'a> {
    shared: &'a Shared,
    client_id: &'a str,
    token: u64,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(client) = state.client_mut(self.client_id)
            && client.held.as_ref().is_some_and(|h| h.token == self.token)
        {
            client.held = None;
            let at = Instant::now() + self.shared.config.reconnect_expiry;
            state.set_expiry(self.client_id, Some(at));
        }
    }
}

/// The channel without a `?filter` query string: the key of the replay map and of the log.
fn base_channel(subscription: &str) -> &str {
    subscription
        .split_once('?')
        .map_or(subscription, |(base, _)| base)
}

/// Java's `Map.toString()` of the replay map, as Salesforce shows it in its error text.
fn render_replay_map(map: &Map<String, Value>) -> String {
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", entries.join(", "))
}

fn invalid_replay_id(shown: &str) -> String {
    format!(
        "400::The replayId {{{shown}}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events."
    )
}

fn subscribe(shared: &Arc<Shared>, ctx: &RequestContext, msg: &Map<String, Value>) -> Value {
    if !ctx.authenticated {
        return auth_invalid(msg);
    }
    let mut reply = base_reply(msg, None);
    let id = client_id(msg);
    {
        let mut state = shared.lock();
        state.expire_clients(Instant::now());
        if id.is_none_or(|id| state.client(id).is_none()) {
            return unknown_client(msg, state.unknown_advice(id));
        }
    }
    if let Some(id) = id {
        reply.insert("clientId".into(), id.into());
    }
    let subscription = match msg.get("subscription") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            fail(&mut reply, "400::Channel name not specified");
            return Value::Object(reply);
        }
    };
    reply.insert("subscription".into(), subscription.into());
    if !subscription.starts_with('/') {
        fail(
            &mut reply,
            "400::Channel subscriptions must start with a leading '/'",
        );
        return Value::Object(reply);
    }
    let channel = base_channel(subscription);
    if !(shared.channels)(channel) {
        fail(
            &mut reply,
            &format!("400::The channel you requested to subscribe to does not exist {{{channel}}}"),
        );
        return Value::Object(reply);
    }
    let from = match msg
        .get("ext")
        .and_then(|e| e.get("replay"))
        .and_then(Value::as_object)
    {
        None => ReplayFrom::New,
        Some(map) => match map.get(channel) {
            None => {
                fail(
                    &mut reply,
                    &format!(
                        "400::The replayId for channel {{{channel}}} wasn't found using the provided replay ID map {{{}}}. Ensure that the channel name you provided in the replay map is valid and matches the channel name used for subscribing.",
                        render_replay_map(map)
                    ),
                );
                return Value::Object(reply);
            }
            Some(value) => match value.as_i64() {
                Some(n) => ReplayFrom::from_id(n),
                None => {
                    fail(&mut reply, &invalid_replay_id(&value.to_string()));
                    return Value::Object(reply);
                }
            },
        },
    };

    let mut state = shared.lock();
    let now = Instant::now();
    state.log.purge(now, shared.config.retention);
    let replayed = match state.log.replay(channel, from) {
        Ok(events) => events,
        Err(_) => {
            let shown = match from {
                ReplayFrom::After(n) => n.to_string(),
                ReplayFrom::New => "-1".into(),
                ReplayFrom::All => "-2".into(),
            };
            fail(&mut reply, &invalid_replay_id(&shown));
            return Value::Object(reply);
        }
    };
    let advice = state.unknown_advice(id);
    let Some(id) = id.filter(|id| state.client(id).is_some()) else {
        // The client was forgotten while the channel was being checked.
        return unknown_client(msg, advice);
    };
    state.subscribe(id, channel);
    let replayed_count = replayed.len();
    if let Some(client) = state.client_mut(id) {
        let shared_channel: Arc<str> = Arc::from(channel);
        client
            .queue
            .extend(replayed.into_iter().map(|data| QueuedEvent {
                channel: shared_channel.clone(),
                data,
            }));
        if replayed_count > 0 {
            client.wake();
        }
    }
    tracing::info!(client_id = ?id, channel, replay = ?from, replayed = replayed_count, "subscribed");
    reply.insert("successful".into(), Value::Bool(true));
    Value::Object(reply)
}

fn unsubscribe(shared: &Arc<Shared>, ctx: &RequestContext, msg: &Map<String, Value>) -> Value {
    if !ctx.authenticated {
        return auth_invalid(msg);
    }
    let id = client_id(msg);
    let mut state = shared.lock();
    state.expire_clients(Instant::now());
    let advice = state.unknown_advice(id);
    let Some(id) = id.filter(|id| state.client(id).is_some()) else {
        return unknown_client(msg, advice);
    };
    let mut reply = base_reply(msg, None);
    reply.insert("clientId".into(), id.into());
    let Some(subscription) = msg.get("subscription").and_then(Value::as_str) else {
        fail(&mut reply, "400::Channel name not specified");
        return Value::Object(reply);
    };
    let channel = base_channel(subscription);
    state.unsubscribe(id, channel);
    reply.insert("subscription".into(), subscription.into());
    reply.insert("successful".into(), Value::Bool(true));
    Value::Object(reply)
}

fn disconnect(shared: &Arc<Shared>, ctx: &RequestContext, msg: &Map<String, Value>) -> Value {
    if !ctx.authenticated {
        return auth_invalid(msg);
    }
    let id = client_id(msg);
    let mut state = shared.lock();
    state.expire_clients(Instant::now());
    let advice = state.unknown_advice(id);
    let Some((id, client)) = id.and_then(|id| state.remove_client(id).map(|c| (id, c))) else {
        return unknown_client(msg, advice);
    };
    client.wake();
    tracing::info!(client_id = %id, "disconnect");
    let mut reply = base_reply(msg, None);
    reply.insert("clientId".into(), id.into());
    reply.insert("successful".into(), Value::Bool(true));
    Value::Object(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_channel_strips_the_filter() {
        assert_eq!(base_channel("/topic/A?Status__c=New"), "/topic/A");
        assert_eq!(base_channel("/topic/A"), "/topic/A");
    }

    #[test]
    fn replay_map_is_rendered_like_java() {
        let map = json!({"/topic/B": -1, "/topic/C": 42});
        let map = map.as_object().cloned().unwrap_or_default();
        assert_eq!(render_replay_map(&map), "{/topic/B=-1, /topic/C=42}");
        assert_eq!(render_replay_map(&Map::new()), "{}");
    }

    #[test]
    fn client_ids_are_random_lowercase() {
        let a = new_client_id();
        let b = new_client_id();
        assert_eq!(a.len(), 27);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }
}
