//! Messaging: reading the session's messages (an SSE stream, or short polling when the server
//! offers no stream or refuses it), the health check beside a silent stream, and dispatching
//! each message: queue contents through the queue views, handler results and subscription
//! states to the router and the status.
//!
//! It must never reconnect, publish or clear the session, or change a subscription: when the
//! session is gone it returns the reason to the supervisor, which decides what happens next.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use sors_core::model::{InteractionId, RouteOutcome, RowId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::client::IcwsEvent;
use crate::error::IcwsError;
use crate::session::{Inner, Session, api_error, lock};
use crate::sse::SseDecoder;
use crate::views::Ignored;
use crate::wire::{self, Message};

/// Sessions reported lost by a request (`generation`, reason).
pub(crate) type LostRx = mpsc::UnboundedReceiver<(u64, String)>;

/// Why opening the SSE stream did not give a stream.
enum SseOpen {
    Lost(String),
    Fallback(String, Option<String>),
}

impl Inner {
    /// Reads messages (SSE when configured or offered, else polling) until the session is
    /// lost. Returns the reason.
    pub(crate) async fn read_messages(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        let use_sse = match self.cfg.messaging {
            crate::MessagingMode::Sse => true,
            crate::MessagingMode::Poll => false,
            crate::MessagingMode::Auto => s.sse_offered,
        };
        if use_sse {
            match until_lost(self.open_sse(s), s.generation, lost_rx).await {
                Err(reason) | Ok(Err(SseOpen::Lost(reason))) => return reason,
                Ok(Ok(resp)) => return self.read_sse(s, resp, events, lost_rx).await,
                Ok(Err(SseOpen::Fallback(why, body))) => {
                    warn!(event = "icws.sse_fallback", reason = %why, "no SSE message stream; polling instead");
                    if let Some(body) = body
                        && let Some(reason) = self.handle_payload(s, &body, events).await
                    {
                        return reason;
                    }
                }
            }
        }
        self.poll_messages(s, events, lost_rx).await
    }

