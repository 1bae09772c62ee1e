//! The server's HTTP API as the client uses it: one method per request, no retries and no local
//! state here (the lanes decide what to retry and what to record).

use crate::error::{ClientError, Result};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode, Url};
use riverchief_shared::api::{ErrorBody, ErrorDetail, LoginRequest, LoginResponse};
use riverchief_shared::photo::Sha256;
use riverchief_shared::sync::{PullResponse, PushRequest, PushResponse};
use std::io::SeekFrom;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

const TUS_VERSION: &str = "1.0.0";
/// Bytes read from disk per chunk of an upload body (and per progress step).
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Parses a server URL as given by the user into the base every API path is joined onto.
pub(crate) fn base_url(server_url: &str) -> Result<Url> {
    let bad = |reason: &str| ClientError::BadServerUrl {
        url: server_url.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(server_url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    // Joining "api/v1/..." onto ".../prefix" would drop "prefix"; a trailing slash keeps it.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The server URL in the form it is stored and shown: no trailing slash.
pub(crate) fn normalize_server_url(server_url: &str) -> Result<String> {
    Ok(base_url(server_url)?
        .as_str()
        .trim_end_matches('/')
        .to_owned())
}

/// `Upload-Metadata` for a photo: comma-separated `key base64(value)` pairs (tus 1.0.0).
pub(crate) fn tus_metadata(sha: &Sha256, content_type: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "sha256 {},content_type {}",
        b64.encode(sha.hex()),
        b64.encode(content_type)
    )
}

/// A session with one server, with or without a token.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    /// Without a read timeout: see `Inner::upload_http`.
    uploads: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(
        http: reqwest::Client,
        uploads: reqwest::Client,
        server_url: &str,
        token: Option<String>,
    ) -> Result<Self> {
        Ok(Self {
            http,
            uploads,
            base: base_url(server_url)?,
            token,
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| ClientError::Internal(format!("cannot join {path:?}: {e}")))
    }

    fn authed(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        let token = self.token.as_deref().ok_or(ClientError::NotLoggedIn)?;
        Ok(builder.bearer_auth(token))
    }

    pub(crate) async fn login(&self, request: &LoginRequest) -> Result<LoginResponse> {
        let response = self
            .http
            .post(self.url("api/v1/auth/login")?)
            .json(request)
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    pub(crate) async fn push(&self, request: &PushRequest) -> Result<PushResponse> {
        let body = serde_json::to_vec(request)?;
        // Held while this call waits: dropped with it when a sync is cancelled or runs out of time.
        let waiting = std::sync::Arc::new(());
        let builder = self
            .http
            .post(self.url("api/v1/sync/push")?)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .body(abandonable(body, &waiting));
        let response = self.authed(builder)?.send().await?;
        let answer = check(response).await?.json().await?;
        drop(waiting);
        Ok(answer)
    }

    /// A page of changes after `since`, as `device` pulls them: the server leaves out the changes
    /// of records only this device has written (it holds them itself).
    pub(crate) async fn pull(
        &self,
        since: Option<&str>,
        limit: usize,
        device: riverchief_shared::id::DeviceId,
    ) -> Result<PullResponse> {
        let mut url = self.url("api/v1/sync/pull")?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(since) = since {
                query.append_pair("since", since);
            }
            query.append_pair("limit", &limit.to_string());
            query.append_pair("device", &device.to_string());
        }
        let response = self.authed(self.http.get(url))?.send().await?;
        Ok(check(response).await?.json().await?)
    }

    /// The stock per depot and item, as the server has it now.
    pub(crate) async fn stock(&self) -> Result<riverchief_shared::api::StockView> {
        let response = self
            .authed(self.http.get(self.url("api/v1/stock")?))?
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    /// Posts a batch of gauge readings (`POST /api/v1/stations/{station}/readings`).
    pub(crate) async fn post_readings(
        &self,
        station: &str,
        batch: &riverchief_shared::flood::ReadingsBatch,
    ) -> Result<riverchief_shared::flood::ReadingsResult> {
        let mut url = self.url("api/v1/stations")?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Internal("the server URL cannot take a path".into()))?
            .push(station)
            .push("readings");
        let response = self.authed(self.http.post(url).json(batch))?.send().await?;
        Ok(check(response).await?.json().await?)
    }

    /// Whether the server already has the photo (`HEAD /api/v1/photos/{sha}`).
    pub(crate) async fn photo_exists(&self, sha: &Sha256) -> Result<bool> {
        let url = self.url(&format!("api/v1/photos/{}", sha.hex()))?;
        let response = self.authed(self.http.head(url))?.send().await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(response).await?;
        Ok(true)
    }

    /// Creates a tus upload and returns its `Location` as the server gave it (see [`Api::resolve`]).
    pub(crate) async fn tus_create(
        &self,
        sha: &Sha256,
        size: u64,
        content_type: &str,
    ) -> Result<String> {
        let builder = self
            .http
            .post(self.url("api/v1/uploads")?)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Length", size)
            .header("Upload-Metadata", tus_metadata(sha, content_type))
            .header(CONTENT_LENGTH, 0);
        let response = check(self.authed(builder)?.send().await?).await?;
        let location = header_str(response.headers(), LOCATION.as_str()).ok_or_else(|| {
            ClientError::Protocol("tus creation answered without Location".into())
        })?;
        self.resolve(location)?;
        Ok(location.to_owned())
    }

    /// An upload's URL from its stored `Location`. The server answers a path, which is resolved
    /// against the server URL in use now, so that an upload begun through one address (a proxy)
    /// resumes through another; an absolute URL (another tus server's habit) is kept as it is.
    pub(crate) fn resolve(&self, location: &str) -> Result<Url> {
        self.base
            .join(location)
            .map_err(|e| ClientError::Protocol(format!("bad upload Location {location:?}: {e}")))
    }

    /// The offset of an upload, or `None` when the server no longer knows it.
    pub(crate) async fn tus_offset(&self, upload: &Url) -> Result<Option<u64>> {
        let builder = self
            .http
            .head(upload.clone())
            .header("Tus-Resumable", TUS_VERSION);
        let response = self.authed(builder)?.send().await?;
        if matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Ok(None);
        }
        let response = check(response).await?;
        upload_offset(response.headers()).map(Some)
    }

    /// Sends the file at `path` from `offset` to its end (`total` bytes) in one streamed `PATCH`,
    /// and returns the server's new offset. Bytes are read from disk as they are sent, never held
    /// whole in memory; `sent` counts the bytes handed to the connection so far.
    pub(crate) async fn tus_patch(
        &self,
        upload: &Url,
        path: &Path,
        offset: u64,
        total: u64,
        sent: watch::Sender<u64>,
    ) -> Result<u64> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(ClientError::file(path))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(ClientError::file(path))?;
        let remaining = total.saturating_sub(offset);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file.take(remaining), UPLOAD_CHUNK).map(
                move |chunk| {
                    // Nobody waits for this upload any more (the sync was cancelled or ran out of
                    // time and dropped it): stop sending. The body's owner is hyper's connection
                    // task, which would otherwise go on writing the rest of the photo after the
                    // sync has returned; an error here aborts the request, and the next sync
                    // resumes from the server's offset.
                    if sent.is_closed() {
                        return Err(std::io::Error::other("the upload was abandoned"));
                    }
                    if let Ok(bytes) = &chunk {
                        sent.send_modify(|n| *n += bytes.len() as u64);
                    }
                    chunk
                },
            );
        let builder = self
            .uploads
            .patch(upload.clone())
            .header("Tus-Resumable", TUS_VERSION)
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .header(CONTENT_LENGTH, remaining)
            .body(reqwest::Body::wrap_stream(stream));
        let response = check(self.authed(builder)?.send().await?).await?;
        upload_offset(response.headers())
    }
}

