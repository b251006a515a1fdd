//! Reading a Drydock database (built by the tests as Drydock wrote it, defects included) into
//! core's `DrydockSource`, and core's `plan` of it: times written as New York wall times come
//! back as the right UTC instants, JSON written twice arrives as written and is decoded by the
//! plan, every defect is handled, the source is unchanged, a database that is not Drydock's is
//! refused naming what it lacks, and a password never shows.

use chrono::{DateTime, Duration, Utc};
use drydock_state_core::adopt::{plan, DrydockSource, LEGACY_CLAIMANT};
use drydock_state_core::{Error, TaskId, TaskStatus};
use drydock_state_postgres::adopt::read_drydock;
use drydock_state_testsupport::drydock::{self, DrydockSite, SITE_TIME_ZONE};
use drydock_state_testsupport::postgres::fresh_database;
use drydock_state_testsupport::sql;
use serde_json::{json, Value};
use uuid::Uuid;

const DROP_LINKS: &str = "ALTER TABLE public.tasks DROP COLUMN result_links";
const BACK_TO_4A5: &str = "UPDATE public.alembic_version SET version_num = '4a5bef3702b'";
const DROP_STATUS: &str = "DROP TABLE public.boot_action_status";
const RETYPE_CREATED: &str =
    "ALTER TABLE public.tasks ALTER COLUMN created TYPE timestamptz USING created AT TIME ZONE 'UTC'";

fn task(source: &DrydockSource, id: Uuid) -> &drydock_state_core::adopt::DrydockTask {
    source
        .tasks
        .iter()
        .find(|t| t.task_id == id.as_bytes())
        .unwrap_or_else(|| panic!("task {id} was read"))
}

#[tokio::test]
async fn a_drydock_site_is_read_as_drydock_wrote_it() {
    let site = drydock::create().await;
    let e = &site.expected;
    let before = drydock::fingerprint(&site.url).await.unwrap();

    let source = read_drydock(&site.url, None).await.unwrap();
    assert_eq!(source.revision, "4713e7ebca9");
    assert_eq!(source.time_zone, SITE_TIME_ZONE);
    assert!(
        source.time_zone_origin.contains("for this database"),
        "{}",
        source.time_zone_origin
    );

    // Tasks in (created, task_id) order, New York wall times back as the UTC instants.
    let ids: Vec<Uuid> = source
        .tasks
        .iter()
        .map(|t| Uuid::from_slice(&t.task_id).unwrap())
        .collect();
    assert_eq!(ids, e.task_ids);
    for t in &source.tasks {
        let id = Uuid::from_slice(&t.task_id).unwrap();
        let want = e.times[&id];
        assert_eq!(t.created, Some(want.created), "created of {id}");
        assert_eq!(t.updated, want.updated, "updated of {id}");
        assert_eq!(t.terminated, want.terminated, "terminated of {id}");
    }
    let root = task(&source, e.root);
    let stored_list: Vec<Option<Vec<u8>>> = e
        .root_list_as_stored
        .iter()
        .map(|id| Some(id.as_bytes().to_vec()))
        .collect();
    assert_eq!(root.subtask_id_list.as_ref(), Some(&stored_list));
    // Written twice: read as the JSON string Drydock left; plan decodes it.
    let Some(Value::String(context)) = &root.request_context else {
        panic!(
            "request_context is a JSON string: {:?}",
            root.request_context
        );
    };
    assert_eq!(
        serde_json::from_str::<Value>(context).unwrap(),
        e.request_context
    );
    assert_eq!(root.result_links.as_ref(), Some(&e.result_links));
    assert_eq!(
        task(&source, e.node_filter_json_null).node_filter,
        Some(Value::Null)
    );
    let nulls = task(&source, e.null_arrays);
    assert_eq!(nulls.subtask_id_list, None);
    assert_eq!(nulls.result_successes, None);
    assert_eq!(nulls.node_filter, None);
    assert_eq!(task(&source, e.terminate_null).terminate, None);

    // Messages in sequence order, with their own times; extra as written.
    assert_eq!(source.messages.len(), e.messages.len());
    for (got, want) in source.messages.iter().zip(&e.messages) {
        assert_eq!(got.sequence, i64::from(want.sequence));
        assert_eq!(got.ts, Some(want.ts), "ts of message {}", want.sequence);
        assert_eq!(got.message.as_deref(), Some(want.text.as_str()));
        let Some(Value::String(extra)) = &got.extra else {
            panic!("extra is a JSON string: {:?}", got.extra);
        };
        assert_eq!(serde_json::from_str::<Value>(extra).unwrap(), want.extra);
    }
    assert_eq!(source.messages[0].extra, Some(json!("{}")));

    // Build data in collection order (UTC), the duplicate kept.
    let dates: Vec<Option<DateTime<Utc>>> =
        source.build_data.iter().map(|b| b.collected_date).collect();
    let want: Vec<Option<DateTime<Utc>>> = e
        .build_data
        .iter()
        .map(|b| Some(b.collected_date))
        .collect();
    assert_eq!(dates, want);
    assert_eq!(source.build_data[2], source.build_data[3]);

    // Boot actions byte for byte.
    assert_eq!(source.boot_contexts.len(), 1);
    assert_eq!(
        source.boot_contexts[0].identity_key.as_deref(),
        Some(&e.identity_key[..])
    );
    let action_ids: Vec<&[u8]> = source
        .boot_actions
        .iter()
        .map(|a| a.action_id.as_slice())
        .collect();
    let want_ids: Vec<&[u8]> = e.boot_actions.iter().map(|a| &a.action_id[..]).collect();
    assert_eq!(action_ids, want_ids);
    assert_eq!(source.active_instances, e.active_instances);

    // Reading changed nothing.
    assert_eq!(drydock::fingerprint(&site.url).await.unwrap(), before);
}

