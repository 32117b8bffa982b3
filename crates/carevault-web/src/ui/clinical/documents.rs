//! Documents: multipart upload, metadata, the content served sandboxed.

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::DocumentUpload;
use maud::{html, Markup};
use serde::Deserialize;

use super::{alert, invalid_message};
use crate::server::AppState;
use crate::ui::{csrf_field, error_page, message_page, page_status, when, Ui};

/// Largest multipart body read for an upload (the configured document limit is checked while
/// reading; this only caps what axum buffers per request).
pub(super) const UPLOAD_BODY_LIMIT: usize = 65 * 1024 * 1024;

fn form_expired() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not sent from a current carevault page (its security token is missing or out of date). Go back, reload the page and try again.",
    )
}

#[derive(Deserialize, Default)]
pub(super) struct NewDocQuery {
    encounter: Option<String>,
}

fn upload_form(ui: &Ui, patient: &str, title: &str, encounter: Option<&str>, max: usize, error: Option<&str>) -> Markup {
    html! {
        h1 { "Upload a document" }
        (alert(error))
        p { "PDF, PNG, JPEG, GIF, WebP, TIFF or plain text, up to " (max / (1024 * 1024)) " MB. The type is checked from the content." }
        // The form token comes first: the server checks it before reading the file.
        form method="post" action=(format!("/ui/patients/{patient}/documents")) enctype="multipart/form-data" class="stack" {
            (csrf_field(&ui.csrf))
            @if let Some(e) = encounter { input type="hidden" name="encounter" value=(e); }
            label for="doc-title" { "Title" }
            input id="doc-title" name="title" type="text" required maxlength="200" value=(title);
            label for="doc-file" { "File" }
            input id="doc-file" name="file" type="file" required
                accept=".pdf,.png,.jpg,.jpeg,.gif,.webp,.tif,.tiff,.txt,application/pdf,image/png,image/jpeg,image/gif,image/webp,image/tiff,text/plain";
            button type="submit" { "Upload" }
        }
        p { a href=(format!("/ui/patients/{patient}")) { "Back to the chart" } }
    }
}

/// `GET /ui/patients/{id}/documents/new`
pub(super) async fn document_new(
    ui: Ui,
    State(st): State<AppState>,
    Path(pid): Path<String>,
    q: Result<Query<NewDocQuery>, QueryRejection>,
) -> Response {
    let enc = q.ok().and_then(|Query(q)| q.encounter).filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_hexdigit()));
    let max = st.vault.config().document_max_bytes;
    page_status(&ui, StatusCode::OK, "Upload a document", upload_form(&ui, &pid, "", enc.as_deref(), max, None))
}

enum FieldError {
    TooLarge,
    Broken,
}

