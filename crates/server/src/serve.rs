//! `convene serve`: start every plane on one HTTP listener and stop them cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use convene_core::{EventBus, EventJournal, EventLog};
use convene_media::{MediaConfig, MediaMetrics, MediaPlane};
use prometheus::Registry;

use crate::config::ServeConfig;
use crate::http::{self, Ops};

/// How often audit records are delivered as files.
const AUDIT_DELIVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;

    let (store, master) =
        crate::admin_cli::open(&config.data_dir, config.database_url.as_deref()).await?;
    if let Some(credentials) = convene_admin::principals::bootstrap(
        &store,
        &master,
        &config.data_dir,
        time::OffsetDateTime::now_utc(),
    )
    .await?
    {
        // First start: the operator needs these keys to use the admin API.
        println!("{}", serde_json::to_string(&credentials)?);
        tracing::info!(
            file = %config.data_dir.join("bootstrap-credentials.json").display(),
            "created the root principal (FullAccess); its keys are in the file above"
        );
    }
    let audit_key = convene_admin::audit_log::signing_key(&config.data_dir)?;
    // The admin plane signs join tokens with this key; the media plane checks them with its public half.
    let join_tokens = convene_core::JoinTokenIssuer::from_seed(
        &convene_admin::secrets::load_or_create_key_file(&config.data_dir.join("join-token.key"))?,
    );
    let mailer = match &config.smtp_url {
        Some(url) => convene_admin::mail::Mailer::smtp(url, &config.mail_from)
            .context("setting up SMTP delivery")?,
        None => {
            convene_admin::mail::Mailer::folder(config.data_dir.join("outbox"), &config.mail_from)
        }
    };
    tracing::info!(mail = ?mailer, "e-mail delivery");
    let admin_store_for_billing = store.clone();
    let portal = convene_admin::portal::PortalState::new(
        store.clone(),
        join_tokens.clone(),
        mailer.clone(),
        &config.public_url,
    );
    let admin = Arc::new(convene_admin::api::AdminState {
        store,
        master,
        aws_account_id: "000000000000".into(),
        now: time::OffsetDateTime::now_utc,
        mailer,
        public_url: config.public_url.clone(),
        audit_lock: tokio::sync::Mutex::new(()),
    });

    let registry = Registry::new();
    // Meeting events go to a durable journal first; billing and reports consume it from their saved
    // offset, so a crash between a meeting's end and its billing loses nothing.
    let journal_path = config.data_dir.join("events").join("journal.jsonl");
    let journal = Arc::new(
        EventJournal::open(&journal_path)
            .with_context(|| format!("opening the event journal {}", journal_path.display()))?,
    );
    let bus: Arc<dyn EventBus> = journal.clone();
    let (stop_billing, billing_stop) = tokio::sync::watch::channel(false);
    let billing = config.billing.then(|| {
        tokio::spawn(convene_admin::billing::consumer::run(
            admin_store_for_billing.clone(),
            journal.clone() as Arc<dyn EventLog>,
            billing_stop,
        ))
    });
    if billing.is_none() {
        tracing::info!("billing and reports are not consumed on this node (billing = false)");
    }
    let media_metrics = MediaMetrics::register(&registry).context("registering media metrics")?;
    let media_config = MediaConfig {
        bind_ip: config.http.ip(),
        public_ip: config.public_ip,
        port_range: (config.media_ports.lo, config.media_ports.hi),
        workers: config.media_workers,
        fast_path: config.media_fast_path,
        realtime_priority: config.media_realtime_priority,
    };
    let plane = Arc::new(
        MediaPlane::start(&media_config, bus.clone(), media_metrics)
            .context("starting the media plane")?,
    );
    let ports: Vec<String> = plane.shard_addrs().iter().map(|a| a.to_string()).collect();
    tracing::info!(workers = config.media_workers, media = %ports.join(","), "media plane up");
    let sip_door = Arc::new(crate::sip::AdmissionDoor {
        portal: portal.clone(),
        plane: plane.clone(),
    });
    let sip = match &config.sip {
        Some(settings) => {
            let metrics = convene_gateway::GatewayMetrics::register(&registry)
                .context("registering gateway metrics")?;
            crate::sip::start(
                settings,
                &config.data_dir,
                sip_door,
                metrics,
                bus.subscribe(),
            )
            .await?
        }
        None => {
            tracing::info!("SIP gateway off (--no-sip)");
            None
        }
    };

    // Deliver the audit trail as signed log files every few minutes, and once more at shutdown.
    let audit_dir = config.data_dir.join("audit");
    let deliver = {
        let admin = admin.clone();
        let audit_dir = audit_dir.clone();
        move || {
            let admin = admin.clone();
            let audit_dir = audit_dir.clone();
            let key = audit_key.clone();
            async move {
                let now = time::OffsetDateTime::now_utc();
                match convene_admin::audit_log::deliver(
                    &admin.store,
                    &key,
                    &audit_dir,
                    &admin.aws_account_id,
                    "us-east-1",
                    now,
                )
                .await
                {
                    Ok(Some(path)) => {
                        tracing::info!(file = %path.display(), "audit records delivered")
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "audit delivery failed"),
                }
            }
        }
    };
    let periodic = {
        let deliver = deliver.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(AUDIT_DELIVERY_INTERVAL);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                deliver().await;
            }
        })
    };

    let ready = Arc::new(AtomicBool::new(false));
    let app = http::router(Ops {
        registry,
        ready: ready.clone(),
    })
    .merge(convene_media::signal::router(
        plane.clone(),
        join_tokens.verifier(),
    ))
    .merge(convene_admin::portal::router(portal))
    .merge(convene_admin::api::router(admin));

    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!("Convene is ready: open http://{}/", config.http);

    let stopping = {
        let plane = plane.clone();
        let ready = ready.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: telling attendees and stopping media workers");
            ready.store(false, Ordering::Relaxed);
            // Ending the meetings closes every signaling socket, which lets the HTTP server drain.
            let _ = tokio::task::spawn_blocking(move || plane.shutdown()).await;
        }
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stopping)
    .await
    .context("HTTP server failed")?;
    // Room systems get a BYE before the process goes away.
    if let Some(sip) = sip {
        sip.shutdown().await;
    }
    plane.shutdown();
    // Everything the meetings emitted is on disk; let billing apply it before we go.
    let flushing = journal.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
    let _ = stop_billing.send(true);
    if let Some(billing) = billing
        && let Err(e) = billing.await
    {
        tracing::error!(error = %e, "billing consumer task failed");
    }
    periodic.abort();
    deliver().await;
    // axum does not wait for upgraded (WebSocket) connections: give sessions a moment to send their
    // goodbye (`error: unavailable`, close 1001) before the runtime goes away.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while plane.metrics().signal_connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