#[tokio::test]
async fn the_plan_handles_every_defect_of_the_site() {
    let site = drydock::create().await;
    let e = &site.expected;
    let source = read_drydock(&site.url, None).await.unwrap();
    let (batch, report) = plan(&source);
    let find = |id: Uuid| {
        batch
            .tasks
            .iter()
            .find(|t| t.task_id == TaskId(id))
            .unwrap_or_else(|| panic!("task {id} planned"))
    };
    assert_eq!(batch.tasks.len(), e.task_ids.len());
    let tasks = report.table("tasks").unwrap();
    assert_eq!(tasks.read, 10);
    assert!(tasks.skipped.is_empty(), "{tasks:?}");

    // The root's list: the duplicate once, the missing id dropped, the unlisted child added.
    let root = find(e.root);
    let children: Vec<TaskId> = e.children.iter().map(|id| TaskId(*id)).collect();
    assert_eq!(root.subtask_id_list, children);
    assert_eq!(root.request_context.as_ref(), Some(&e.request_context));
    assert_eq!(root.result.links.len(), 2);
    assert_eq!(root.created, e.times[&e.root].created);
    let t = &tasks.transformed;
    assert_eq!(
        t["subtask_id_list named an id twice: kept once, in order"],
        1
    );
    assert_eq!(t["listed subtask not in the source: dropped"], 1);
    assert_eq!(
        t["child missing from its parent's subtask_id_list: appended"],
        1
    );
    for child in &e.children {
        assert_eq!(find(*child).parent_task_id, Some(TaskId(e.root)));
    }
    assert_eq!(
        find(e.listed_once).node_filter.as_ref(),
        Some(&e.node_filter)
    );

    // The orphan is a root; its parent was purged.
    assert_eq!(find(e.orphan).parent_task_id, None);
    assert_eq!(t["subtask whose parent is gone: kept as a root"], 1);

    // Drydock's own states.
    assert_eq!(find(e.queued_terminate).status, TaskStatus::Terminated);
    let running = find(e.running);
    assert_eq!(running.status, TaskStatus::Running);
    assert_eq!(running.claimed_by.as_deref(), Some(LEGACY_CLAIMANT));
    assert_eq!(running.claim_term, Some(0));
    assert!(!find(e.terminate_null).terminate);
    assert_eq!(t["terminate NULL read as false"], 1);
    assert_eq!(find(e.node_filter_json_null).node_filter, None);
    assert_eq!(find(e.node_filter_json_null).request_context, None);
    let nulls = find(e.null_arrays);
    assert!(nulls.subtask_id_list.is_empty() && nulls.result.successes.is_empty());
    // Parents first.
    let at = |id: Uuid| batch.tasks.iter().position(|t| t.task_id == TaskId(id));
    for child in &e.children {
        assert!(at(e.root) < at(*child));
    }

    // Messages: the one of a task that is gone is skipped, the cut one kept as stored.
    let messages = report.table("result_message").unwrap();
    assert_eq!(messages.read, 5);
    assert_eq!(
        messages.skipped["its task is not in the source (or was skipped)"],
        1
    );
    assert_eq!(
        messages.noted["127 characters long: possibly cut by Drydock, kept as stored"],
        1
    );
    assert_eq!(batch.messages.len(), 4);
    assert!(batch
        .messages
        .iter()
        .all(|m| m.sequence != i64::from(e.message_of_missing_task)));
    let cut = batch
        .messages
        .iter()
        .find(|m| m.sequence == i64::from(e.truncated_message))
        .unwrap();
    assert_eq!(cut.message.chars().count(), 127);
    assert_eq!(
        cut.extra,
        Some(json!({"node": "n2", "attempts": 3, "detail": "curtin «exit 1»"}))
    );
    assert_eq!(batch.messages[0].extra, Some(json!({})));
    let sequences: Vec<i64> = batch.messages.iter().map(|m| m.sequence).collect();
    let mut sorted = sequences.clone();
    sorted.sort();
    assert_eq!(sequences, sorted);

    // Build data all kept, in order; boot actions byte for byte; no leader carried over.
    assert_eq!(batch.build_data.len(), 5);
    assert_eq!(batch.build_data[2], batch.build_data[3]);
    assert_eq!(batch.boot_contexts.len(), 1);
    assert_eq!(
        batch.boot_contexts[0].identity_key.as_bytes(),
        &e.identity_key
    );
    assert_eq!(batch.boot_actions.len(), 3);
    assert_eq!(
        batch.boot_actions[0].action_id.as_bytes(),
        &e.boot_actions[0].action_id
    );
    let instances = report.table("active_instance").unwrap();
    assert_eq!(instances.read, 1);
    assert_eq!(instances.skipped.values().sum::<u64>(), 1);
    assert_eq!(report.time_zone, SITE_TIME_ZONE);
}

