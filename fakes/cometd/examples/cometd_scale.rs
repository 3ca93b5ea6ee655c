//! Cost per operation of the streaming endpoint as retained events and clients grow.
//!
//! ```sh
//! cargo run --release -p sors-fake-cometd --example scale             # 100 … 100,000
//! cargo run --release -p sors-fake-cometd --example scale -- 100 1000  # chosen sizes
//! ```
//!
//! At each size N the endpoint retains N events of `/topic/A` and knows N handshaken clients,
//! one of which subscribes to `/topic/A` (the router) and one to `/topic/B`. Per operation, the
//! median of up to 200 calls (at most ~3 s per operation); Bayeux requests go over loopback
//! HTTP, `publish` is the in-process call the fake Salesforce makes:
//!
//! - `publish`: one event on `/topic/A` (queued for its one subscriber);
//! - `connect`: a `/meta/connect` of the subscriber that returns the event queued for it;
//! - `replay`: `/meta/subscribe` to `/topic/A` with the replay id of the 11th newest event
//!   (10 events replayed);
//! - `handshake`: one more client.
//!
//! It prints a Markdown table; timings are wall-clock and machine-dependent, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sors_fake_cometd::{Config, EventType, Streaming};

const MAX_CALLS: usize = 200;
const BUDGET: Duration = Duration::from_secs(3);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Bayeux {
    http: reqwest::Client,
    url: String,
}

impl Bayeux {
    async fn send(&self, msg: Value) -> Res<Vec<Value>> {
        let resp = self
            .http
            .post(&self.url)
            .header("Authorization", "Bearer scale")
            .header("Cookie", "BAYEUX_BROWSER=scale")
            .json(&json!([msg]))
            .send()
            .await?;
        let replies: Vec<Value> = resp.json().await?;
        let last = replies.last().ok_or("empty reply")?;
        if last["successful"] != true {
            return Err(format!("{msg}: {last}").into());
        }
        Ok(replies)
    }

    async fn handshake(&self) -> Res<String> {
        let r = self
            .send(json!({"channel": "/meta/handshake", "version": "1.0",
                         "supportedConnectionTypes": ["long-polling"]}))
            .await?;
        let id = r[0]["clientId"].as_str().ok_or("no clientId")?.to_owned();
        // The first connect returns at once.
        self.connect(&id).await?;
        Ok(id)
    }

    async fn connect(&self, id: &str) -> Res<Vec<Value>> {
        self.send(json!({"channel": "/meta/connect", "clientId": id,
                         "connectionType": "long-polling"}))
            .await
    }

    async fn subscribe(&self, id: &str, channel: &str, replay: i64) -> Res<()> {
        self.send(
            json!({"channel": "/meta/subscribe", "clientId": id, "subscription": channel,
                         "ext": {"replay": {channel: replay}}}),
        )
        .await
        .map(drop)
    }
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// Runs `op` up to MAX_CALLS times (at least 3, at most ~BUDGET); median µs per call.
async fn measure<F, Fut>(mut op: F) -> Res<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let start = Instant::now();
    let mut samples = Vec::new();
    for i in 0..MAX_CALLS {
        let t = Instant::now();
        op(i).await?;
        samples.push(t.elapsed());
        if i >= 2 && start.elapsed() > BUDGET {
            break;
        }
    }
    Ok(median_us(samples))
}

#[tokio::main]
async fn main() -> Res<()> {
    let sizes: Vec<usize> = {
        let given: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.replace([',', '_'], "").parse().ok())
            .collect();
        if given.is_empty() {
            vec![100, 1_000, 10_000, 100_000]
        } else {
            given
        }
    };
    let streaming = Streaming::new(
        Config {
            connect_hold: Duration::from_secs(30),
            reconnect_expiry: Duration::from_secs(3600),
            ..Config::default()
        },
        Arc::new(|_: &str| true),
        Arc::new(|_: &str| true),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/cometd/58.0", listener.local_addr()?);
    let app = streaming.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let b = Bayeux {
        http: reqwest::Client::new(),
        url,
    };
    let router = b.handshake().await?;
    b.subscribe(&router, "/topic/A", -1).await?;
    let other = b.handshake().await?;
    b.subscribe(&other, "/topic/B", -1).await?;
    let (mut clients, mut events) = (2, 0);
    let mut replay_ids: Vec<i64> = Vec::new();

    println!(
        "| events and clients | publish | connect (1 event) | replay (10 events) | handshake |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for size in sizes {
        let t = Instant::now();
        // The router is not subscribed while the log fills (it would receive all of it).
        b.send(
            json!({"channel": "/meta/unsubscribe", "clientId": router, "subscription": "/topic/A"}),
        )
        .await?;
        while events < size {
            let id = streaming
                .publish("/topic/A", EventType::Created, json!({"Id": events}))
                .ok_or("dropped")?;
            replay_ids.push(id);
            events += 1;
        }
        while clients < size {
            b.handshake().await?;
            clients += 1;
        }
        b.subscribe(&router, "/topic/A", -1).await?;
        let setup = t.elapsed();

        let publish = measure(|i| {
            let r = streaming
                .publish("/topic/A", EventType::Updated, json!({"Id": i}))
                .map(|id| replay_ids.push(id))
                .ok_or_else(|| "dropped".into());
            async move { r }
        })
        .await?;
        b.connect(&router).await?; // what the publishes queued

        let connect = measure(|i| {
            let published = streaming
                .publish("/topic/A", EventType::Updated, json!({"Id": i}))
                .map(|id| replay_ids.push(id));
            let (b, router) = (&b, &router);
            async move {
                published.ok_or("dropped")?;
                let replies = b.connect(router).await?;
                if replies.len() != 2 {
                    return Err(format!("expected one event: {replies:?}").into());
                }
                Ok(())
            }
        })
        .await?;

        let replay_from = replay_ids
            .get(replay_ids.len().saturating_sub(11))
            .copied()
            .ok_or("no events")?;
        let subscriber = b.handshake().await?;
        let (b, subscriber) = (&b, &subscriber);
        let replay =
            measure(|_| async move { b.subscribe(subscriber, "/topic/A", replay_from).await })
                .await?;
        b.send(json!({"channel": "/meta/disconnect", "clientId": subscriber}))
            .await?;

        let handshake = measure(|_| async move {
            b.send(json!({"channel": "/meta/handshake", "version": "1.0",
                          "supportedConnectionTypes": ["long-polling"]}))
                .await
                .map(drop)
        })
        .await?;
        println!(
            "| {size} | {publish:.1} µs | {connect:.0} µs | {replay:.0} µs | {handshake:.0} µs |"
        );
        eprintln!("  (size {size}: setup {:.1} s)", setup.as_secs_f64());
    }
    Ok(())
}