    async fn open_sse(&self, s: &Session) -> Result<reqwest::Response, SseOpen> {
        let rb = self
            .session_request(
                s,
                Method::GET,
                &["messaging", "messages"],
                "text/event-stream",
            )
            .map_err(|e| SseOpen::Lost(e.to_string()))?;
        let resp = match tokio::time::timeout(self.cfg.request_timeout, rb.send()).await {
            Err(_) => return Err(SseOpen::Lost("timed out opening the message stream".into())),
            Ok(Err(e)) => {
                return Err(SseOpen::Lost(format!(
                    "message stream: {}",
                    IcwsError::transport(e)
                )));
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(SseOpen::Lost("401 on the message stream".into()));
        }
        if !status.is_success() {
            return Err(SseOpen::Fallback(
                format!("message stream answered {status}"),
                None,
            ));
        }
        let is_stream = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        if is_stream {
            return Ok(resp);
        }
        let body = tokio::time::timeout(self.cfg.request_timeout, resp.bytes()).await;
        let body = match body {
            Ok(Ok(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        };
        Err(SseOpen::Fallback(
            "server answered without an event stream".into(),
            body,
        ))
    }

    async fn read_sse(
        &self,
        s: &Arc<Session>,
        resp: reqwest::Response,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        debug!(event = "icws.sse_open", server = %s.server, "reading messages by SSE");
        let mut stream = resp.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut health = tokio::time::interval(self.cfg.health_check_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                chunk = stream.next() => match chunk {
                    Some(Ok(bytes)) => match decoder.feed(&bytes) {
                        Ok(payloads) => {
                            for payload in payloads {
                                if let Some(reason) = self.handle_payload(s, &payload, events).await {
                                    return reason;
                                }
                            }
                        }
                        Err(_) => return "the message stream sent an oversized event".into(),
                    },
                    Some(Err(e)) => return format!("message stream failed: {}", IcwsError::transport(e)),
                    None => return "message stream closed by the server".into(),
                },
                Some((generation, reason)) = lost_rx.recv() => {
                    if generation == s.generation {
                        return reason;
                    }
                }
                _ = health.tick() => {
                    if let Some(reason) = self.health_check(s).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// `GET …/connection`: `Some(reason)` when the session is gone.
    async fn health_check(&self, s: &Session) -> Option<String> {
        match self
            .send(s, Method::GET, &["connection"], &[], None, wire::MEDIA_TYPE)
            .await
        {
            Err(e) => Some(format!("health check failed: {e}")),
            Ok((StatusCode::UNAUTHORIZED, _)) => Some("401 on the health check".into()),
            Ok((status, bytes)) if status.is_success() => {
                let settings: wire::ConnectionSettings =
                    serde_json::from_slice(&bytes).unwrap_or_default();
                (settings.connection_state == Some(wire::CONNECTION_DOWN)).then(|| {
                    format!(
                        "connection down: {}",
                        settings.reason.unwrap_or_else(|| "no reason given".into())
                    )
                })
            }
            Ok((status, bytes)) => {
                warn!(event = "icws.health_check_failed", error = %api_error(status, &bytes), "session health check failed");
                None
            }
        }
    }

    async fn poll_messages(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
    ) -> String {
        debug!(event = "icws.polling", server = %s.server, "reading messages by short polling");
        loop {
            let poll = self.send(
                s,
                Method::GET,
                &["messaging", "messages"],
                &[],
                None,
                wire::MEDIA_TYPE,
            );
            match until_lost(poll, s.generation, lost_rx).await {
                Err(reason) => return reason,
                Ok(Err(e)) => return format!("message poll failed: {e}"),
                Ok(Ok((StatusCode::UNAUTHORIZED, _))) => return "401 on the message poll".into(),
                Ok(Ok((status, bytes))) if status.is_success() => {
                    let text = String::from_utf8_lossy(&bytes);
                    if let Some(reason) = self.handle_payload(s, &text, events).await {
                        return reason;
                    }
                }
                Ok(Ok((status, bytes))) => {
                    warn!(event = "icws.poll_failed", error = %api_error(status, &bytes), "message poll failed");
                }
            }
            let pause = tokio::time::sleep(self.cfg.poll_interval);
            if let Err(reason) = until_lost(pause, s.generation, lost_rx).await {
                return reason;
            }
        }
    }

    /// Handles one payload (poll answer or SSE event data); `Some(reason)` ends the session.
    async fn handle_payload(
        &self,
        s: &Session,
        text: &str,
        events: &mpsc::Sender<IcwsEvent>,
    ) -> Option<String> {
        let (values, malformed) = wire::split_payload(text);
        for value in values {
            let message = match wire::parse_message(value) {
                Ok(m) => m,
                Err(e) => {
                    warn!(event = "icws.malformed_message", error = %e.0, "skipping a malformed ICWS message");
                    continue;
                }
            };
            match message {
                Message::ConnectionDown { reason } => {
                    return Some(format!("connection down: {reason}"));
                }
                Message::Queue(q) => {
                    let applied = lock(&self.queues).apply(q);
                    applied.ignored.iter().for_each(log_ignored);
                    for event in applied.events {
                        let _ = events.send(event).await;
                    }
                }
                Message::RouteResult {
                    entry_id,
                    ok,
                    detail,
                } => {
                    let outcome = if ok {
                        RouteOutcome::Created(InteractionId::new(detail))
                    } else {
                        RouteOutcome::Error(detail)
                    };
                    debug!(event = "icws.route_result", entry_id = %entry_id, ok, "RouteCaseResult received");
                    let _ = events
                        .send(IcwsEvent::RouteResult {
                            entry_id: RowId::new(entry_id),
                            outcome,
                        })
                        .await;
                }
                Message::SubscriptionState {
                    subscription_id,
                    state,
                } => {
                    if state >= 2 {
                        warn!(event = "icws.subscription_state", subscription = ?subscription_id, state, "a subscription is suspended or faulted");
                        self.set_last_error(format!(
                            "subscription {} state {state}",
                            subscription_id.as_deref().unwrap_or("?")
                        ));
                    }
                }
                Message::Ignored(kind) => {
                    debug!(event = "icws.message_ignored", kind = %kind, server = %s.server, "ignoring message");
                }
            }
        }
        if let Some(e) = malformed {
            warn!(event = "icws.malformed_message", error = %e.0, "skipping a malformed ICWS payload");
        }
        None
    }
}

/// Runs `fut` unless the session of `generation` is reported lost first.
async fn until_lost<F: Future>(
    fut: F,
    generation: u64,
    lost_rx: &mut LostRx,
) -> Result<F::Output, String> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            Some((g, reason)) = lost_rx.recv() => {
                if g == generation {
                    return Err(reason);
                }
            }
        }
    }
}

fn log_ignored(ignored: &Ignored) {
    match ignored {
        Ignored::UnknownSubscription(subscription) => {
            warn!(event = "icws.unknown_subscription", subscription = %subscription, "queue message for an unknown subscription");
        }
        Ignored::NotWatched(workgroup) => {
            debug!(
                event = "icws.stale_queue_message",
                workgroup = workgroup.as_str(),
                "queue message for a workgroup no longer watched"
            );
        }
        Ignored::ChangeForUnknown {
            workgroup,
            interaction_id,
        } => {
            debug!(event = "icws.change_for_unknown", workgroup = workgroup.as_str(), interaction_id = %interaction_id, "change for an interaction not in the view");
        }
    }
}
