//! Smoke run of every benchmark shape against a real Convene media plane, in process: a few attendees
//! for a couple of seconds each. Checks that media flows end to end and the numbers are sane; it makes
//! no timing assertions (the machine may be busy), only ones a working SFU always meets on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene_core::{EventBus, InProcessBus};
use convene_load::media::{LayerSpec, default_camera_layers};
use convene_load::{Scenario, Summary, Target, run};
use convene_media::{MediaConfig, MediaMetrics, MediaPlane};
use prometheus::{Encoder, Registry, TextEncoder};

/// The tests run one after the other: each loads the machine with a server and its attendees, and
/// several at once on a small machine time out joins that a working SFU completes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the media plane (forwarding on str0m's path) and the signaling + metrics routes on a free
/// loopback port.
async fn start_server() -> SocketAddr {
    start_server_with(false).await
}

async fn start_server_with(fast_path: bool) -> SocketAddr {
    let registry = Registry::new();
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::default());
    let metrics = MediaMetrics::register(&registry).expect("metrics register");
    let config = MediaConfig {
        bind_ip: "127.0.0.1".parse().expect("ip"),
        public_ip: "127.0.0.1".parse().expect("ip"),
        // A range away from the defaults, so a Convene running on this machine does not collide.
        port_range: (41000, 41999),
        workers: 2,
        fast_path,
        realtime_priority: None,
    };
    let plane = Arc::new(MediaPlane::start(&config, bus, metrics).expect("media plane"));
    let app = convene_media::signal::router(plane, tokens().verifier()).route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut out = Vec::new();
                let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
                String::from_utf8(out).unwrap_or_default()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The key the test server checks join tokens with and the generator signs them with.
fn tokens() -> convene_core::JoinTokenIssuer {
    convene_core::JoinTokenIssuer::from_seed(&[42; 32])
}

fn scenario(server: SocketAddr, name: &str) -> Scenario {
    Scenario {
        target: Target::Convene {
            server,
            tokens: Arc::new(tokens()),
        },
        name: name.into(),
        meetings: 1,
        publishers: 1,
        subscribers: 1,
        audio: true,
        camera: default_camera_layers(),
        screens: 0,
        // Always talking: audio flows at a steady 50 packets/s, so a short window sees plenty.
        talk_ratio: 1.0,
        follow_publish_targets: true,
        keyframe_interval: Duration::from_secs(2),
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(10),
        join_rate: 50.0,
        threads: 2,
        local_ip: "127.0.0.1".parse().expect("ip"),
        // The "server" is this very process (clients included): good enough to check the probe works.
        server_pid: Some(std::process::id()),
        seed: 7,
    }
}

