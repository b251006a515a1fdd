//! The facade links and registers every enabled backend and design driver, and maps a
//! shipped-but-disabled scheme to the feature that provides it.

use drydock_state::{Config, DesignConfig, Error};

fn enabled(feature_on: bool, scheme: &str, served: &[&str]) {
    assert_eq!(
        served.contains(&scheme),
        feature_on,
        "scheme {scheme}: feature on = {feature_on}, served = {served:?}"
    );
}

#[test]
fn backend_schemes_follow_features() {
    let registry = drydock_state::backends().unwrap();
    let served = registry.schemes();
    enabled(cfg!(feature = "memory"), "memory", &served);
    enabled(cfg!(feature = "sqlite"), "sqlite", &served);
    enabled(cfg!(feature = "postgres"), "postgres", &served);
    enabled(cfg!(feature = "postgres"), "postgresql", &served);
}

#[test]
fn design_schemes_follow_features() {
    let resolver = drydock_state::design_resolver(&DesignConfig::default()).unwrap();
    let served = resolver.schemes();
    enabled(cfg!(feature = "design-file"), "file", &served);
    enabled(cfg!(feature = "design-http"), "http", &served);
    enabled(cfg!(feature = "design-http"), "https", &served);
    enabled(cfg!(feature = "design-deckhand"), "deckhand+https", &served);
    enabled(cfg!(feature = "design-deckhand"), "deckhand+http", &served);
}

#[tokio::test]
async fn unknown_backend_scheme_lists_served_ones() {
    let e = drydock_state::open("mysql://db/x", &Config::default())
        .await
        .err()
        .expect("refused");
    match &e {
        Error::UnknownScheme { scheme, known } => {
            assert_eq!(scheme, "mysql");
            assert_eq!(known, &drydock_state::backends().unwrap().schemes());
        }
        other => panic!("expected UnknownScheme, got {other}"),
    }
}

#[tokio::test]
async fn compiled_out_backend_names_its_feature() {
    for (scheme, feature) in drydock_state::BACKEND_FEATURES {
        let on = match *feature {
            "memory" => cfg!(feature = "memory"),
            "sqlite" => cfg!(feature = "sqlite"),
            "postgres" => cfg!(feature = "postgres"),
            other => panic!("unexpected feature {other}"),
        };
        if on {
            continue;
        }
        let url = format!("{scheme}://user:hunter2@127.0.0.1:1/x");
        let e = drydock_state::open(&url, &Config::default())
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, Error::FeatureDisabled { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(feature) && !text.contains("hunter2"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn compiled_out_design_driver_names_its_feature() {
    let resolver = drydock_state::design_resolver(&DesignConfig::default()).unwrap();
    for (scheme, feature) in drydock_state::DESIGN_FEATURES {
        if resolver.schemes().contains(scheme) {
            continue;
        }
        let uri = match *scheme {
            "file" => "file:///etc/drydock/site.yaml".to_string(),
            _ => format!("{scheme}://u:hunter2@127.0.0.1:1/x"),
        };
        let e = drydock_state::fetch_design(&resolver, &uri)
            .await
            .expect_err("refused");
        let text = e.to_string();
        assert!(
            matches!(e, Error::FeatureDisabled { .. }) && text.contains(feature),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn memory_backend_opens_through_the_facade() {
    let store = drydock_state::open("memory://", &Config::default())
        .await
        .unwrap();
    assert_eq!(store.backend_name(), "memory");
}

#[test]
fn default_database_is_an_absolute_sqlite_url() {
    let url = drydock_state::default_database_url();
    assert!(url.starts_with("sqlite:///"), "{url}");
    assert!(
        url.ends_with("state.db") || url.ends_with("drydock-state.db"),
        "{url}"
    );
}

/// Drivers are built on first use, each for its own schemes: a Deckhand section that cannot
/// be used fails Deckhand fetches (naming its key, never its secret) and nothing else, and
/// `check` reports it up front.
#[cfg(all(feature = "design-file", feature = "design-deckhand"))]
#[tokio::test]
async fn a_bad_driver_section_breaks_only_its_own_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.yaml");
    std::fs::write(&site, "kind: Region\n").unwrap();
    let mut design = DesignConfig::default();
    design.drivers.insert(
        "deckhand".into(),
        serde_json::json!({"token": "tok-hunter2", "keystone": {
            "auth_url": "https://keystone:5000/v3", "username": "u",
            "password": "pw-hunter2", "project_name": "p"}}),
    );
    let resolver = drydock_state::design_resolver(&design).unwrap();
    let document = drydock_state::fetch_design(&resolver, &format!("file://{}", site.display()))
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], b"kind: Region\n");
    let e = drydock_state::fetch_design(&resolver, "deckhand+https://127.0.0.1:1/revisions/1")
        .await
        .expect_err("the Deckhand driver cannot be built");
    let text = format!("{e} {e:?}");
    assert!(text.contains("design.drivers.deckhand.token"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let e = resolver.check().expect_err("check builds every driver");
    assert!(e.to_string().contains("design.drivers.deckhand"), "{e}");
}
