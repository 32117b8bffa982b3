//! Scenario 4 (`https`): patient reads over HTTPS against the health endpoint on the same server.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use carevault_core::{Clock, Operator, RequestContext};
use carevault_domain::Role;

use crate::{figure, measure, pick, progress, Bench, CONCURRENT};

/// One keep-alive HTTP/1.1 connection to the bench's server (trusting its certificate),
/// presenting the session cookie `cookie` on every request.
pub(crate) fn session_client(
    cert: &reqwest::Certificate,
    addr: std::net::SocketAddr,
    cookie: reqwest::header::HeaderValue,
) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie);
    Ok(reqwest::Client::builder()
        .add_root_certificate(cert.clone())
        .resolve("localhost", addr)
        .https_only(true)
        .http1_only()
        .pool_max_idle_per_host(1)
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A full (password + TOTP) session for a new physician account `username`, made through the
/// core.
pub(crate) async fn session_token(vault: &Operator, clock: &dyn Clock, username: &str) -> Result<String> {
    let user = vault.add_user(username, Role::Physician, carevault_testkit::PASSWORD).await?;
    let ctx = RequestContext { source_ip: Some([127, 0, 0, 1].into()) };
    let step = vault.login(&ctx, username, carevault_testkit::PASSWORD).await?;
    let code = carevault_testkit::totp_code(&user.totp_secret_base32, clock.now_secs());
    let grant = vault.verify_totp(&ctx, Some(&step.pending_token), &code).await?;
    Ok(grant.token)
}

pub(crate) async fn bench_https(b: &Bench, ids: Arc<Vec<String>>) -> Result<()> {
    let server = carevault_web::start(
        b.tv.vault.vault().clone(),
        carevault_web::WebConfig::new(
            "127.0.0.1:0".parse()?,
            carevault_web::TlsSource::SelfSigned { dir: b.tv.data_dir().join("tls"), hostnames: vec![] },
        ),
    )
    .await?;
    let addr = server.local_addr;
    progress(format!("https: server on {addr}, {CONCURRENT} HTTP/1.1 connections, one shared session"));
    let token = session_token(&b.tv.vault, b.tv.clock.as_ref(), "bench.https.clinician").await?;
    let cookie = reqwest::header::HeaderValue::from_str(&format!("{}={token}", carevault_web::SESSION_COOKIE))?;
    let cert = reqwest::Certificate::from_pem(server.cert_pem.as_bytes())?;
    let mut clients = Vec::with_capacity(CONCURRENT);
    for _ in 0..CONCURRENT {
        clients.push(session_client(&cert, addr, cookie.clone())?);
    }
    let clients = Arc::new(clients);
    let base = Arc::new(format!("https://localhost:{}", addr.port()));

    let read_op = {
        let clients = clients.clone();
        let base = base.clone();
        let ids = ids.clone();
        Arc::new(move |t: usize, i: u64| {
            let clients = clients.clone();
            let base = base.clone();
            let ids = ids.clone();
            async move {
                let c = clients.get(t).context("no client")?;
                let r = c.get(format!("{base}/fhir/r4/Patient/{}", pick(&ids, i)?)).send().await?;
                ensure!(r.status() == reqwest::StatusCode::OK, "GET Patient: {}", r.status());
                black_box(r.bytes().await?);
                Ok(())
            }
        })
    };
    let health_op = {
        let clients = clients.clone();
        let base = base.clone();
        Arc::new(move |t: usize, _i: u64| {
            let clients = clients.clone();
            let base = base.clone();
            async move {
                let c = clients.get(t).context("no client")?;
                let r = c.get(format!("{base}/api/v1/health")).send().await?;
                ensure!(r.status().is_success(), "GET health: {}", r.status());
                black_box(r.bytes().await?);
                Ok(())
            }
        })
    };
    let read = measure("https.patient_read core", CONCURRENT, b.secs, read_op).await?;
    let health = measure("https.health plain", CONCURRENT, b.secs, health_op).await?;
    figure("https.patient_read.c32", read.rate(), "req/s", health.rate());
    figure("https.patient_read.c32.p50", read.pct_ms(50.0), "ms", health.pct_ms(50.0));
    figure("https.patient_read.c32.p99", read.pct_ms(99.0), "ms", health.pct_ms(99.0));
    drop(clients);
    server.stop().await;
    Ok(())
}