/// What every run must show when the SFU works.
fn check(s: &Summary) {
    let name = &s.scenario.name;
    assert_eq!(s.joined as usize, s.attendees, "{name}: everyone joined");
    assert_eq!(
        s.connections_connected as usize, s.connections_expected,
        "{name}: every connection came up"
    );
    assert_eq!(s.signaling_errors, 0, "{name}: no signaling errors");
    assert_eq!(s.attendee_failures, 0, "{name}: no attendee failed");
    assert!(s.sent_packets > 0, "{name}: publishers sent");
    assert!(s.received_packets > 0, "{name}: subscribers received");
    assert!(s.expected_packets >= s.received_packets - s.duplicate_packets);
    // Loopback with a handful of clients loses (almost) nothing; a broken forwarder loses a lot.
    assert!(s.loss_pct < 5.0, "{name}: loss {} %", s.loss_pct);
    assert!(s.latency_ms.count == s.received_packets);
    assert!(
        s.latency_ms.p50 > 0.0 && s.latency_ms.p50 <= s.latency_ms.p99,
        "{name}: latency percentiles ordered"
    );
    assert!(s.latency_ms.max < 5_000.0, "{name}: no absurd latency");
    assert_eq!(s.keyframe_never, 0, "{name}: every video track started");
    // The server's own count of forwarded packets agrees with what arrived (give or take in-flight ones).
    let report = s.server.as_ref().expect("server report");
    let out = report.packets_out.expect("metrics read") as f64;
    let got = s.received_packets as f64;
    assert!(
        (out - got).abs() <= got * 0.2 + 50.0,
        "{name}: server forwarded {out}, clients received {got}"
    );
    assert!(
        report.rss_kib > 0 && report.cpu_s > 0.0,
        "{name}: probe read /proc"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn every_benchmark_shape_forwards_media() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server().await;
    let mut runs = Vec::new();

    // (a) one video publisher to many subscribers.
    let mut a = scenario(server, "smoke-a");
    a.subscribers = 4;
    runs.push(a);
    // (b) a video meeting: everyone publishes and subscribes, one shares a screen.
    let mut b = scenario(server, "smoke-b");
    b.publishers = 3;
    b.subscribers = 0;
    b.screens = 1;
    runs.push(b);
    // (c) an audio meeting.
    let mut c = scenario(server, "smoke-c");
    c.publishers = 4;
    c.subscribers = 0;
    c.camera = Vec::new();
    runs.push(c);
    // (d) several one-to-one calls, camera without simulcast.
    let mut d = scenario(server, "smoke-d");
    d.meetings = 3;
    d.publishers = 2;
    d.subscribers = 0;
    d.camera = vec![LayerSpec {
        rid: "f".into(),
        fps: 30,
        kbps: 600,
    }];
    runs.push(d);

    for s in runs {
        let summary = run(s).await.expect("run");
        eprintln!(
            "{}: received {} lost {} p50 {} ms",
            summary.scenario.name,
            summary.received_packets,
            summary.lost_packets,
            summary.latency_ms.p50
        );
        check(&summary);
    }
}

/// On the fast path (Convene's default) the server dates what it sends against the kernel's receipt
/// of what caused it; the generator reads that histogram over its window.
#[tokio::test(flavor = "current_thread")]
async fn the_fast_path_reports_the_latency_it_adds() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server_with(true).await;
    let mut a = scenario(server, "smoke-fast-a");
    a.subscribers = 4;
    let summary = run(a).await.expect("run");
    check(&summary);
    let delay = summary
        .server_send_delay_ms
        .expect("the server's send delays");
    eprintln!("send delays: {delay:?}");
    // Every copy a received packet caused is dated (timers' padding and reports are not): about as
    // many as the receivers got.
    assert!(delay.count >= summary.received_packets / 2, "{delay:?}");
    assert!(
        0.0 < delay.p50 && delay.p50 <= delay.p99 && delay.p99 < 1_000.0,
        "{delay:?}"
    );
}

/// Publishers follow Convene's `publish_targets` as its web app does: in a meeting of five, where each
/// receiver gets the lowest camera layer, the two higher layers are paused (after the allocation's grace
/// period for layers falling out of use), so publishers send far fewer packets than with
/// `--ignore-publish-targets`, while every receiver still gets video.
#[tokio::test(flavor = "current_thread")]
async fn publishers_pause_the_layers_convene_switches_off() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server().await;
    let mut sent = Vec::new();
    for follow in [true, false] {
        let mut s = scenario(
            server,
            if follow {
                "smoke-follow"
            } else {
                "smoke-ignore"
            },
        );
        s.publishers = 5;
        s.subscribers = 0;
        s.follow_publish_targets = follow;
        // Past the 5 s a layer stays on after it fell out of use.
        s.warmup = Duration::from_secs(7);
        let summary = run(s).await.expect("run");
        check(&summary);
        sent.push(summary.sent_packets as f64 / summary.window_s);
    }
    let (follow, ignore) = (sent[0], sent[1]);
    eprintln!(
        "packets sent per second: {follow:.0} following the targets, {ignore:.0} ignoring them"
    );
    assert!(
        follow < 0.6 * ignore,
        "publishers sent {follow:.0} packets/s following publish_targets, {ignore:.0} ignoring them"
    );
}
