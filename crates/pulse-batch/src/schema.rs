//! `pulse schema apply`: the keyspace and tables of `schema.cql`, with the configured keyspace
//! name and replication. Idempotent: what exists is left alone, what is missing is created,
//! and a column a newer Pulse added to an existing table is added to it.

use pulse_core::config::{BatchConfig, ReplicationClass};
use scylla::client::session::Session;

use crate::session::{check_keyspace, open_session};
use crate::{cql, BatchError};

/// The schema file at the top of the repository, compiled in.
pub const SCHEMA_CQL: &str = include_str!("../../../schema.cql");

/// One table of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    pub name: String,
    /// Each column's name and CQL type, in order.
    pub columns: Vec<(String, String)>,
    /// The `CREATE TABLE` statement, qualified with the keyspace.
    pub statement: String,
}

/// The tables of `schema.cql`, in order, qualified with `keyspace`.
pub fn tables(keyspace: &str) -> Vec<TableDefinition> {
    statements(SCHEMA_CQL)
        .into_iter()
        .filter_map(|statement| {
            let rest = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
            let (name, body) = rest.split_once(char::is_whitespace)?;
            let columns = body
                .lines()
                .map(str::trim)
                .take_while(|line| !line.starts_with("PRIMARY KEY"))
                .filter_map(|line| line.split_once(char::is_whitespace))
                .map(|(name, kind)| {
                    (
                        name.to_string(),
                        kind.trim().trim_end_matches(',').to_string(),
                    )
                })
                .collect();
            Some(TableDefinition {
                name: name.to_string(),
                columns,
                statement: format!("CREATE TABLE IF NOT EXISTS {keyspace}.{name} {body}"),
            })
        })
        .collect()
}

/// The `CREATE KEYSPACE` statement for the configured name and replication.
pub fn keyspace_statement(config: &BatchConfig) -> Result<String, BatchError> {
    let keyspace = check_keyspace(&config.keyspace)?;
    let replication = match config.replication_class {
        ReplicationClass::SimpleStrategy => format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            config.replication_factor.max(1)
        ),
        ReplicationClass::NetworkTopologyStrategy => {
            if config.datacenters.is_empty() {
                return Err(BatchError::Config(
                    "NetworkTopologyStrategy needs batch.datacenters, e.g. { dc1 = 3 }".into(),
                ));
            }
            let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
            for (datacenter, replicas) in &config.datacenters {
                if !datacenter
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    return Err(BatchError::Config(format!(
                        "data centre name {datacenter:?} has characters CQL cannot take here"
                    )));
                }
                parts.push(format!("'{datacenter}': {replicas}"));
            }
            format!("{{{}}}", parts.join(", "))
        }
    };
    Ok(format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"
    ))
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    pub keyspace_created: bool,
    pub tables_created: Vec<String>,
    pub tables_present: Vec<String>,
    /// Columns added to existing tables, as `table.column`.
    pub columns_added: Vec<String>,
}

/// How the keyspace differs from `schema.cql`: empty lists when it is up to date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaDiff {
    pub keyspace_missing: bool,
    /// Tables of the schema that exist, by name.
    pub tables_present: Vec<String>,
    pub tables_missing: Vec<TableDefinition>,
    /// Columns the schema names that existing tables lack: table, column and CQL type.
    pub columns_missing: Vec<(String, String, String)>,
}

impl SchemaDiff {
    /// Whether `pulse schema apply` has nothing to do.
    pub fn is_up_to_date(&self) -> bool {
        !self.keyspace_missing && self.tables_missing.is_empty() && self.columns_missing.is_empty()
    }
}

/// Compares the keyspace with `schema.cql` without changing anything.
pub async fn compare(config: &BatchConfig) -> Result<SchemaDiff, BatchError> {
    let session = open_session(config).await?;
    diff(&session, &config.keyspace).await
}

