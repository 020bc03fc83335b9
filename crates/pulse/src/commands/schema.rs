//! `pulse schema apply`: creates the batch layer's keyspace and tables (idempotent).

use std::process::ExitCode;

use pulse_core::PulseConfig;
use serde_json::json;

use crate::console::Output;

/// Applies `schema.cql` with the configured keyspace and replication; prints what it did.
pub async fn apply(config: &PulseConfig, output: Output) -> anyhow::Result<ExitCode> {
    let report = pulse_batch::schema::apply(&config.batch).await?;
    let keyspace = &config.batch.keyspace;
    let keyspace_status = if report.keyspace_created {
        "created"
    } else {
        "exists"
    };
    let objects = std::iter::once(("keyspace", keyspace.clone(), keyspace_status))
        .chain(
            report
                .tables_created
                .iter()
                .map(|table| ("table", format!("{keyspace}.{table}"), "created")),
        )
        .chain(
            report
                .tables_present
                .iter()
                .map(|table| ("table", format!("{keyspace}.{table}"), "exists")),
        )
        .chain(
            report
                .columns_added
                .iter()
                .map(|column| ("column", format!("{keyspace}.{column}"), "added")),
        );
    for (kind, name, status) in objects {
        let value = json!({ "kind": kind, "name": name, "status": status });
        output.result(&value, || match kind {
            "table" => format!("{name}: {status}"),
            _ => format!("{kind} {name}: {status}"),
        })?;
    }
    Ok(ExitCode::SUCCESS)
}
