//! The nginx snippet masrun renders, loaded into a real nginx in front of two recording
//! backends: the compatibility layer and /auth reach MAS with its prefix, the rest of
//! /_matrix and /_synapse reach Synapse.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::TestRoot;
use support::synapse::{free_port, http_get};

/// A backend that answers every request with its own name and the request path.
fn start_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]);
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            let body = format!("{name} {path}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    /// SIGTERM makes the master stop its workers too; SIGKILL would leave them running.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &Path, snippet: &Path, port: u16) -> Nginx {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let config = dir.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "user root;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n\
             server {{\n    listen 127.0.0.1:{port};\n    include {snippet};\n  }}\n}}\n",
            d = dir.display(),
            snippet = snippet.display()
        ),
    )
    .unwrap();
    let test = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "nginx rejects the snippet:\n{}",
        String::from_utf8_lossy(&test.stderr)
    );

    let child = Command::new("nginx")
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Nginx { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/").is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    nginx
}

#[test]
fn nginx_snippet_routes_compat_layer_to_mas() {
    let mas = start_backend("mas");
    let synapse = start_backend("synapse");
    let root = TestRoot::new();
    root.setup(&[
        "-e",
        &format!(
            "masrun_reverse_proxy=nginx \
             masrun_nginx_matrix_authentication_service_upstream=http://127.0.0.1:{mas} \
             masrun_nginx_synapse_upstream=http://127.0.0.1:{synapse} \
             masrun_nginx_snippet_path={snippet}",
            snippet = root.path().join("snippets/mas.conf").display()
        ),
    ])
    .assert_status(0);
    let labels = root.read("config/labels");
    assert!(
        !labels.contains("traefik.enable=true"),
        "no Traefik labels with nginx:\n{labels}"
    );

    let port = free_port();
    let _nginx = start_nginx(
        &root.path().join("nginx"),
        &root.path().join("snippets/mas.conf"),
        port,
    );
    let cases = [
        (
            "/_matrix/client/v3/login",
            "mas /auth/_matrix/client/v3/login",
        ),
        (
            "/_matrix/client/r0/login",
            "mas /auth/_matrix/client/r0/login",
        ),
        (
            "/_matrix/client/v3/logout",
            "mas /auth/_matrix/client/v3/logout",
        ),
        (
            "/_matrix/client/v3/logout/all",
            "mas /auth/_matrix/client/v3/logout/all",
        ),
        (
            "/_matrix/client/v3/refresh",
            "mas /auth/_matrix/client/v3/refresh",
        ),
        (
            "/_matrix/client/v3/login/sso/redirect/oidc-x?redirectUrl=y",
            "mas /auth/_matrix/client/v3/login/sso/redirect/oidc-x?redirectUrl=y",
        ),
        (
            "/auth/.well-known/openid-configuration",
            "mas /auth/.well-known/openid-configuration",
        ),
        ("/_matrix/client/v3/sync", "synapse /_matrix/client/v3/sync"),
        (
            "/_matrix/client/versions",
            "synapse /_matrix/client/versions",
        ),
        (
            "/_synapse/admin/v1/server_version",
            "synapse /_synapse/admin/v1/server_version",
        ),
        (
            "/_synapse/mas/query_user",
            "synapse /_synapse/mas/query_user",
        ),
    ];
    for (path, expected) in cases {
        let (status, body) = http_get(port, path).unwrap();
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, expected, "{path}");
    }
    let (status, _) = http_get(port, "/auth").unwrap();
    assert_eq!(status, 301, "/auth redirects to /auth/");
}
