//! `rediss://` against a redis-server with `--tls-port` and a throwaway CA.

use std::path::Path;
use std::process::Command;

use vramroute_registry::testing::{RedisServer, TlsFiles};
use vramroute_registry::{RedisRegistry, Registry};

use crate::common::{cfg, node};

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl ({e}): install it (apt-get install openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A CA and a `localhost` server certificate signed by it.
fn make_certs(dir: &Path) -> Result<TlsFiles, String> {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=vramroute test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for step in steps {
        openssl(dir, step)?;
    }
    Ok(TlsFiles::new(
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
    ))
}

#[tokio::test]
async fn tls_with_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    // No skipping: a missing openssl or a redis-server built without TLS fails the test
    // with what to install (scripts/test.sh installs openssl; Debian's redis-server 7
    // has TLS).
    let files = make_certs(dir.path()).unwrap_or_else(|e| {
        panic!("tls_with_private_ca needs openssl to make test certificates: {e}")
    });
    let server = RedisServer::builder()
        .tls(files.clone())
        .start()
        .unwrap_or_else(|e| {
            panic!("tls_with_private_ca needs a redis-server with TLS support (Debian's redis-server 7 has it): {e}")
        });
    let url = server.url();
    assert!(url.starts_with("rediss://localhost:"), "{url}");
    let ca = std::fs::read(&files.ca).unwrap();
    let config = {
        let mut registry_config = cfg();
        registry_config.tls_root_ca_pem = Some(ca);
        registry_config
    };
    let reg = RedisRegistry::connect(&url, config).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    assert_eq!(reg.discover().await.unwrap().stats.len(), 1);
    assert_eq!(
        server
            .cli(&["EXISTS", "sollol:gpu:10.0.0.1:11434"])
            .unwrap()
            .trim(),
        "1"
    );

    // Without our CA the system trust store rejects the certificate: a clear error.
    let err = RedisRegistry::connect(&url, cfg()).await.unwrap_err();
    assert!(err.to_string().contains("localhost"), "{err}");
    // A plain-text client cannot talk to the TLS port.
    let plain = url.replacen("rediss://", "redis://", 1);
    assert!(RedisRegistry::connect(&plain, cfg()).await.is_err());
}
