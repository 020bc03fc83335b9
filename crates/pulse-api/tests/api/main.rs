//! The query API against the real local Redis and CQL server (`PULSE_TEST_REDIS_URL`,
//! `PULSE_TEST_CQL_NODES`), served on a free port and called over HTTP. Each test has its
//! own Redis key prefix and keyspace.

mod harness;

mod admin;
mod analyze;
mod history;
mod live;
mod openapi;
mod posts;
mod publish;
mod server;
