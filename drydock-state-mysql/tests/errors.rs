//! Failures a caller must be able to tell apart, with no secret in any error: an unreachable
//! server, a bad URL, and values larger than the server accepts (refused, never cut), beside a
//! 10 MB value that must round-trip whole.

mod common;

use std::time::Duration;

use drydock_state_core::testkit::kit_config;
use drydock_state_core::*;
use drydock_state_mysql::MySqlStore;

const SECRET: &str = "hunter2-s3cret";

/// Every rendering of an error and its source chain.
fn rendered(e: &Error) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_keeps_the_password_out() {
    let mut config = Config::default();
    config.database.pool_timeout = Duration::from_secs(1);
    // Nothing listens on port 1.
    let url = format!("mysql://drydock:{SECRET}@127.0.0.1:1/drydock");
    let e = MySqlStore::connect(&url, &config)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_retryable(), "{e}");
    assert!(!rendered(&e).contains(SECRET), "{}", rendered(&e));
    // Through the registry too.
    let e = (drydock_state_mysql::REGISTRATION.open)(url, config)
        .await
        .err()
        .expect("refused");
    assert!(e.is_retryable(), "{e}");
    assert!(!rendered(&e).contains(SECRET), "{}", rendered(&e));
}

#[tokio::test]
async fn a_bad_url_is_invalid_input_naming_database_url() {
    for url in [
        format!("mysql://drydock:{SECRET}@127.0.0.1:notaport/drydock"),
        format!("mysql://drydock:{SECRET}@127.0.0.1:3306"),
        "mysql:///drydock".to_string(),
        "postgres://127.0.0.1/drydock".to_string(),
    ] {
        match MySqlStore::connect(&url, &Config::default()).await {
            Err(e @ Error::InvalidInput { .. }) => {
                let Error::InvalidInput { field, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(field, "database.url", "{e}");
                assert!(!rendered(&e).contains(SECRET), "{}", rendered(&e));
            }
            other => panic!("{}: expected InvalidInput, got {other:?}", redact_uri(&url)),
        }
    }
}

#[tokio::test]
async fn a_10_mb_message_and_element_round_trip_and_a_20_mb_one_is_refused() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let task = store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .unwrap();
    let big: String = "0123456789abcdef".repeat(10 * 1024 * 1024 / 16);
    store
        .append_message(task.task_id, &NewMessage::info(big.clone()), None)
        .await
        .expect("a 10 MB message is stored");
    let messages = store.messages(task.task_id).await.unwrap();
    assert_eq!(messages[0].message.len(), big.len());
    assert!(messages[0].message == big, "stored whole");

    let element = BuildData {
        node_name: "n1".into(),
        task_id: task.task_id,
        collected_date: None,
        generator: "lshw".into(),
        data_format: "text/plain".into(),
        data_element: Some(big.clone()),
    };
    store.record_build_data(&element, None).await.unwrap();
    let read = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        read[0].data_element.as_deref() == Some(big.as_str()),
        "stored whole"
    );

    let huge = BuildData {
        data_element: Some(big.repeat(2)),
        ..element
    };
    match store.record_build_data(&huge, None).await {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "build_data.data_element");
            assert!(reason.contains("max_allowed_packet"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let huge_message = NewMessage::info(big.repeat(2));
    assert!(matches!(
        store
            .append_message(task.task_id, &huge_message, None)
            .await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(
        store.messages(task.task_id).await.unwrap().len(),
        1,
        "nothing cut or added"
    );
}
