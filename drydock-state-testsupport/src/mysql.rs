//! The MariaDB/MySQL test harness: a fresh database per test on a reachable server, dropped
//! when the test is done.
//!
//! The server is `MYSQL_URL` when it is set, else `mysql://root@127.0.0.1:3306` (the URL names
//! no database, or one the harness does not touch). If it cannot be reached the tests fail,
//! saying how to provide one: they never skip.

use std::time::Duration;

use drydock_state_core::redact_uri;
use sqlx::{Connection, MySqlConnection};
use tokio::sync::OnceCell;

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306";

static SERVER: OnceCell<String> = OnceCell::const_new();

/// The URL of a reachable server (with no database path); panics, saying how to provide one,
/// when there is none.
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            let (wanted, from_env) = match std::env::var("MYSQL_URL") {
                Ok(url) => (url, true),
                Err(_) => (DEFAULT_URL.to_string(), false),
            };
            if let Err(reason) = reachable(&wanted).await {
                if from_env {
                    panic!(
                        "MYSQL_URL={} cannot be reached ({reason}). Point it at a running \
                         MariaDB (10.6 or later) or MySQL (8.0 or later) server where the user \
                         may create databases, or unset it to use {DEFAULT_URL}.",
                        redact_uri(&wanted)
                    );
                }
                panic!(
                    "no MariaDB/MySQL server for the tests: {DEFAULT_URL} is unreachable \
                     ({reason}). Start one there (as .ci/run does: start-stop-daemon --start \
                     --background --exec /usr/sbin/mariadbd), or set MYSQL_URL to a server \
                     where the user may create databases, e.g. \
                     MYSQL_URL=mysql://user:password@host:3306."
                );
            }
            wanted
        })
        .await
        .clone()
}

async fn reachable(url: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// A database of the test's own, dropped (best effort) when this value is dropped.
pub struct TestDatabase {
    /// The database name, `drydock_test_<uuid>`.
    pub name: String,
    /// Its URL on the tests' server.
    pub url: String,
    admin_url: String,
}

/// Creates an empty database `drydock_test_<uuid>` on the tests' server.
pub async fn fresh_database() -> TestDatabase {
    fresh_database_on(&server_url().await).await
}

/// [`fresh_database`] for a plain `#[test]` that has no async runtime of its own (one that
/// runs a binary as a process, say).
pub fn fresh_database_blocking() -> TestDatabase {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test harness")
        .block_on(fresh_database())
}

/// Creates an empty database `drydock_test_<uuid>` on the server of `admin_url`.
pub async fn fresh_database_on(admin_url: &str) -> TestDatabase {
    let admin_url = admin_url.to_string();
    let name = format!("drydock_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = MySqlConnection::connect(&admin_url)
        .await
        .expect("connect to the test server");
    crate::sql::mysql_database_ddl(&mut admin, crate::sql::DatabaseDdl::Create, &name)
        .await
        .expect("create the test database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(&admin_url).expect("the server URL parses");
    url.set_path(&name);
    TestDatabase {
        name,
        url: url.to_string(),
        admin_url,
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime, so the drop gets a thread and runtime of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = MySqlConnection::connect(&admin_url).await {
                    let drop = crate::sql::DatabaseDdl::DropIfExists;
                    let _ = crate::sql::mysql_database_ddl(&mut admin, drop, &name).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}
