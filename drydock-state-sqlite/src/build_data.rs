//! [`BuildStore`] on SQLite: node build history, newest first.

use async_trait::async_trait;
use drydock_state_core::{BuildData, BuildDataQuery, BuildStore, Claim, Result, TaskId, Verbosity};

use crate::codec::{fits, id_array, id_text, to_micros};
use crate::error::OrStore;
use crate::rows::BuildDataRow;
use crate::store::SqliteStore;
use crate::{guard, queries};

#[async_trait]
impl BuildStore for SqliteStore {
    /// Unguarded: one `INSERT` (the task need not exist). Guarded: the same `INSERT` after
    /// `FENCE` on the element's task, in one `BEGIN IMMEDIATE` transaction.
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = %data.task_id, node = %data.node_name))]
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        const OP: &str = "record_build_data";
        data.validate()?;
        guard::validate(guard)?;
        let element = data.data_element.as_deref().unwrap_or_default();
        fits("build_data.data_element", element)?;
        let insert = queries::query(queries::RECORD_BUILD_DATA)
            .bind(data.node_name.as_str())
            .bind(id_text(data.task_id))
            .bind(data.collected_date.map(to_micros))
            .bind(data.generator.as_str())
            .bind(data.data_format.as_str())
            .bind(element);
        if guard.is_none() {
            insert.execute(&self.pool).await.or_store(OP)?;
            return Ok(());
        }
        let mut tx = self.begin_write(OP).await?;
        guard::fence(&mut tx, data.task_id, guard, OP).await?;
        insert.execute(&mut *tx).await.or_store(OP)?;
        tx.commit().await.or_store(OP)?;
        Ok(())
    }

    /// One statement: `BUILD_DATA_OF_TASKS_FULL` (or `_BRIEF`), the ids bound as one JSON
    /// array.
    #[tracing::instrument(level = "debug", skip_all, fields(tasks = tasks.len(), verbosity = ?verbosity))]
    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        let sql = match verbosity {
            Verbosity::Full => queries::BUILD_DATA_OF_TASKS_FULL,
            Verbosity::Brief => queries::BUILD_DATA_OF_TASKS_BRIEF,
        };
        queries::query_as::<_, BuildDataRow>(sql)
            .bind(id_array(tasks))
            .fetch_all(&self.pool)
            .await
            .or_store("build_data_of_tasks")?
            .into_iter()
            .map(BuildDataRow::into_build_data)
            .collect()
    }

    /// One statement per shape of the query, so that each searches its own index: by node
    /// (`BUILD_DATA_BY_NODE`, or `BUILD_DATA_LATEST_BY_NODE` with `latest`; a task given too
    /// filters the node's rows), by task alone (`BUILD_DATA_BY_TASK` /
    /// `BUILD_DATA_LATEST_BY_TASK`), or neither (`BUILD_DATA_ALL` / `BUILD_DATA_LATEST_ALL`).
    #[tracing::instrument(level = "debug", skip_all, fields(task_id = ?query.task_id, node = ?query.node_name))]
    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        query.validate()?;
        let full = query.verbosity == Verbosity::Full;
        let task = query.task_id.map(id_text);
        let shape = |latest, plain| if query.latest { latest } else { plain };
        let statement = match (query.node_name.as_deref(), task) {
            (Some(node), task) => queries::query_as::<_, BuildDataRow>(shape(
                queries::BUILD_DATA_LATEST_BY_NODE,
                queries::BUILD_DATA_BY_NODE,
            ))
            .bind(node)
            .bind(task)
            .bind(full),
            (None, Some(task)) => queries::query_as::<_, BuildDataRow>(shape(
                queries::BUILD_DATA_LATEST_BY_TASK,
                queries::BUILD_DATA_BY_TASK,
            ))
            .bind(task)
            .bind(full),
            (None, None) => queries::query_as::<_, BuildDataRow>(shape(
                queries::BUILD_DATA_LATEST_ALL,
                queries::BUILD_DATA_ALL,
            ))
            .bind(full),
        };
        statement
            .fetch_all(&self.pool)
            .await
            .or_store("build_data")?
            .into_iter()
            .map(BuildDataRow::into_build_data)
            .collect()
    }
}
