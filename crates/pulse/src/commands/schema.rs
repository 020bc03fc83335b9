//! `pulse schema apply`: creates the batch layer's keyspace and tables (idempotent).

use std::process::ExitCode;

use pulse_core::PulseConfig;

/// Applies `schema.cql` with the configured keyspace and replication; prints what it did.
pub async fn apply(config: &PulseConfig) -> anyhow::Result<ExitCode> {
    let report = pulse_batch::schema::apply(&config.batch).await?;
    let keyspace = &config.batch.keyspace;
    let status = if report.keyspace_created {
        "created"
    } else {
        "exists"
    };
    println!("keyspace {keyspace}: {status}");
    for table in &report.tables_created {
        println!("{keyspace}.{table}: created");
    }
    for table in &report.tables_present {
        println!("{keyspace}.{table}: exists");
    }
    for column in &report.columns_added {
        println!("{keyspace}.{column}: column added");
    }
    Ok(ExitCode::SUCCESS)
}