#[tokio::test]
async fn the_zone_can_be_given_and_the_role_setting_wins_over_the_database() {
    let site = drydock::create().await;
    let e = &site.expected;
    let root_created = e.times[&e.root].created;

    // Read as UTC, the New York wall time 09:00 is taken for 09:00 UTC: five hours early.
    let utc = read_drydock(&site.url, Some("UTC")).await.unwrap();
    assert_eq!(utc.time_zone_origin, "--time-zone");
    assert_eq!(
        task(&utc, e.root).created,
        Some(root_created - Duration::hours(5))
    );

    let bad = read_drydock(&site.url, Some("Mars/Olympus_Mons"))
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, Error::InvalidInput { field, reason }
            if field == "adopt.time_zone" && reason.contains("Mars/Olympus_Mons")),
        "{bad:?}"
    );

    let mut admin = DrydockSite::connect(&site.url, "UTC").await.unwrap();
    admin.set_role_time_zone("Asia/Tokyo").await.unwrap();
    admin.close().await.unwrap();
    let tokyo = read_drydock(&site.url, None).await.unwrap();
    assert_eq!(tokyo.time_zone, "Asia/Tokyo");
    assert!(
        tokyo.time_zone_origin.contains("role in this database"),
        "{}",
        tokyo.time_zone_origin
    );
    // 09:00 read as Tokyo (UTC+9) is 00:00 UTC: 14 hours before the right instant.
    assert_eq!(
        task(&tokyo, e.root).created,
        Some(root_created - Duration::hours(14))
    );
}