/// A request body that stops once nobody waits for the request's answer any more: hyper's connection
/// task owns the body and would go on writing it after the caller dropped the request (a sync
/// cancelled, or out of time, with the phone's background budget spent). The body is handed over in
/// pieces; the first piece asked for after `waiting` is gone is an error, which aborts the request.
/// What the server did not get whole it never applies; what it did, the next sync replays as a
/// duplicate.
fn abandonable(bytes: Vec<u8>, waiting: &std::sync::Arc<()>) -> reqwest::Body {
    let waiting = std::sync::Arc::downgrade(waiting);
    let pieces: Vec<bytes::Bytes> = bytes
        .chunks(UPLOAD_CHUNK)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces).map(move |piece| {
        if waiting.strong_count() == 0 {
            Err(std::io::Error::other("the request was abandoned"))
        } else {
            Ok(piece)
        }
    }))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn upload_offset(headers: &HeaderMap) -> Result<u64> {
    header_str(headers, "Upload-Offset")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ClientError::Protocol("tus answer without a valid Upload-Offset".into()))
}

/// Passes a success through; turns anything else into [`ClientError::Server`] with the server's
/// error envelope, or a stand-in when the body is not one (a proxy's error page, a HEAD answer).
async fn check(response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let body = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(envelope) => envelope.error,
        Err(_) => ErrorDetail {
            code: format!("http_{}", status.as_u16()),
            message: if text.trim().is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            } else {
                text.chars().take(300).collect()
            },
            field: None,
            current_status: None,
        },
    };
    Err(ClientError::Server {
        status: status.as_u16(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_base64_pairs() {
        let sha = Sha256::of(b"abc");
        let header = tus_metadata(&sha, "image/jpeg");
        let b64 = base64::engine::general_purpose::STANDARD;
        let pairs: Vec<(String, String)> = header
            .split(',')
            .map(|pair| {
                let (key, value) = pair.split_once(' ').expect("key and value");
                let value = b64.decode(value).expect("base64");
                (key.to_owned(), String::from_utf8(value).expect("utf-8"))
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("sha256".to_owned(), sha.hex()),
                ("content_type".to_owned(), "image/jpeg".to_owned())
            ]
        );
        assert_eq!(
            header,
            "sha256 YmE3ODE2YmY4ZjAxY2ZlYTQxNDE0MGRlNWRhZTIyMjNiMDAzNjFhMzk2MTc3YTljYjQxMGZmNjFmMjAwMTVhZA==,content_type aW1hZ2UvanBlZw=="
        );
    }

    #[test]
    fn server_urls_keep_their_prefix() {
        let base = base_url("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            base.join("api/v1/sync/push").expect("join").as_str(),
            "http://127.0.0.1:8080/api/v1/sync/push"
        );
        let base = base_url("https://example.org/river/").expect("url");
        assert_eq!(
            base.join("api/v1/uploads").expect("join").as_str(),
            "https://example.org/river/api/v1/uploads"
        );
        let base = base_url("https://example.org/river").expect("url");
        assert_eq!(
            base.join("/api/v1/uploads/abc").expect("join").as_str(),
            "https://example.org/api/v1/uploads/abc"
        );
        assert_eq!(
            normalize_server_url("http://127.0.0.1:8080/").expect("url"),
            "http://127.0.0.1:8080"
        );
        assert!(base_url("ftp://example.org").is_err());
        assert!(base_url("not a url").is_err());
    }
}
