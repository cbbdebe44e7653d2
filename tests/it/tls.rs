//! TLS with real clients: psql with `sslmode=verify-full` against a test CA, psycopg and
//! pgjdbc with `sslmode=require`, a plain-text client refused under `--tls required`,
//! and certificates that do not load stopping the server.

use std::path::Path;
use std::process::Command;

use rankql::server::tls::acceptor;
use rankql::server::ServerOptions;

use crate::common::{add_user, missing_dependency, options, runs, start_server_on, TestServer};

/// A test CA and a server certificate for localhost / 127.0.0.1 signed by it, with an
/// EC key in PKCS#8 and a second, RSA PKCS#1 key.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rankql test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "rsa.key",
        "-out",
        "rsa.pem",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ]);
}

async fn tls_server(dir: &Path, data: &Path) -> TestServer {
    add_user(data, "admin", "admin-pw", true);
    let server = ServerOptions {
        tls: Some(acceptor(&dir.join("server.pem"), &dir.join("server.key")).unwrap()),
        tls_required: true,
        ..ServerOptions::default()
    };
    let engine = rankql::engine::EngineOptions {
        data_dir: Some(data.to_path_buf()),
        ..options(true)
    };
    start_server_on("127.0.0.1", engine, server).await
}

fn psql(port: u16, connection: &str) -> (bool, String) {
    let output = Command::new("psql")
        .arg(format!("{connection} port={port} user=admin dbname=rankql"))
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM products"])
        .env("PGPASSWORD", "admin-pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_over_tls_with_a_password() {
    if !runs("openssl", &["version"]) {
        missing_dependency("tls", "the openssl command", "apt-get install openssl");
        return;
    }
    if !runs("psql", &["--version"]) {
        missing_dependency(
            "tls",
            "the psql client",
            "apt-get install postgresql-client",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = tls_server(dir.path(), data.path()).await;
    let port = server.port;
    let ca = dir.path().join("ca.pem");

    let verified = format!(
        "host=localhost sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let (ok, output) = tokio::task::spawn_blocking(move || psql(port, &verified))
        .await
        .unwrap();
    assert!(ok, "psql verify-full: {output}");
    assert_eq!(output.trim(), "300");

    let (ok, output) =
        tokio::task::spawn_blocking(move || psql(port, "host=127.0.0.1 sslmode=disable"))
            .await
            .unwrap();
    assert!(!ok, "a plain-text client must be refused: {output}");
    assert!(output.contains("requires TLS"), "{output}");

    if runs("python3", &["-c", "import psycopg"]) {
        let script = format!(
            "import psycopg\n\
             with psycopg.connect('host=127.0.0.1 port={port} user=admin password=admin-pw dbname=rankql sslmode=require') as c:\n\
             \x20   print(c.execute('SELECT count(*) FROM products').fetchone()[0], c.pgconn.ssl_in_use)\n"
        );
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3").args(["-c", &script]).output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            output.status.success(),
            "psycopg: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "300 True");
    } else {
        missing_dependency(
            "tls",
            "the Python package psycopg",
            "pip install 'psycopg[binary]'",
        );
    }

    let jar = Path::new("/usr/share/java/postgresql.jar");
    if jar.is_file() && runs("java", &["-version"]) {
        let source = dir.path().join("Tls.java");
        std::fs::write(
            &source,
            format!(
                "import java.sql.*;\n\
                 public class Tls {{ public static void main(String[] a) throws Exception {{\n\
                 try (Connection c = DriverManager.getConnection(\"jdbc:postgresql://127.0.0.1:{port}/rankql?sslmode=require&user=admin&password=admin-pw&preferQueryMode=simple\");\n\
                 ResultSet r = c.createStatement().executeQuery(\"SELECT count(*) FROM products\")) {{\n\
                 r.next(); System.out.println(r.getLong(1)); }} }} }}\n"
            ),
        )
        .unwrap();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("java")
                .arg("-cp")
                .arg(jar)
                .arg(source)
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            output.status.success(),
            "pgjdbc: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "300");
    } else {
        missing_dependency(
            "tls",
            "pgjdbc (/usr/share/java/postgresql.jar) and java",
            "apt-get install libpostgresql-jdbc-java default-jre-headless; .ci/run installs it",
        );
    }
}

#[test]
fn certificates_that_do_not_load_are_errors() {
    if !runs("openssl", &["version"]) {
        missing_dependency("tls", "the openssl command", "apt-get install openssl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    acceptor(&dir.path().join("rsa.pem"), &dir.path().join("rsa.key"))
        .expect("an RSA PKCS#1 key loads");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let error = acceptor(&garbage, &dir.path().join("server.key"))
        .err()
        .expect("garbage is refused")
        .to_string();
    assert!(error.contains("garbage.pem"), "{error}");
    let mismatch = acceptor(&dir.path().join("server.pem"), &dir.path().join("rsa.key"))
        .err()
        .expect("a key of another certificate is refused")
        .to_string();
    assert!(mismatch.contains("TLS"), "{mismatch}");
    let missing = acceptor(&dir.path().join("none.pem"), &dir.path().join("server.key"))
        .err()
        .expect("a missing file is refused")
        .to_string();
    assert!(missing.contains("none.pem"), "{missing}");
}
