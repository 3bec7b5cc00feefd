//! The `http` primitive: an HTTP/1.1 request to a service as the host reaches it (Synapse's
//! client listener, MAS's discovery document on the container's address), sent through the
//! host connection's byte stream, so it works the same locally and over SSH. Reads run in
//! check mode too; other methods only report what they would send.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;

use super::{Outcome, PrimitiveError, Result};
use crate::run::host::HostContext;
use crate::transport::StreamTarget;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// An `http://` URL, resolved and connected from the host.
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The statuses that count as success (default 200).
    #[serde(default)]
    pub expect: Option<ExpectSpec>,
    /// Seconds one attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Seconds to keep retrying, once a second, until the status is an expected one (0: one
    /// attempt). For waiting until a service that was just started responds.
    #[serde(default)]
    pub wait: u64,
    /// Return an unexpected status to the task file instead of failing the step.
    #[serde(default)]
    pub ignore_errors: bool,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExpectSpec {
    One(u16),
    Any(Vec<u16>),
}

fn default_method() -> String {
    "GET".into()
}

fn default_timeout() -> u64 {
    10
}

/// One response: status and body.
struct Response {
    status: u16,
    body: String,
}

pub fn request(ctx: &HostContext, options: &HttpOptions) -> Result<Outcome> {
    let method = options.method.to_ascii_uppercase();
    let read_only = matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
    let uri: Uri = options.url.parse().map_err(|error| {
        PrimitiveError::InvalidOption(format!("invalid url {}: {error}", options.url))
    })?;
    if uri.scheme_str() != Some("http") {
        // NOTE: https is not implemented; the services masrun probes listen on plain HTTP
        // inside the host.
        return Err(PrimitiveError::InvalidOption(format!(
            "url {} must start with http://",
            options.url
        )));
    }
    let expected: Vec<u16> = match &options.expect {
        None => vec![200],
        Some(ExpectSpec::One(status)) => vec![*status],
        Some(ExpectSpec::Any(statuses)) => statuses.clone(),
    };
    if ctx.check_mode() && !read_only {
        return Ok(Outcome::changed().with_message(format!("would send {method} {}", options.url)));
    }

    let deadline = Instant::now() + Duration::from_secs(options.wait);
    let mut attempts = 0;
    let last = loop {
        attempts += 1;
        let result = ctx.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(options.timeout.max(1)),
                send(ctx, &uri, &method, options),
            )
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {} s", options.timeout.max(1))))
            .map_err(crate::transport::TransportError::Other)
        });
        let done = matches!(&result, Ok(response) if expected.contains(&response.status));
        if done || Instant::now() >= deadline {
            break result;
        }
        std::thread::sleep(Duration::from_secs(1));
    };

    let response = match last {
        Ok(response) => response,
        Err(error) if options.ignore_errors => {
            return Ok(Outcome::unchanged()
                .with_data("status", 0)
                .with_data("error", error.to_string()));
        }
        Err(error) => {
            return Err(PrimitiveError::Failed(format!(
                "{method} {} failed after {attempts} attempt(s): {error}",
                options.url
            )));
        }
    };
    if !expected.contains(&response.status) && !options.ignore_errors {
        let excerpt: String = response.body.chars().take(300).collect();
        return Err(PrimitiveError::Failed(format!(
            "{method} {} returned {} (expected {expected:?}) after {attempts} attempt(s): {excerpt}",
            options.url, response.status
        )));
    }

    let outcome = if read_only {
        Outcome::unchanged()
    } else {
        Outcome::changed()
    };
    let json = serde_json::from_str::<Value>(&response.body).unwrap_or(Value::Null);
    Ok(outcome
        .with_data("status", response.status)
        .with_data("body", response.body)
        .with_data("json", json))
}

async fn send(
    ctx: &HostContext,
    uri: &Uri,
    method: &str,
    options: &HttpOptions,
) -> std::result::Result<Response, String> {
    let host = uri.host().ok_or_else(|| format!("url {uri} has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let target = StreamTarget::Tcp {
        host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    };
    let stream = ctx
        .transport
        .connect_stream(&target)
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake with {target} failed: {error}"))?;
    let driver = tokio::spawn(connection);

    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", authority)
        .header("User-Agent", concat!("masrun/", env!("CARGO_PKG_VERSION")));
    for (name, value) in &options.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = Full::new(Bytes::from(options.body.clone().unwrap_or_default()));
    let request = builder.body(body).map_err(|error| error.to_string())?;

    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("request to {target} failed: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading the response from {target} failed: {error}"))?
        .to_bytes();
    driver.abort();
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
