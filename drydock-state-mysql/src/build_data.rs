//! [`BuildStore`] on MariaDB/MySQL: node build history, each element stored whole in
//! `LONGTEXT` (a value larger than the server's `max_allowed_packet` is refused, never cut).

use async_trait::async_trait;
use drydock_state_core::Entity;
use drydock_state_core::{
    BuildData, BuildDataQuery, BuildStore, Claim, Error, Result, TaskId, Verbosity,
};

use crate::error::db_error;
use crate::store::{db_now, read_task, retry_races, MySqlStore};
use crate::{guard, queries, rows};

impl MySqlStore {
    async fn try_record(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        const OP: &str = "record_build_data";
        let mut tx = self.pool.begin().await.map_err(db_error(OP, "database"))?;
        if guard.is_some() {
            let task = read_task(&mut tx, OP, queries::TASK_FOR_SHARE, data.task_id)
                .await?
                .ok_or_else(|| Error::not_found(Entity::Task, data.task_id))?;
            guard::check(&mut tx, OP, &task, guard).await?;
        }
        let collected = match data.collected_date {
            Some(at) => at,
            None => db_now(&mut tx, OP).await?,
        };
        queries::query(queries::INSERT_BUILD_DATA)
            .bind(data.node_name.as_str())
            .bind(rows::id_text(data.task_id))
            .bind(collected.naive_utc())
            .bind(data.generator.as_str())
            .bind(data.data_format.as_str())
            .bind(data.data_element.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db_error(OP, "build_data.data_element"))?;
        tx.commit().await.map_err(db_error(OP, "database"))?;
        Ok(())
    }
}

#[async_trait]
impl BuildStore for MySqlStore {
    async fn record_build_data(&self, data: &BuildData, guard: Option<&Claim>) -> Result<()> {
        let bytes = data.node_name.len()
            + data.generator.len()
            + data.data_format.len()
            + data.data_element.as_ref().map_or(0, String::len);
        self.check_size("build_data.data_element", bytes)?;
        retry_races!(self.try_record(data, guard).await)
    }

    async fn build_data_of_tasks(
        &self,
        tasks: &[TaskId],
        verbosity: Verbosity,
    ) -> Result<Vec<BuildData>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let statement = match verbosity {
            Verbosity::Full => queries::BUILD_DATA_OF_TASKS_FULL,
            Verbosity::Brief => queries::BUILD_DATA_OF_TASKS_BRIEF,
        };
        let found = queries::query(statement)
            .bind(rows::id_array(tasks.iter().copied()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("build_data_of_tasks", "task_id"))?;
        found.iter().map(rows::build_data).collect()
    }

    async fn build_data(&self, query: &BuildDataQuery) -> Result<Vec<BuildData>> {
        let statement = match query.verbosity {
            Verbosity::Full => queries::BUILD_DATA_FULL,
            Verbosity::Brief => queries::BUILD_DATA_BRIEF,
        };
        let task = query.task_id.map(rows::id_text);
        let found = queries::query(statement)
            .bind(query.node_name.as_deref())
            .bind(query.node_name.as_deref())
            .bind(task.as_deref())
            .bind(task.as_deref())
            .bind(query.latest)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("build_data", "build_data"))?;
        found.iter().map(rows::build_data).collect()
    }
}
