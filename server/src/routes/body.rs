//! Reading JSON request bodies with our own byte limit, so that every refusal (wrong content type,
//! oversize body, bad JSON) comes back in the JSON error envelope rather than as actix's plain text,
//! and so that a field error names its path.

use crate::error::{parse_json, AppError};
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest};
use bytes::BytesMut;
use flate2::write::{GzDecoder, ZlibDecoder};
use futures_util::StreamExt;
use std::io::Write;

/// Refuses a body that is not declared as JSON (`application/json` or any `+json` type).
pub fn require_json(req: &HttpRequest) -> Result<(), AppError> {
    let refuse =
        || AppError::UnsupportedMediaType("send JSON with Content-Type: application/json".into());
    let mime = req.mime_type().map_err(|_| refuse())?.ok_or_else(refuse)?;
    let json = mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json");
    if mime.type_() == "application" && json {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// Reads the whole body, refusing it with 413 as soon as it is known to exceed `limit` bytes.
/// A body sent with `Content-Encoding: gzip` or `deflate` is inflated as it arrives, and the limit
/// applies to what it inflates to: inflating stops at the limit, so a small body that would inflate to
/// gigabytes costs at most `limit` bytes (and the inflater's window) before it is refused. Any other
/// encoding is refused with 415.
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, AppError> {
    let too_large = || AppError::TooLarge(format!("the body is over {limit} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut sink = Inflate::for_request(req, limit)?;
    let mut payload = payload.into_inner();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(format!("reading the body: {e}")))?;
        sink.write(&chunk).map_err(|e| sink.refusal(e, too_large))?;
    }
    sink.try_finish().map_err(|e| sink.refusal(e, too_large))?;
    sink.finish()
        .map_err(|e| AppError::BadRequest(format!("reading the body: {e}")))
}

/// Where a body's bytes go: straight into the buffer, or through an inflater into it. The buffer
/// refuses to grow past the limit, which stops the inflater there.
enum Inflate {
    Identity(Bounded),
    Gzip(GzDecoder<Bounded>),
    Deflate(ZlibDecoder<Bounded>),
}

impl Inflate {
    fn for_request(req: &HttpRequest, limit: usize) -> Result<Inflate, AppError> {
        let encoding = match req.headers().get(header::CONTENT_ENCODING) {
            None => "identity".to_owned(),
            Some(v) => v
                .to_str()
                .map_err(|_| unsupported_encoding("(not text)"))?
                .trim()
                .to_ascii_lowercase(),
        };
        let buf = Bounded {
            buf: BytesMut::new(),
            limit,
            over: false,
        };
        match encoding.as_str() {
            "" | "identity" => Ok(Inflate::Identity(buf)),
            "gzip" | "x-gzip" => Ok(Inflate::Gzip(GzDecoder::new(buf))),
            // HTTP's `deflate` is the zlib format (RFC 9110 section 8.4.1.2).
            "deflate" => Ok(Inflate::Deflate(ZlibDecoder::new(buf))),
            other => Err(unsupported_encoding(other)),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Inflate::Identity(b) => b.write_all(bytes),
            Inflate::Gzip(d) => d.write_all(bytes),
            Inflate::Deflate(d) => d.write_all(bytes),
        }
    }

    /// Flushes what the inflater still holds (and checks the stream ended whole).
    fn try_finish(&mut self) -> std::io::Result<()> {
        match self {
            Inflate::Identity(_) => Ok(()),
            Inflate::Gzip(d) => d.try_finish(),
            Inflate::Deflate(d) => d.try_finish(),
        }
    }

    fn finish(self) -> std::io::Result<BytesMut> {
        Ok(match self {
            Inflate::Identity(b) => b.buf,
            Inflate::Gzip(d) => d.finish()?.buf,
            Inflate::Deflate(d) => d.finish()?.buf,
        })
    }

    fn over(&self) -> bool {
        match self {
            Inflate::Identity(b) => b.over,
            Inflate::Gzip(d) => d.get_ref().over,
            Inflate::Deflate(d) => d.get_ref().over,
        }
    }

    /// A write's failure as the client is told it: over the limit (413), or an encoded body that
    /// does not decode (400).
    fn refusal(&self, e: std::io::Error, too_large: impl Fn() -> AppError) -> AppError {
        if self.over() {
            too_large()
        } else {
            AppError::BadRequest(format!(
                "the body does not decode as its Content-Encoding says: {e}"
            ))
        }
    }
}

fn unsupported_encoding(what: &str) -> AppError {
    AppError::UnsupportedMediaType(format!(
        "Content-Encoding {what} is not accepted; send identity, gzip or deflate"
    ))
}

/// A buffer that refuses to hold more than `limit` bytes (and remembers that it did).
struct Bounded {
    buf: BytesMut,
    limit: usize,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(bytes.len()) > self.limit {
            self.over = true;
            return Err(std::io::Error::other("over the body limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON body of at most `limit` bytes, parsed into `T` with field paths in its errors.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, AppError> {
    require_json(req)?;
    let body = read_limited(req, payload, limit).await?;
    parse_json(&body)
}