/// Creates the keyspace and every missing table, and adds to existing tables the columns
/// the schema names that they lack (a newer Pulse's additions; adding a regular column is
/// cheap and leaves existing rows as they are, the new column empty).
pub async fn apply(config: &BatchConfig) -> Result<SchemaReport, BatchError> {
    let keyspace_cql = keyspace_statement(config)?;
    let keyspace = config.keyspace.as_str();
    let session = open_session(config).await?;
    let diff = diff(&session, keyspace).await?;
    if diff.keyspace_missing {
        run(&session, &keyspace_cql).await?;
    }
    for (table, column, kind) in &diff.columns_missing {
        run(
            &session,
            &format!("ALTER TABLE {keyspace}.{table} ADD {column} {kind}"),
        )
        .await?;
    }
    for table in &diff.tables_missing {
        run(&session, &table.statement).await?;
    }
    Ok(SchemaReport {
        keyspace_created: diff.keyspace_missing,
        tables_created: diff.tables_missing.into_iter().map(|t| t.name).collect(),
        tables_present: diff.tables_present,
        columns_added: diff
            .columns_missing
            .into_iter()
            .map(|(table, column, _)| format!("{table}.{column}"))
            .collect(),
    })
}

async fn diff(session: &Session, keyspace: &str) -> Result<SchemaDiff, BatchError> {
    let existing = existing_tables(session, keyspace).await?;
    let mut diff = SchemaDiff {
        keyspace_missing: existing.is_none(),
        ..SchemaDiff::default()
    };
    let existing = existing.unwrap_or_default();
    for table in tables(keyspace) {
        match existing.iter().find(|(name, _)| *name == table.name) {
            Some((_, columns)) => {
                for (column, kind) in table.columns.iter().filter(|(c, _)| !columns.contains(c)) {
                    diff.columns_missing
                        .push((table.name.clone(), column.clone(), kind.clone()));
                }
                diff.tables_present.push(table.name);
            }
            None => diff.tables_missing.push(table),
        }
    }
    Ok(diff)
}

async fn run(session: &Session, statement: &str) -> Result<(), BatchError> {
    session
        .query_unpaged(statement, &[])
        .await
        .map(|_| ())
        .map_err(|e| cql("schema change", e))
}

/// The tables of `keyspace` with their columns, or `None` if it does not exist.
async fn existing_tables(
    session: &Session,
    keyspace: &str,
) -> Result<Option<Vec<(String, Vec<String>)>>, BatchError> {
    session
        .refresh_metadata()
        .await
        .map_err(|e| cql("metadata refresh", e))?;
    let state = session.get_cluster_state();
    Ok(state.get_keyspace(keyspace).map(|found| {
        found
            .tables
            .iter()
            .map(|(name, table)| (name.clone(), table.columns.keys().cloned().collect()))
            .collect()
    }))
}

/// The statements of a CQL script: `--` comments removed, split on `;`.
fn statements(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_names_every_table_the_code_uses() {
        let tables = tables("pulse_x");
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "posts_by_channel",
                "posts_by_id",
                "deleted_posts",
                "mentions",
                "channel_days",
                "history_months",
                "channel_rollups",
                "term_rollups",
                "batch_watermark"
            ]
        );
        let posts = &tables[0];
        let names: Vec<&str> = posts
            .columns
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "channel",
                "hour",
                "created_at",
                "id",
                "sentiment",
                "score",
                "post"
            ]
        );
        assert_eq!(
            posts.columns[1],
            ("hour".to_string(), "timestamp".to_string())
        );
        let rollups = tables.iter().find(|t| t.name == "channel_rollups").unwrap();
        assert!(rollups
            .columns
            .contains(&("languages".to_string(), "map<text, bigint>".to_string())));
        assert!(posts
            .statement
            .starts_with("CREATE TABLE IF NOT EXISTS pulse_x.posts_by_channel ("));
        assert!(!posts.statement.contains("--"));
    }

    #[test]
    fn replication_follows_configuration() {
        let mut config = BatchConfig::default();
        assert_eq!(
            keyspace_statement(&config).unwrap(),
            "CREATE KEYSPACE IF NOT EXISTS pulse WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        config.replication_class = ReplicationClass::NetworkTopologyStrategy;
        assert!(keyspace_statement(&config).is_err());
        config.datacenters = [("eu-west".to_string(), 3), ("us_east".to_string(), 2)].into();
        assert_eq!(
            keyspace_statement(&config).unwrap(),
            "CREATE KEYSPACE IF NOT EXISTS pulse WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'eu-west': 3, 'us_east': 2}"
        );
        config.datacenters = [("dc1'".to_string(), 3)].into();
        assert!(keyspace_statement(&config).is_err());
        config.keyspace = "bad name".into();
        assert!(keyspace_statement(&config).is_err());
    }
}
