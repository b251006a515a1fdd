//! TLS certificate verification is on unless explicitly turned off: through the facade's
//! resolver, with the default design configuration, an https server whose certificate no
//! trusted authority signed is refused; `danger_accept_invalid_certs = true` accepts it; and
//! trusting its authority through `ca_bundle` accepts it with verification still on.

mod common;

use std::time::Duration;

use common::*;
use drydock_state::*;

const DOCUMENT: &str = "schema: drydock/Site/v1\n";

fn quick(mut design: DesignConfig) -> DesignConfig {
    design.retries = 0;
    design.connect_timeout = Duration::from_secs(5);
    design.total_timeout = Duration::from_secs(15);
    design.cache_ttl = Duration::ZERO;
    design
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment's own error
fn verification_is_on_by_default() {
    assert!(!DesignConfig::default().danger_accept_invalid_certs);
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        assert!(
            !Config::load(None)
                .unwrap()
                .design
                .danger_accept_invalid_certs
        );
        Ok(())
    });
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_unless_verification_is_turned_off() {
    let pki = TestPki::generate();
    let server = text_server(Some(pki.acceptor.clone()), |_: &str| {
        (200, DOCUMENT.to_string())
    })
    .await;
    let uri = format!("https://127.0.0.1:{}/site.yaml", server.addr.port());

    // The same server is accepted below once trusted: this refusal is about trust alone.
    let default = drydock_state::design_resolver(&quick(DesignConfig::default())).unwrap();
    let e = drydock_state::fetch_design(&default, &uri)
        .await
        .expect_err("a certificate no trusted authority signed is refused");
    assert_eq!(kind(&e), "design_fetch", "{e}");
    let texts = error_texts(&e).to_lowercase();
    assert!(
        texts.contains("certificate") || texts.contains("unknownissuer"),
        "the refusal says why: {texts}"
    );
    assert!(
        !e.is_retryable(),
        "an untrusted certificate will not become trusted by retrying: {e}"
    );

    let mut lab = quick(DesignConfig::default());
    lab.danger_accept_invalid_certs = true;
    let lab = drydock_state::design_resolver(&lab).unwrap();
    let document = drydock_state::fetch_design(&lab, &uri)
        .await
        .expect("accepted with danger_accept_invalid_certs = true");
    assert_eq!(&document.bytes[..], DOCUMENT.as_bytes());

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &pki.ca_pem).unwrap();
    let mut trusting = quick(DesignConfig::default());
    trusting.ca_bundle = Some(bundle);
    let trusting = drydock_state::design_resolver(&trusting).unwrap();
    let document = drydock_state::fetch_design(&trusting, &uri)
        .await
        .expect("accepted when its authority is in ca_bundle");
    assert_eq!(&document.bytes[..], DOCUMENT.as_bytes());
}

/// The same through Deckhand: its client verifies certificates by default too.
#[tokio::test]
async fn deckhand_refuses_an_untrusted_certificate_by_default() {
    let pki = TestPki::generate();
    let server = text_server(Some(pki.acceptor.clone()), |_: &str| {
        (200, "[]".to_string())
    })
    .await;
    let uri = format!("deckhand+https://127.0.0.1:{}/42", server.addr.port());
    let mut design = quick(DesignConfig::default());
    design
        .drivers
        .insert("deckhand".into(), serde_json::json!({"token": "t"}));
    let resolver = drydock_state::design_resolver(&design).unwrap();
    let e = drydock_state::fetch_design(&resolver, &uri)
        .await
        .expect_err("refused by default");
    assert_eq!(kind(&e), "design_fetch", "{e}");
    design.danger_accept_invalid_certs = true;
    let resolver = drydock_state::design_resolver(&design).unwrap();
    drydock_state::fetch_design(&resolver, &uri)
        .await
        .expect("accepted with danger_accept_invalid_certs = true");
}
