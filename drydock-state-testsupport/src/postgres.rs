//! The PostgreSQL test harness: finds (or starts) a PostgreSQL server and gives every test a fresh
//! database of its own, dropped when the test is done.
//!
//! The server is `DATABASE_URL` when it is set; if that cannot be reached the tests fail,
//! saying so (a server that was asked for is never silently replaced). Without `DATABASE_URL`
//! it is `postgres://postgres@127.0.0.1:5432/postgres`, and if that cannot be reached a
//! throwaway cluster is started with the machine's PostgreSQL binaries on a free port, and
//! stopped when the test process exits. If neither works the tests fail, saying how to provide
//! a server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drydock_state_core::redact_uri;
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static SERVER: OnceCell<String> = OnceCell::const_new();

/// The admin URL of a reachable server (the `postgres` database on it); panics, saying how
/// to provide one, when there is none (see the module documentation).
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            if let Ok(wanted) = std::env::var("DATABASE_URL") {
                if let Err(reason) = reachable(&wanted).await {
                    panic!(
                        "DATABASE_URL={} cannot be reached ({reason}). Point it at a running \
                         PostgreSQL server where the user may create databases, or unset it to \
                         use the local server or a throwaway cluster.",
                        redact_uri(&wanted)
                    );
                }
                return wanted;
            }
            let Err(reason) = reachable(DEFAULT_URL).await else {
                return DEFAULT_URL.to_string();
            };
            match start_throwaway_cluster().await {
                Ok(url) => url,
                Err(why) => panic!(
                    "no PostgreSQL for the tests: {DEFAULT_URL} is unreachable ({reason}) and no \
                     throwaway cluster could be started ({why}). Set DATABASE_URL to a server \
                     where the user may create databases, or install PostgreSQL (initdb and \
                     pg_ctl under /usr/lib/postgresql/*/bin)."
                ),
            }
        })
        .await
        .clone()
}

async fn reachable(url: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".to_string())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn start_throwaway_cluster() -> Result<String, String> {
    let cluster = Cluster::start().await?;
    eprintln!(
        "tests use a throwaway PostgreSQL cluster on port {}",
        cluster.port
    );
    let url = cluster.admin_url.clone();
    // Shared by every test of this process: the watchdog stops and removes it at exit.
    std::mem::forget(cluster);
    Ok(url)
}

/// A PostgreSQL cluster of the caller's own (initdb in a temporary directory, a free port on
/// 127.0.0.1, trust authentication), which it may stop, start and restart at will: the only
/// server a test may restart. Stopped and removed when dropped, and by a watchdog process if
/// the test process dies first.
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub admin_url: String,
    /// The port it listens on.
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    /// Creates the cluster and starts it (as the `postgres` user when we are root).
    pub async fn start() -> Result<Cluster, String> {
        let bin = pg_bin_dir()?;
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "drydock-pg-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if as_postgres {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&dir);
                    c
                },
                "chown",
            )?;
        }
        let mut initdb = pg_command(&bin.join("initdb"), as_postgres);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(initdb, "initdb")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let cluster = Cluster {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            dir,
            data,
            as_postgres,
        };
        cluster.start_server()?;
        cluster.spawn_watchdog()?;
        reachable(&cluster.admin_url).await?;
        Ok(cluster)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = pg_command(&self.bin.join("pg_ctl"), self.as_postgres);
        c.arg("-D").arg(&self.data);
        c
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let mut start = self.pg_ctl();
        start
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "start"]);
        run(start, "pg_ctl start")
    }

    /// Stops the server in `mode` (`smart`, `fast`, `immediate`) and waits until it is down.
    pub fn stop_server(&self, mode: &str) -> Result<(), String> {
        let mut stop = self.pg_ctl();
        stop.args(["-m", mode, "-w", "stop"]);
        run(stop, "pg_ctl stop")
    }

    /// Stops the server once this process is gone, and removes its directory.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let stop = if self.as_postgres {
            "runuser -u postgres -- \"$2\" -D \"$3\" -m immediate stop"
        } else {
            "\"$2\" -D \"$3\" -m immediate stop"
        };
        let script = format!(
            "while [ -d /proc/$1 ]; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf \"$4\""
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(self.bin.join("pg_ctl"))
            .arg(&self.data)
            .arg(&self.dir)
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_server("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
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
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test server");
    crate::sql::database_ddl(&mut admin, crate::sql::DatabaseDdl::Create, &name)
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
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let force = crate::sql::DatabaseDdl::DropIfExistsForce;
                    let _ = crate::sql::database_ddl(&mut admin, force, &name).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}
