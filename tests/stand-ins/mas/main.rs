//! A STAND-IN for Matrix Authentication Service, for masrun's tests only. MAS itself cannot be
//! installed on the test machines, so this small program plays the parts of MAS that Synapse,
//! nginx and masrun talk to. It is built as a cargo example and never shipped in masrun.
//!
//! Like the real image (distroless, entrypoint `/usr/local/bin/mas-cli`, working directory `/`),
//! it is one binary with no shell. `mas-cli` or `mas-cli server` reads `config.yaml` from the
//! working directory (or `--config PATH`) and serves, as MAS 1.22 does:
//!
//! - on the `web` listener, under `http.listeners[].prefix`:
//!   - `GET .well-known/openid-configuration`: discovery with `issuer` = `http.issuer` and
//!     endpoints under `http.public_base`, which Synapse fetches for its auth metadata.
//!   - `POST oauth2/introspect`: Synapse's token check. With `Authorization: Bearer
//!     <matrix.secret>` every token is inactive (`{"active": false}`), so Synapse answers 401;
//!     a wrong secret gets 401, as MAS rejects an unknown client.
//!   - `GET _matrix/client/{version}/login`: the compatibility layer's login flows, with the
//!     `m.login.sso` flow marked `org.matrix.msc3824.delegated_oidc_compatibility`.
//! - on the `internal` listener: `GET health` responds 200.
//!
//! Anything else answers 404. Binds are read from the config (`address: "[::]:8080"` or
//! `host` + `port`). `mas-cli --version` and `mas-cli help` print usage; other subcommands
//! exit 2 with "unsupported by the stand-in".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use serde_json::{Value, json};

struct Settings {
    issuer: String,
    public_base: String,
    secret: String,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut config_path = "config.yaml".to_string();
    if let Some(index) = args.iter().position(|a| a == "--config" || a == "-c") {
        args.remove(index);
        if index < args.len() {
            config_path = args.remove(index);
        }
    }
    match args.first().map(String::as_str) {
        None | Some("server") => server(&config_path),
        Some("--version") | Some("-V") => println!("mas-cli 1.22.0 (masrun test stand-in)"),
        Some("help") | Some("--help") | Some("-h") => {
            println!(
                "Usage: mas-cli [--config PATH] [server]\nmasrun test stand-in for Matrix Authentication Service"
            );
        }
        Some(other) => {
            eprintln!("Error: subcommand {other} is unsupported by the stand-in");
            std::process::exit(2);
        }
    }
}

fn server(config_path: &str) {
    let text = std::fs::read_to_string(config_path).unwrap_or_else(|error| {
        eprintln!("Error: failed to load config {config_path}: {error}");
        std::process::exit(1);
    });
    let config: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|error| {
        eprintln!("Error: invalid config {config_path}: {error}");
        std::process::exit(1);
    });
    let public_base = config["http"]["public_base"]
        .as_str()
        .unwrap_or("http://[::]:8080/")
        .to_string();
    let settings = Arc::new(Settings {
        issuer: config["http"]["issuer"]
            .as_str()
            .unwrap_or(&public_base)
            .to_string(),
        public_base,
        secret: config["matrix"]["secret"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    });

    let mut threads = Vec::new();
    for listener in config["http"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let prefix = listener["prefix"]
            .as_str()
            .unwrap_or("/")
            .trim_end_matches('/')
            .to_string();
        let internal = listener["name"] == "internal";
        for bind in listener["binds"].as_array().cloned().unwrap_or_default() {
            let address = match (&bind["address"], &bind["host"], &bind["port"]) {
                (Value::String(address), _, _) => address.clone(),
                (_, Value::String(host), Value::Number(port)) => format!("{host}:{port}"),
                (_, _, Value::Number(port)) => format!("[::]:{port}"),
                _ => continue,
            };
            let socket = TcpListener::bind(&address).unwrap_or_else(|error| {
                eprintln!("Error: failed to bind {address}: {error}");
                std::process::exit(1);
            });
            println!("listening on {address} (prefix {prefix:?}, internal: {internal})");
            let settings = settings.clone();
            let prefix = prefix.clone();
            threads.push(std::thread::spawn(move || {
                for stream in socket.incoming().flatten() {
                    let settings = settings.clone();
                    let prefix = prefix.clone();
                    std::thread::spawn(move || handle(stream, &settings, &prefix, internal));
                }
            }));
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

fn handle(stream: TcpStream, settings: &Settings, prefix: &str, internal: bool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();

    let mut authorization = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = value.trim().to_string(),
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    let _ = reader.read_exact(&mut body);

    let path = target.split('?').next().unwrap_or("");
    let Some(path) = path.strip_prefix(prefix) else {
        return respond(stream, 404, &json!({"error": "not found"}));
    };
    let path = path.trim_start_matches('/');

    let (status, reply) = match (internal, method.as_str(), path) {
        (true, "GET", "health") => (200, json!({"status": "ok"})),
        (false, "GET", ".well-known/openid-configuration") => (200, discovery(settings)),
        (false, "POST", "oauth2/introspect") => {
            if authorization == format!("Bearer {}", settings.secret) {
                (200, json!({"active": false}))
            } else {
                (
                    401,
                    json!({"error": "invalid_client", "error_description": "client authentication failed"}),
                )
            }
        }
        (false, "GET", compat) if is_compat_login(compat) => (
            200,
            json!({"flows": [
                {"type": "m.login.sso", "org.matrix.msc3824.delegated_oidc_compatibility": true},
                {"type": "m.login.password"},
            ]}),
        ),
        _ => (
            404,
            json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}),
        ),
    };
    respond(stream, status, &reply);
}

fn is_compat_login(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    matches!(segments.as_slice(), ["_matrix", "client", _, "login"])
}

fn discovery(settings: &Settings) -> Value {
    let base = &settings.public_base;
    json!({
        "issuer": settings.issuer,
        "authorization_endpoint": format!("{base}authorize"),
        "token_endpoint": format!("{base}oauth2/token"),
        "jwks_uri": format!("{base}oauth2/keys.json"),
        "registration_endpoint": format!("{base}oauth2/registration"),
        "introspection_endpoint": format!("{base}oauth2/introspect"),
        "revocation_endpoint": format!("{base}oauth2/revoke"),
        "userinfo_endpoint": format!("{base}oauth2/userinfo"),
        "device_authorization_endpoint": format!("{base}oauth2/device"),
        "account_management_uri": format!("{base}account/"),
        "graphql_endpoint": format!("{base}graphql"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["login"],
    })
}

fn respond(mut stream: TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