/// Reads a multipart field, at most `limit` bytes.
async fn read_field(field: &mut Field<'_>, limit: usize) -> Result<Vec<u8>, FieldError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| FieldError::Broken)? {
        if buf.len() + chunk.len() > limit {
            return Err(FieldError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `POST /ui/patients/{id}/documents` (multipart: `csrf` first, then `title`, `file`,
/// optionally `encounter`).
pub(super) async fn document_upload(
    ui: Ui,
    State(st): State<AppState>,
    Path(pid): Path<String>,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let max = st.vault.config().document_max_bytes;
    let Ok(mut mp) = mp else {
        return message_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Form not accepted", "This address takes a file upload form only.");
    };
    let broken = || message_page(StatusCode::BAD_REQUEST, "Upload not accepted", "The upload was incomplete or malformed. Try again.");
    let (mut csrf_ok, mut title, mut encounter, mut file) = (false, String::new(), None::<String>, None::<(Option<String>, Vec<u8>)>);
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return broken(),
        };
        let name = field.name().unwrap_or_default().to_string();
        if !csrf_ok {
            // Nothing is read before the form token is known to be right.
            if name != "csrf" {
                return form_expired();
            }
            let given = match read_field(&mut field, 256).await {
                Ok(v) => v,
                Err(_) => return form_expired(),
            };
            if ui.csrf.is_empty() || !crate::ui::constant_time_eq(&given, ui.csrf.as_bytes()) {
                return form_expired();
            }
            csrf_ok = true;
            continue;
        }
        match name.as_str() {
            "title" | "encounter" => {
                let v = match read_field(&mut field, 4096).await {
                    Ok(v) => String::from_utf8_lossy(&v).trim().to_string(),
                    Err(_) => return broken(),
                };
                if name == "title" {
                    title = v;
                } else if !v.is_empty() {
                    encounter = Some(v);
                }
            }
            "file" => {
                let declared = field.content_type().map(str::to_string);
                match read_field(&mut field, max).await {
                    Ok(v) => file = Some((declared, v)),
                    Err(FieldError::TooLarge) => {
                        let m = format!("The file is larger than the {} MB allowed.", max / (1024 * 1024));
                        let form = upload_form(&ui, &pid, &title, encounter.as_deref(), max, Some(&m));
                        return page_status(&ui, StatusCode::PAYLOAD_TOO_LARGE, "Upload a document", form);
                    }
                    Err(FieldError::Broken) => return broken(),
                }
            }
            _ => {
                if read_field(&mut field, 4096).await.is_err() {
                    return broken();
                }
            }
        }
    }
    if !csrf_ok {
        return form_expired();
    }
    let again = |status: StatusCode, m: &str| {
        page_status(&ui, status, "Upload a document", upload_form(&ui, &pid, &title, encounter.as_deref(), max, Some(m)))
    };
    let Some((declared, content)) = file.filter(|(_, c)| !c.is_empty()) else {
        return again(StatusCode::BAD_REQUEST, "Choose a file to upload.");
    };
    if title.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Give the document a title.");
    }
    let up =
        DocumentUpload { patient_id: pid.clone(), encounter_id: encounter.clone(), title: title.clone(), content_type: declared, content };
    match st.vault.upload_document(&ui.actor, ui.purpose, up).await {
        Ok(d) => Redirect::to(&format!("/ui/documents/{}", d.id)).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => again(StatusCode::BAD_REQUEST, &m),
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `GET /ui/documents/{id}`: the metadata (a note's id goes to the note page).
pub(super) async fn document_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let d = match st.vault.read_document_reference(&ui.actor, ui.purpose, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let Some(meta) = d.document.clone() else {
        return Redirect::to(&format!("/ui/notes/{id}")).into_response();
    };
    let title = if meta.title.is_empty() { "Document".to_string() } else { meta.title };
    let ty = meta.content_type.as_str();
    let size = meta.size;
    let content = html! {
        h1 { (title) }
        dl class="facts" {
            dt { "Type" } dd { (ty) }
            dt { "Size" } dd { (size) " bytes" }
            dt { "Uploaded" } dd { (when(d.created_at)) }
            dt { "SHA-256" } dd { code class="hash" { (d.content_sha256.as_deref().unwrap_or("")) } }
            dt { "Patient" } dd { a href=(format!("/ui/patients/{}", d.patient_id)) { "Open the chart" } }
            @if let Some(enc) = &d.parent_id { dt { "Visit" } dd { a href=(format!("/ui/encounters/{enc}")) { "Open the visit" } } }
        }
        p { a class="button" href=(format!("/ui/documents/{id}/content")) { "Open document" } }
        p class="hint" { "Opening a document is recorded in the audit log as an export." }
        @if ty.starts_with("image/") {
            figure {
                img src=(format!("/ui/documents/{id}/content")) alt=(title) class="document-image";
                figcaption { (title) }
            }
        }
    };
    page_status(&ui, StatusCode::OK, "Document", content)
}

/// A file name safe for a header: letters, digits, `.`, `-`, `_`; with the type's extension.
fn safe_filename(title: &str, content_type: &str) -> String {
    let mut base: String =
        title.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).take(80).collect();
    base = base.trim_matches(['.', '_']).to_string();
    if base.is_empty() {
        base = "document".into();
    }
    let ext = match content_type {
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/tiff" => "tiff",
        "text/plain" => "txt",
        _ => "bin",
    };
    if base.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// `GET /ui/documents/{id}/content`: the document (audited as an export), inline, sandboxed.
pub(super) async fn document_content(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let d = match st.vault.download_document(&ui.actor, ui.purpose, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let name = safe_filename(d.record.document.as_ref().map_or("", |m| m.title.as_str()), &d.content_type);
    let mut r = d.content.to_vec().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&d.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Kept by the security-header middleware (it adds its own policy in front).
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    r
}
