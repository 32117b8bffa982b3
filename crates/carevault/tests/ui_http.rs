//! The staff web UI's safeguards over real HTTPS (the pages themselves are driven in a real
//! browser by e2e/ui): form tokens (CSRF), first-sign-in enrollment, sign-out clearing the
//! browser, and the idle lock with the server as the authority. SQLite or PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use carevault_core::Clock;
use carevault_domain::Role;
use carevault_testkit::{totp_code, App, PASSWORD};
use reqwest::{Client, Response, StatusCode};

/// A browser-like client that does not follow redirects, so each step can be checked.
fn browser(app: &App) -> Client {
    let cert = reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).expect("pem");
    Client::builder()
        .add_root_certificate(cert)
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .cookie_store(true)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn location(r: &Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The value of the first `name="csrf"` field (or `data-csrf` attribute) of a page.
fn csrf_of(html: &str) -> String {
    for marker in ["name=\"csrf\" value=\"", "data-csrf=\""] {
        if let Some(i) = html.find(marker) {
            let rest = &html[i + marker.len()..];
            return rest[..rest.find('"').expect("end quote")].to_string();
        }
    }
    panic!("no form token in page: {html}");
}

async fn post_form(c: &Client, url: String, fields: &[(&str, &str)]) -> Response {
    c.post(url).form(fields).send().await.expect("post")
}

async fn audit_count(app: &App) -> i64 {
    use sqlx::Row;
    let mut c = app.tv.raw().await.expect("raw");
    sqlx::query("SELECT COUNT(*) FROM audit_events").fetch_one(&mut c).await.expect("count").get(0)
}

/// Signs in through the UI with the secret the account was created with (no enrollment).
async fn ui_sign_in(app: &App, c: &Client, username: &str, secret: &str) -> String {
    let page = c.get(app.url("/ui/signin")).send().await.expect("signin").text().await.expect("html");
    let r = post_form(c, app.url("/ui/signin"), &[("csrf", &csrf_of(&page)), ("username", username), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mfa = c.get(app.url("/ui/signin/mfa")).send().await.expect("mfa").text().await.expect("html");
    let code = totp_code(secret, app.tv.clock.now_secs());
    let r = post_form(c, app.url("/ui/signin/totp"), &[("csrf", &csrf_of(&mfa)), ("code", &code)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    let home = c.get(app.url("/ui/")).send().await.expect("home");
    assert_eq!(home.status(), 200);
    home.text().await.expect("html")
}

#[tokio::test]
async fn first_sign_in_enrolls_with_qr_code_and_every_form_needs_its_token() {
    let app = App::spawn().await.expect("app");
    // An account made by an administrator (approved by an officer: the role reaches PHI); its
    // holder enrols with the password and the invitation. The operator-made key is never used.
    let (admin, _) = app.tv.staff(Role::PracticeAdmin).await.expect("admin");
    let acct = app.tv.vault.create_user(&admin, "fd.enrolling", "front_desk", "default", PASSWORD).await.expect("account");
    let (officer, _) = app.tv.staff(Role::PrivacyOfficer).await.expect("officer");
    app.tv.vault.approve(&officer, acct.approval_id.as_deref().expect("approval")).await.expect("approved");
    let staff = carevault_testkit::Staff { id: acct.id.clone(), username: acct.username.clone(), secret: String::new() };
    let c = browser(&app);

    // The password step refuses a post without the sign-in form's token, and changes nothing.
    let r = c.get(app.url("/ui/signin")).send().await.expect("signin");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["cache-control"], "no-store");
    let page = r.text().await.expect("html");
    let r = c.get(app.url("/ui/no-such-page")).send().await.expect("404");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.expect("html").contains("<html lang=\"en\">"), "an unknown UI address is a page");
    assert!(!page.contains("<script>") && !page.contains(" style="), "no inline script or style");
    let before = audit_count(&app).await;
    let r = post_form(&c, app.url("/ui/signin"), &[("csrf", "forged"), ("username", &staff.username), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&app).await, before, "a forged form reaches nothing");
    let token = csrf_of(&page);
    // A browser names its origin on every post (Referrer-Policy same-origin, not no-referrer,
    // which makes it send `Origin: null`); this origin passes on HTTP/1.1 (Host) and HTTP/2
    // (:authority), another is refused before the handler.
    let fields = [("csrf", token.as_str()), ("username", staff.username.as_str()), ("password", "wrong password!")];
    let r = c.post(app.url("/ui/signin")).header("origin", "https://evil.example").form(&fields).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.post(app.url("/ui/signin")).header("origin", app.base.clone()).form(&fields).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "same origin reaches the password check");
    let r = post_form(&c, app.url("/ui/signin"), &[("csrf", &token), ("username", &staff.username), ("password", "wrong password!")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.expect("html").contains("The username or password is not right."));

    // A new account goes to enrollment; asking for a key needs the session's form token.
    let r = post_form(&c, app.url("/ui/signin"), &[("csrf", &token), ("username", &staff.username), ("password", PASSWORD)]).await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/ui/signin/enroll".to_string()));
    let intro = c.get(app.url("/ui/signin/enroll")).send().await.expect("enroll").text().await.expect("html");
    let pending_token = csrf_of(&intro);
    assert_ne!(pending_token, token);
    let r = post_form(&c, app.url("/ui/signin/enroll/start"), &[("csrf", &token)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "the sign-in form's token is not the session's");
    // The password alone does not enrol a second factor: the invitation is needed.
    assert!(intro.contains("name=\"invitation\""), "the page asks for the invitation");
    let r = post_form(&c, app.url("/ui/signin/enroll/start"), &[("csrf", &pending_token)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no invitation, no key");
    let r =
        post_form(&c, app.url("/ui/signin/enroll/start"), &[("csrf", &pending_token), ("invitation", "AAAA-AAAA-AAAA-AAAA-AAAA")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a wrong invitation, no key");
    let qr = post_form(&c, app.url("/ui/signin/enroll/start"), &[("csrf", &pending_token), ("invitation", &acct.invitation.code)])
        .await
        .text()
        .await
        .expect("html");
    assert!(qr.contains("<svg role=\"img\" aria-label=\"QR code for your authenticator app\""), "{qr}");
    let i = qr.find("data-secret=\"").expect("secret") + "data-secret=\"".len();
    let secret = qr[i..i + qr[i..].find('"').expect("end")].to_string();
    let r = post_form(&c, app.url("/ui/signin/enroll"), &[("csrf", &pending_token), ("code", "000000")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a wrong code does not complete enrollment");
    let code = totp_code(&secret, app.tv.clock.now_secs());
    let r = post_form(&c, app.url("/ui/signin/enroll"), &[("csrf", &pending_token), ("code", &code)]).await;
    assert_eq!(r.status(), 200);
    let codes = r.text().await.expect("html");
    assert_eq!(codes.matches("<li><code>").count(), 10, "ten recovery codes, shown once: {codes}");

    // Signed in; the home page carries the session's form token, and enrollment is closed now.
    let home = c.get(app.url("/ui/")).send().await.expect("home");
    assert_eq!(home.status(), 200);
    let home = home.text().await.expect("html");
    assert!(home.contains(&staff.username));
    let session_token = csrf_of(&home);
    let r = post_form(&c, app.url("/ui/signin/enroll/start"), &[("csrf", &session_token)]).await;
    assert_ne!(r.status(), 200, "no second enrollment from a signed-in session");

    // Sign-out: a forged form does nothing; the real one ends the session and clears the browser.
    let r = post_form(&c, app.url("/ui/signout"), &[("csrf", &pending_token)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(app.url("/ui/")).send().await.expect("home").status(), 200, "still signed in");
    let r = post_form(&c, app.url("/ui/signout"), &[("csrf", &session_token)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["clear-site-data"], "\"cookies\", \"storage\", \"cache\"");
    let r = c.get(app.url("/ui/")).send().await.expect("home");
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/ui/signin".to_string()));
    app.stop().await;
}

#[tokio::test]
async fn idle_lock_follows_the_server_clock_and_reading_it_is_not_use() {
    let app = App::spawn().await.expect("app");
    let staff = app.add_staff(Role::Nurse).await.expect("staff");
    let c = browser(&app);
    let home = ui_sign_in(&app, &c, &staff.username, &staff.secret).await;
    let idle = app.tv.vault.config().session_idle_secs;
    assert!(home.contains(&format!("data-idle-secs=\"{idle}\"")), "the page learns the server's idle limit");

    let left = |c: Client| {
        let url = app.url("/ui/session/left");
        async move { c.get(url).send().await.expect("left").json::<serde_json::Value>().await.expect("json")["seconds_left"].as_i64() }
    };
    assert_eq!(left(c.clone()).await, Some(idle));
    // Asking how long is left, again and again, does not extend the session.
    app.tv.clock.advance_secs(idle - 20);
    assert_eq!(left(c.clone()).await, Some(20));
    app.tv.clock.advance_secs(10);
    assert_eq!(left(c.clone()).await, Some(10));
    // "Stay signed in" is a real use (and needs the form token).
    let r = c.post(app.url("/ui/session/keepalive")).header("x-csrf-token", "forged").send().await.expect("keepalive");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.post(app.url("/ui/session/keepalive")).header("x-csrf-token", csrf_of(&home)).send().await.expect("keepalive");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The last-seen time is written behind the response (fire-and-forget): wait for it.
    let mut seen = None;
    for _ in 0..50 {
        seen = left(c.clone()).await;
        if seen == Some(idle) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    assert_eq!(seen, Some(idle));
    // Past the limit the server refuses on its own: the next page needs a new sign-in.
    app.tv.clock.advance_secs(idle);
    assert_eq!(left(c.clone()).await, Some(0));
    let r = c.get(app.url("/ui/")).send().await.expect("home");
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/ui/signin?reason=expired".to_string()));
    assert_eq!(left(c.clone()).await, Some(0));
    // The lock page clears the browser whatever is left.
    let r = c.get(app.url("/ui/locked")).send().await.expect("locked");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["clear-site-data"], "\"cookies\", \"storage\", \"cache\"");
    app.stop().await;
}
