//! The supervisor: the one task that owns the session's lifecycle. It connects (with back-off
//! between failed rounds), sets up the handler-notification subscription and every queue watch,
//! publishes the session, hands over to messaging until the session is lost, then clears the
//! session and the views, tells the router and starts over; on shutdown it closes the session.
//!
//! It must never parse ICWS JSON, read messages itself or keep queue views: connecting is
//! `connect`'s, messages are `messages`', views are `views`'. It is the only writer of the
//! session cell (`Inner::session`); handles only read it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use sors_core::backoff::{Backoff, Retry};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::client::IcwsEvent;
use crate::error::IcwsError;
use crate::messages::LostRx;
use crate::session::{Inner, Session, lock};
use crate::wire;

/// A passing server error while setting up a subscription is tried again this many times in
/// all...
const BRIEF_TRIES: u32 = 3;
/// ...250 ms, then 500 ms apart.
const BRIEF_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_millis(500));

impl Inner {
    fn reconnect_backoff(&self) -> Backoff {
        Backoff::new(
            self.cfg.reconnect_backoff_base,
            self.cfg.reconnect_backoff_max,
        )
    }

    pub(crate) async fn supervise(
        self: Arc<Self>,
        events: mpsc::Sender<IcwsEvent>,
        mut lost_rx: LostRx,
    ) {
        let mut generation = 0u64;
        // Connection rounds in a row that gave no session.
        let mut rounds = Retry::new(self.reconnect_backoff());
        // Sessions in a row whose subscriptions could not all be set up.
        let mut setups = Retry::new(self.reconnect_backoff());
        loop {
            let round = tokio::select! {
                r = self.connect_round(generation + 1) => r,
                _ = self.shutdown.cancelled() => return,
            };
            let session = match round {
                Ok(s) => s,
                Err(e) => {
                    let delay = rounds.failed(rand::random::<f64>());
                    error!(event = "icws.connect_failed", error = %e, round = rounds.failures(), "Failed to connect to IC server");
                    self.set_last_error(e.to_string());
                    lock(&self.status).auth_failing =
                        matches!(e, IcwsError::AuthenticationFailed { .. });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = self.shutdown.cancelled() => return,
                    }
                }
            };
            rounds.reset();
            generation = session.generation;
            while lost_rx.try_recv().is_ok() {}
            let reason = tokio::select! {
                r = self.run_session(&session, &events, &mut lost_rx, &mut setups) => r,
                _ = self.shutdown.cancelled() => {
                    self.close_session(&session).await;
                    return;
                }
            };
            self.session.send_replace(None);
            lock(&self.queues).clear();
            {
                let mut st = lock(&self.status);
                st.connected = false;
                st.last_error = Some(format!("session lost: {reason}"));
            }
            warn!(event = "icws.session_lost", server = %session.server, generation, reason = %reason, "CIC session lost; reconnecting");
            let _ = events.send(IcwsEvent::Lost { reason, generation }).await;
        }
    }

    /// Runs `op` up to [`BRIEF_TRIES`] times, [`BRIEF_BACKOFF`] apart, while it fails with a
    /// server error (not a lost session or a transport failure, which end the session at once).
    async fn retry_briefly<F, Fut>(&self, op: F) -> Result<(), IcwsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), IcwsError>>,
    {
        let mut retry = Retry::new(BRIEF_BACKOFF);
        let mut result = op().await;
        for _ in 1..BRIEF_TRIES {
            match &result {
                Err(IcwsError::SessionLost | IcwsError::Transport(_)) | Ok(()) => break,
                Err(_) => {
                    tokio::time::sleep(retry.failed_exact()).await;
                    result = op().await;
                }
            }
        }
        result
    }

    async fn subscribe_handler_notifications(&self, s: &Session) -> Result<(), IcwsError> {
        let body = wire::handler_sent_subscription_body();
        let (status, bytes) = self
            .send(
                s,
                Method::PUT,
                &[
                    "messaging",
                    "subscriptions",
                    "system",
                    "handler-sent-notifications",
                ],
                &[],
                Some(&body),
                wire::MEDIA_TYPE,
            )
            .await?;
        self.check(s, "PUT handler-sent-notifications", status, &bytes)
            .map(drop)
    }

    /// A session whose subscriptions cannot be set up: close it, wait (growing back-off), and
    /// return the reason, so the supervisor connects again.
    async fn give_up_session(
        &self,
        s: &Arc<Session>,
        reason: String,
        setups: &mut Retry,
    ) -> String {
        self.set_last_error(reason.clone());
        self.close_session(s).await;
        tokio::time::sleep(setups.failed(rand::random::<f64>())).await;
        reason
    }

    /// Sets up the subscriptions, announces the session, then reads messages until the
    /// session is lost. Returns the reason.
    async fn run_session(
        &self,
        s: &Arc<Session>,
        events: &mpsc::Sender<IcwsEvent>,
        lost_rx: &mut LostRx,
        setups: &mut Retry,
    ) -> String {
        {
            let mut st = lock(&self.status);
            st.last_error = None;
            st.auth_failing = false;
        }
        let handler_sub = self.subscribe_handler_notifications(s).await;
        let handler_sub = match handler_sub {
            Err(e) if !matches!(e, IcwsError::SessionLost | IcwsError::Transport(_)) => {
                // A passing server error: try again briefly before giving the session up.
                self.retry_briefly(|| self.subscribe_handler_notifications(s))
                    .await
            }
            other => other,
        };
        if let Err(e) = handler_sub {
            error!(event = "icws.subscribe_failed", error = %e, "could not subscribe to the handler's RouteCaseResult notifications");
            return self
                .give_up_session(
                    s,
                    format!("subscribing to handler notifications: {e}"),
                    setups,
                )
                .await;
        }
        // Published before the queue watches, so that a concurrent set_watched_workgroups
        // applies its own changes to this session.
        self.session.send_replace(Some(s.clone()));
        {
            let _serial = self.subscriptions.lock().await;
            let watched = lock(&self.queues).watched().clone();
            for wg in &watched {
                if let Err(e) = self.retry_briefly(|| self.subscribe_queue(s, wg)).await {
                    // Without every watch the router cannot know what is live: this session is
                    // of no use; start over (with back-off).
                    error!(event = "icws.subscribe_failed", workgroup = %wg, error = %e, "could not watch a workgroup queue");
                    drop(_serial);
                    return self
                        .give_up_session(s, format!("watching workgroup {wg}: {e}"), setups)
                        .await;
                }
            }
        }
        setups.reset();
        {
            let mut st = lock(&self.status);
            st.connected = true;
            st.server = Some(s.server.clone());
            st.backup = s.backup;
            st.generation = s.generation;
        }
        if s.backup {
            info!(event = "icws.connected", server = %s.server, backup = true, generation = s.generation, "Successfully connected to Backup CIC server");
        } else {
            info!(event = "icws.connected", server = %s.server, backup = false, generation = s.generation, "Successfully connected to Primary CIC server");
        }
        let _ = events
            .send(IcwsEvent::Connected {
                server: s.server.clone(),
                backup: s.backup,
                generation: s.generation,
            })
            .await;
        self.read_messages(s, events, lost_rx).await
    }

    /// Deletes the queue watches, the handler subscription and the session (best effort),
    /// and forgets the session and the views.
    async fn close_session(&self, s: &Session) {
        let _serial = self.subscriptions.lock().await;
        let watched = lock(&self.queues).watched().clone();
        for wg in &watched {
            if let Err(e) = self.unsubscribe_queue(s, wg).await {
                debug!(event = "icws.unsubscribe_failed", workgroup = %wg, error = %e, "queue watch not deleted");
            }
        }
        let deletes: [&[&str]; 2] = [
            &[
                "messaging",
                "subscriptions",
                "system",
                "handler-sent-notifications",
            ],
            &["connection"],
        ];
        for path in deletes {
            if let Err(e) = self
                .send(s, Method::DELETE, path, &[], None, wire::MEDIA_TYPE)
                .await
            {
                debug!(event = "icws.delete_failed", error = %e, "best-effort DELETE failed");
            }
        }
        self.session.send_replace(None);
        lock(&self.queues).clear();
        lock(&self.status).connected = false;
        info!(event = "icws.closed", server = %s.server, "CIC session closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_retries_wait_250_then_500_ms() {
        let mut retry = Retry::new(BRIEF_BACKOFF);
        let waits: Vec<Duration> = (1..BRIEF_TRIES).map(|_| retry.failed_exact()).collect();
        assert_eq!(
            waits,
            [Duration::from_millis(250), Duration::from_millis(500)]
        );
    }
}