#[tokio::test]
async fn a_database_without_drydocks_schema_is_refused_naming_what_is_missing() {
    let empty = fresh_database().await;
    let err = read_drydock(&empty.url, None).await.unwrap_err();
    let Error::InvalidInput { field, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(field, "adopt.from");
    for table in drydock::DRYDOCK_TABLES {
        assert!(
            reason.contains(&format!("public.{table}")),
            "{table}: {reason}"
        );
    }
    assert!(reason.contains("4713e7ebca9"), "{reason}");

    // A Drydock database one migration behind, missing a table, with a column retyped.
    let old = fresh_database().await;
    let mut site = DrydockSite::connect(&old.url, "UTC").await.unwrap();
    site.create_schema().await.unwrap();
    for statement in [DROP_LINKS, BACK_TO_4A5, DROP_STATUS, RETYPE_CREATED] {
        sql::query(statement)
            .execute(site.connection())
            .await
            .unwrap();
    }
    site.close().await.unwrap();
    let err = read_drydock(&old.url, None).await.unwrap_err();
    let Error::InvalidInput { field, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(field, "adopt.from");
    for piece in [
        "public.tasks.result_links",
        "public.boot_action_status",
        "public.tasks.created of type timestamp (it is timestamptz)",
        "alembic revision 4713e7ebca9 (it is 4a5bef3702b)",
    ] {
        assert!(reason.contains(piece), "{piece}: {reason}");
    }
    assert!(!reason.contains("public.tasks.task_id"), "{reason}");
}

#[tokio::test]
async fn a_password_never_shows_when_the_source_cannot_be_reached() {
    let secret = "Adopt-Pw-31337";
    for url in [
        format!("postgres://drydock:{secret}@127.0.0.1:1/drydock"),
        format!("postgresql://drydock:{secret}@127.0.0.1:1/drydock?sslmode=bogus"),
        format!("postgres://drydock:{secret}@[::1/drydock"),
    ] {
        let err = read_drydock(&url, None).await.unwrap_err();
        let mut chain = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(!chain.contains(secret), "{url}: {chain}");
    }
}

#[tokio::test]
async fn the_planned_site_imports_into_postgres_and_reads_back_once() {
    use drydock_state_core::{
        BootActionId, BootActionStore, BuildDataQuery, BuildStore, Config, ImportMode, ImportStore,
        TaskStore,
    };
    let site = drydock::create().await;
    let e = &site.expected;
    let before = drydock::fingerprint(&site.url).await.unwrap();
    let (batch, mut report) = plan(&read_drydock(&site.url, None).await.unwrap());
    batch.validate().unwrap();

    let target = fresh_database().await;
    let store = drydock_state_postgres::PgStore::connect(&target.url, &Config::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let outcome = store.import(&batch, ImportMode::Write).await.unwrap();
    report.record(&outcome, ImportMode::Write);
    assert_eq!(report.table("tasks").unwrap().written, 10);
    assert_eq!(report.table("result_message").unwrap().written, 4);
    assert_eq!(report.table("build_data").unwrap().written, 5);

    let root = store.get_task(TaskId(e.root)).await.unwrap().unwrap();
    let children: Vec<TaskId> = e.children.iter().map(|id| TaskId(*id)).collect();
    assert_eq!(root.subtask_id_list, children);
    assert_eq!(root.created, e.times[&e.root].created);
    assert_eq!(root.result.details.message_list.len(), 2);
    assert_eq!(root.result.details.error_count, 1);
    assert_eq!(root.result.links.len(), 2);
    let orphan = store.get_task(TaskId(e.orphan)).await.unwrap().unwrap();
    assert_eq!(orphan.parent_task_id, None);
    let latest = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            latest: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(latest.len(), 2, "{latest:?}");
    let action = store
        .boot_action(BootActionId(e.boot_actions[1].action_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(action.identity_key.as_bytes(), &e.identity_key);

    // A second run imports nothing twice; the source never changed.
    let again = store.import(&batch, ImportMode::Write).await.unwrap();
    assert_eq!(
        again.tasks.written + again.messages.written + again.build_data.written,
        0
    );
    assert_eq!(again.tasks.present, 10);
    assert_eq!(drydock::fingerprint(&site.url).await.unwrap(), before);
}

const NAME_ROLE: &str = "SELECT set_config('drydock_fixture.role', $1, false)";
const CREATE_READER: &str = "DO $$ BEGIN \
     EXECUTE format('CREATE ROLE %I LOGIN', current_setting('drydock_fixture.role')); \
     EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', current_setting('drydock_fixture.role')); \
     END $$";
const DROP_READER: &str = "DO $$ BEGIN \
     EXECUTE format('DROP OWNED BY %I', current_setting('drydock_fixture.role')); \
     EXECUTE format('DROP ROLE %I', current_setting('drydock_fixture.role')); \
     END $$";
const RESET_DATABASE_ZONE: &str = "DO $$ BEGIN \
     EXECUTE format('ALTER DATABASE %I RESET timezone', current_database()); END $$";

/// A role that may read Drydock's tables and nothing else, dropped with this value.
struct Reader {
    admin_url: String,
    name: String,
}

impl Reader {
    async fn create(admin_url: &str) -> Reader {
        let name = format!("drydock_adopt_{}", Uuid::new_v4().simple());
        let mut site = DrydockSite::connect(admin_url, "UTC").await.unwrap();
        sql::query(NAME_ROLE)
            .bind(&name)
            .execute(site.connection())
            .await
            .unwrap();
        sql::query(CREATE_READER)
            .execute(site.connection())
            .await
            .unwrap();
        site.close().await.unwrap();
        Reader {
            admin_url: admin_url.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).unwrap();
        url.set_username(&self.name).unwrap();
        url.to_string()
    }

    async fn drop(self) {
        let mut site = DrydockSite::connect(&self.admin_url, "UTC").await.unwrap();
        sql::query(NAME_ROLE)
            .bind(&self.name)
            .execute(site.connection())
            .await
            .unwrap();
        sql::query(DROP_READER)
            .execute(site.connection())
            .await
            .unwrap();
        site.close().await.unwrap();
    }
}

#[tokio::test]
async fn without_a_setting_the_zone_is_the_servers_or_must_be_given() {
    let site = drydock::create().await;
    let reader = Reader::create(&site.url).await;
    // An ordinary role reads the database's setting, as Drydock's sessions got it.
    let read = read_drydock(&reader.url(), None).await;
    let mut admin = DrydockSite::connect(&site.url, "UTC").await.unwrap();
    sql::query(RESET_DATABASE_ZONE)
        .execute(admin.connection())
        .await
        .unwrap();
    admin.close().await.unwrap();
    // Without one, it may not read the server's configuration: the zone must be given.
    let refused = read_drydock(&reader.url(), None).await;
    let given = read_drydock(&reader.url(), Some(SITE_TIME_ZONE)).await;
    reader.drop().await;

    let read = read.unwrap();
    assert_eq!(read.time_zone, SITE_TIME_ZONE);
    let err = refused.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, reason }
            if field == "adopt.time_zone" && reason.contains("--time-zone")),
        "{err:?}"
    );
    assert_eq!(given.unwrap().tasks, read.tasks);
    // A superuser reads the server's configuration files.
    let server = read_drydock(&site.url, None).await.unwrap();
    assert!(
        server
            .time_zone_origin
            .starts_with("the server's configuration (")
            || server
                .time_zone_origin
                .starts_with("the server's built-in default"),
        "{}",
        server.time_zone_origin
    );
    assert!(!server.time_zone.is_empty());
}
