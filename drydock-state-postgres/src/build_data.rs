//! [`BuildStore`] on PostgreSQL: node build history, newest first.

use async_trait::async_trait;
use drydock_state_core::{BuildData, BuildDataQuery, BuildStore, Claim, Result, TaskId, Verbosity};
use uuid::Uuid;

use crate::error::OrStore;
use crate::guard;
use crate::store::PgStore;
use crate::{queries, rows};

#[async_trait]
impl BuildStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %data.task_id, generator = %data.generator, guarded = guard.is_some()))]
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        data.validate()?;
        guard::validate(guard)?;
        const OP: &str = "record_build_data";
        if guard.is_none() {
            queries::query(queries::RECORD_BUILD_DATA)
                .bind(&data.node_name)
                .bind(data.task_id.0)
                .bind(data.collected_date)
                .bind(&data.generator)
                .bind(&data.data_format)
                .bind(&data.data_element)
                .execute(&self.pool)
                .await
                .or_store(OP)?;
            return Ok(());
        }
        let (by, term, attempt) = guard::binds(guard);
        let write = || async move {
            let done = queries::query(queries::RECORD_BUILD_DATA_GUARDED)
                .bind(&data.node_name)
                .bind(data.task_id.0)
                .bind(data.collected_date)
                .bind(&data.generator)
                .bind(&data.data_format)
                .bind(&data.data_element)
                .bind(by)
                .bind(term)
                .bind(attempt)
                .execute(&self.pool)
                .await
                .or_store(OP)?;
            Ok((done.rows_affected() == 1).then_some(()))
        };
        self.guarded(OP, data.task_id, guard, write, |_| Ok(None))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tasks = tasks.len(), verbosity = ?verbosity))]
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.0).collect();
        let rows = queries::query(queries::BUILD_DATA_OF_TASKS)
            .bind(&ids)
            .bind(verbosity == Verbosity::Full)
            .fetch_all(&self.pool)
            .await
            .or_store("build_data_of_tasks")?;
        rows.iter().map(rows::build_data).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task_id = ?query.task_id, latest = query.latest))]
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        query.validate()?;
        let full = query.verbosity == Verbosity::Full;
        let task = query.task_id.map(|t| t.0);
        // One static statement per shape, so each can use its own index.
        let statement = match (&query.node_name, task) {
            (Some(node), task) => {
                let sql = if query.latest {
                    queries::BUILD_DATA_LATEST_BY_NODE
                } else {
                    queries::BUILD_DATA_BY_NODE
                };
                queries::query(sql).bind(node).bind(task).bind(full)
            }
            (None, Some(task)) => {
                let sql = if query.latest {
                    queries::BUILD_DATA_LATEST_BY_TASK
                } else {
                    queries::BUILD_DATA_BY_TASK
                };
                queries::query(sql).bind(task).bind(full)
            }
            (None, None) => {
                let sql = if query.latest {
                    queries::BUILD_DATA_LATEST_ALL
                } else {
                    queries::BUILD_DATA_ALL
                };
                queries::query(sql).bind(full)
            }
        };
        let rows = statement
            .fetch_all(&self.pool)
            .await
            .or_store("build_data")?;
        rows.iter().map(rows::build_data).collect()
    }
}
