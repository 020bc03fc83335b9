//! Shared helpers of the integration tests: each test gets its own topics and consumer
//! group on the real local broker, runs the real `pulse` binary, and reads topics back.
//! Tests that stop or kill a server run a private stack of their own ([`PrivateStack`]).

pub mod soak;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pulse_core::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Longest any test waits for the pipeline to catch up.
pub const PATIENCE: Duration = Duration::from_secs(180);

pub use pulse_testkit::servers::brokers;

/// The shipped model directory, by absolute path, as a configuration value.
pub fn shipped_model() -> String {
    pulse_testkit::shipped_model().display().to_string()
}

/// One test's private topics and group.
pub struct Lane {
    pub brokers: String,
    pub raw: String,
    pub enriched: String,
    pub dlq: String,
    pub group: String,
    pub partitions: i32,
    pub dir: tempfile::TempDir,
}

impl Lane {
    /// Creates `partitions`-partition topics named after `test` and a unique suffix on the
    /// shared stack's broker.
    pub fn new(test: &str, partitions: i32) -> Lane {
        Lane::on(&brokers(), test, partitions)
    }

    /// [`Lane::new`] on the broker at `brokers`.
    pub fn on(brokers: &str, test: &str, partitions: i32) -> Lane {
        let suffix = pulse_testkit::unique(test);
        let lane = Lane {
            brokers: brokers.to_string(),
            raw: format!("test.{suffix}.raw"),
            enriched: format!("test.{suffix}.enriched"),
            dlq: format!("test.{suffix}.dlq"),
            group: format!("test.{suffix}.enrich"),
            partitions,
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        let config = lane.kafka_config();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime
            .block_on(pulse_kafka::admin::create_topics(
                &config,
                &[&lane.raw, &lane.enriched, &lane.dlq],
            ))
            .expect(
                "topics created on the local broker (is the stack running? scripts/stack start)",
            );
        lane
    }

    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers.clone(),
            partitions: self.partitions,
            ..KafkaConfig::default()
        }
    }

    /// A `pulse` command configured for this lane, and for the test servers of
    /// pulse-testkit, through `PULSE_*` variables.
    pub fn pulse(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pulse"));
        command
            .args(args)
            .env("PULSE_KAFKA__BROKERS", &self.brokers)
            .env("PULSE_BATCH__NODES", pulse_testkit::servers::cql_nodes())
            .env(
                "PULSE_SPEED__REDIS_URL",
                pulse_testkit::servers::redis_url(),
            )
            .env("PULSE_KAFKA__TOPICS__RAW", &self.raw)
            .env("PULSE_KAFKA__TOPICS__ENRICHED", &self.enriched)
            .env("PULSE_KAFKA__TOPICS__DLQ", &self.dlq)
            .env("PULSE_KAFKA__COMMIT_INTERVAL_MS", "200")
            .env("PULSE_KAFKA__STATISTICS_INTERVAL_MS", "1000")
            .env("PULSE_ENRICH__GROUP", &self.group)
            .env("PULSE_ENRICH__MODELS", format!("[{:?}]", shipped_model()))
            .env("PULSE_METRICS__LISTEN", "127.0.0.1:0")
            .env("PULSE_API__LISTEN", "127.0.0.1:0")
            .env("PULSE_LOG__FORMAT", "json")
            .env("PULSE_LOG__FILTER", "info")
            .stdin(Stdio::null());
        command
    }

    /// Runs `pulse ingest file PATH` and asserts it succeeded.
    pub fn ingest_file(&self, path: &Path) {
        let output = self
            .pulse(&["ingest", "file", path.to_str().expect("utf-8 path")])
            .output()
            .expect("pulse ingest runs");
        assert!(
            output.status.success(),
            "pulse ingest failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `pulse enrich` with its logs in `<dir>/<name>.log`.
    pub fn spawn_enrich(&self, name: &str, extra_env: &[(&str, &str)]) -> Role {
        self.spawn(name, &["enrich"], extra_env)
    }

    /// Writes `toml` to `pulse.toml` in the lane's directory; returns its path.
    pub fn write_config(&self, toml: &str) -> String {
        let path = self.dir.path().join("pulse.toml");
        std::fs::write(&path, toml).expect("config written");
        path.to_str().expect("utf-8 path").to_string()
    }

    /// SIGKILLs `role`, waits a second, and starts `pulse ARGS...` again in its place,
    /// logging to `<dir>/<name>.log`.
    pub fn kill_and_restart(
        &self,
        role: &mut Role,
        name: &str,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) {
        role.kill();
        std::thread::sleep(Duration::from_secs(1));
        *role = self.spawn(name, args, extra_env);
    }

    /// The last `lines` lines of every role's log, named, for a failure's message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.retain(|path| path.extension().is_some_and(|e| e == "log"));
        logs.sort();
        let mut out = String::new();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n==> {}\n", path.display()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
        }
        out
    }

    /// Starts `pulse ARGS...` with its logs in `<dir>/<name>.log`.
    pub fn spawn(&self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Role {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = self.pulse(args);
        command
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file);
        Role {
            child: command.spawn().expect("pulse starts"),
            log,
        }
    }
}

/// A running `pulse` role.
pub struct Role {
    pub child: Child,
    pub log: PathBuf,
}

impl Role {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal sent");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pulse did not exit within 60 s of SIGTERM; log: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// JSON log lines whose message is `message`.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp (its producer's create time), Unix milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("record is json")
    }
}

fn reader(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "pulse-tests-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader consumer")
}

/// Produces keyed records to `topic` in order, each acknowledged before the next.
pub fn produce(topic: &str, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
    produce_on(&brokers(), topic, records);
}

/// [`produce`] on the broker at `brokers`.
pub fn produce_on(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
) {
    send_all(
        brokers,
        topic,
        records.into_iter().map(|(k, p)| (k, p, None)),
    );
}

/// Like [`produce`], each record stamped with its time (for replays by time).
pub fn produce_at(
    topic: &str,
    records: impl IntoIterator<Item = (String, Vec<u8>, chrono::DateTime<chrono::Utc>)>,
) {
    send_all(
        &brokers(),
        topic,
        records
            .into_iter()
            .map(|(k, p, at)| (k, p, Some(at.timestamp_millis()))),
    );
}

fn send_all(
    brokers: &str,
    topic: &str,
    records: impl Iterator<Item = (String, Vec<u8>, Option<i64>)>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for (key, payload, timestamp) in records {
            let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
            if let Some(millis) = timestamp {
                record = record.timestamp(millis);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .expect("produced");
        }
    });
}

/// High watermarks of each partition of `topic`: records plus transaction markers.
pub fn high_watermarks(topic: &str, partitions: i32) -> Vec<i64> {
    high_watermarks_on(&brokers(), topic, partitions)
}

/// [`high_watermarks`] on the broker at `brokers`.
pub fn high_watermarks_on(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    try_high_watermarks_on(brokers, topic, partitions).expect("watermarks")
}

/// [`high_watermarks_on`], or None while the broker does not answer (it may still be
/// loading its logs after a restart).
pub fn try_high_watermarks_on(brokers: &str, topic: &str, partitions: i32) -> Option<Vec<i64>> {
    let consumer = reader(brokers);
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
                .map(|(_, high)| high)
        })
        .collect()
}

/// Offsets in `topic` (sum of high watermarks): the records of a topic no transaction
/// writes, an upper bound otherwise (markers take offsets too).
pub fn count(topic: &str, partitions: i32) -> i64 {
    high_watermarks(topic, partitions).iter().sum()
}

/// SIGKILLs `pulse enrich` (with `settings`) mid-run twice, once past 3,000 and once past
/// 9,000 offsets on the lane's enriched topic (4 partitions), each time right after a start;
/// fails if the run had already written `total` by a kill.
pub fn kill_enrich_twice(lane: &Lane, settings: &[(&str, &str)], total: i64) {
    for (round, threshold) in [(1, 3_000i64), (2, 9_000)] {
        let mut enrich = lane.spawn_enrich(&format!("enrich-{round}"), settings);
        wait_for("enriched records before the kill", || {
            count(&lane.enriched, 4) >= threshold
        });
        enrich.kill();
        let at_kill = count(&lane.enriched, 4);
        assert!(
            at_kill < total,
            "round {round}: the run had finished ({at_kill} offsets) before the kill"
        );
        println!("round {round}: SIGKILL with {at_kill} offsets on the enriched topic");
    }
}

/// The ids of every post `store` holds for `channel` in `[from, to)`, newest first, read
/// page by page with the cursor.
pub async fn stored_ids(
    store: &pulse_batch::BatchStore,
    channel: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    stored_posts(store, channel, from, to)
        .await
        .into_iter()
        .map(|p| p.post.id)
        .collect()
}

/// Every post `store` holds for `channel` in `[from, to)`, newest first, read page by page
/// with the cursor.
pub async fn stored_posts(
    store: &pulse_batch::BatchStore,
    channel: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<pulse_core::EnrichedPost> {
    let mut posts = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .posts(&pulse_batch::PostQuery {
                channel: channel.into(),
                from,
                to,
                sentiment: None,
                entity: None,
                keyword: None,
                lang: None,
                limit: 1_000,
                cursor,
            })
            .await
            .expect("posts read");
        posts.extend(page.posts);
        match page.next_cursor {
            Some(token) => cursor = Some(pulse_batch::Cursor::decode(&token).expect("cursor")),
            None => return posts,
        }
    }
}

/// Every committed record of `topic` up to its current end, as a reader with
/// `isolation.level=read_committed` sees it (aborted records and markers skipped).
pub fn read_all(topic: &str, partitions: i32) -> Vec<Record> {
    read_all_on(&brokers(), topic, partitions)
}

/// [`read_all`] on the broker at `brokers`.
pub fn read_all_on(brokers: &str, topic: &str, partitions: i32) -> Vec<Record> {
    let ends = high_watermarks_on(brokers, topic, partitions);
    let consumer = reader(brokers);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    // A partition is read when the reader reached its end (EOF) at or past the end it had
    // at the start: the last offsets can be transaction markers, never delivered. An empty
    // partition is read already.
    let mut done: Vec<bool> = (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            low >= high
        })
        .collect();
    let mut records = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while done.iter().any(|d| !d) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} stalled: done {done:?} of ends {ends:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                let position = consumer
                    .position()
                    .expect("position")
                    .find_partition(topic, partition)
                    .map(|e| e.offset());
                if let Some(Offset::Offset(at)) = position {
                    if at >= ends[partition as usize] {
                        done[partition as usize] = true;
                    }
                }
                continue;
            }
            Err(error) => panic!("reading {topic}: {error}"),
        };
        let headers = message
            .headers()
            .map(pulse_kafka::dlq::headers_as_map)
            .unwrap_or_default();
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        });
    }
    records
}

/// Offsets committed by `group` on each partition of `topic` (-1 when none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_on(&brokers(), group, topic, partitions)
}

/// [`committed`] on the broker at `brokers`.
pub fn committed_on(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    // The group coordinator answers NotCoordinator or CoordinatorLoadInProgress while it
    // moves or loads its partition of __consumer_offsets: asked again, it answers.
    let deadline = Instant::now() + PATIENCE;
    let offsets = loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(offsets) => break offsets,
            Err(error) if Instant::now() < deadline => {
                eprintln!("committed offsets of {group}: {error}; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("committed offsets of {group}: {error}"),
        }
    };
    (0..partitions)
        .map(
            |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// Polls `condition` every 50 ms until it holds; fails the test after `PATIENCE`.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on 127.0.0.1:`port`: the status and the body, or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// A free TCP port on loopback, for a server a test may stop and start again on it.
///
/// It is drawn outside the kernel's ephemeral range: while its server is down, a port from
/// that range can become the local end of any outgoing connection (a client reconnecting to
/// that very port can even connect to itself), and the restarted server then fails to bind
/// (Cassandra exits during start). No port is handed out twice by one test process.
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (low, high) = ephemeral_ports();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        // Above the usual servers' ports (9042, 9092, 6379...), below or above the range.
        let port = rng.random_range(10_000..=u16::MAX);
        if (low..=high).contains(&port) || handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port outside the ephemeral range {low}-{high}");
}

/// The kernel's range of ports for outgoing connections (Linux's default when unreadable).
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(|end| end.parse::<u16>());
            Some((ends.next()?.ok()?, ends.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// A stack of this test's own (`scripts/stack` on free ports and a temporary directory),
/// for tests that stop, kill and restart servers without disturbing the shared stack. Only
/// the named services are started (`kafka`, `cql`, `redis`).
pub struct PrivateStack {
    pub dir: tempfile::TempDir,
    pub kafka_port: u16,
    pub cql_port: u16,
    pub redis_port: u16,
    ports: Vec<(&'static str, String)>,
}

impl PrivateStack {
    /// Starts `services` and waits until they answer.
    pub fn start(services: &[&str]) -> PrivateStack {
        let (kafka_port, cql_port, redis_port) = (free_port(), free_port(), free_port());
        let ports = vec![
            ("PULSE_STACK_KAFKA_PORT", kafka_port.to_string()),
            ("PULSE_STACK_KAFKA_CONTROLLER_PORT", free_port().to_string()),
            ("PULSE_STACK_CQL_PORT", cql_port.to_string()),
            ("PULSE_STACK_CQL_STORAGE_PORT", free_port().to_string()),
            ("PULSE_STACK_REDIS_PORT", redis_port.to_string()),
        ];
        let stack = PrivateStack {
            dir: tempfile::tempdir().expect("stack directory"),
            kafka_port,
            cql_port,
            redis_port,
            ports,
        };
        let mut args = vec!["start"];
        args.extend_from_slice(services);
        stack.run(&args);
        stack
    }

    /// Runs `scripts/stack ARGS...` on this stack; its output. Fails the test if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/stack");
        let output = Command::new(script)
            .args(args)
            .env("PULSE_STACK_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/stack runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "scripts/stack {args:?} failed:\n{text}"
        );
        text
    }

    /// SIGKILL of one service, as a crash would end it.
    pub fn kill(&self, service: &str) {
        let pid_file = self.dir.path().join("run").join(format!("{service}.pid"));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL sent");
        wait_for(&format!("{service} to die"), || {
            nix::sys::signal::kill(pid, None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|stat| stat.split_whitespace().nth(2) == Some("Z"))
                    .unwrap_or(true)
        });
    }

    /// The last `lines` lines of a service's log.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("logs").join(format!("{service}.log")))
                .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn cql_nodes(&self) -> String {
        format!("127.0.0.1:{}", self.cql_port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/stack");
        let _ = Command::new(script)
            .arg("stop")
            .env("PULSE_STACK_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
        if std::thread::panicking() {
            // The servers' logs explain a failed start or a lost write; their data may go.
            let kept = tempfile::Builder::new()
                .prefix("pulse-stack-logs-")
                .tempdir()
                .map(|dir| dir.keep().join("logs"))
                .and_then(|kept| {
                    std::fs::rename(self.dir.path().join("logs"), &kept).map(|()| kept)
                });
            match kept {
                Ok(kept) => eprintln!("the private stack's logs are kept in {}", kept.display()),
                Err(e) => eprintln!("cannot keep the private stack's logs: {e}"),
            }
        }
    }
}

/// Per partition, the offset after the last committed record of `topic` (0 when none):
/// where a consumer group that handled everything has committed, transaction markers
/// after the last record aside.
pub fn record_ends(topic: &str, partitions: i32) -> Vec<i64> {
    ends_of(&read_all(topic, partitions), partitions)
}

/// Per partition, the offset after the last of `records` (0 when none).
pub fn ends_of(records: &[Record], partitions: i32) -> Vec<i64> {
    let mut ends = vec![0i64; partitions as usize];
    for record in records {
        let end = &mut ends[record.partition as usize];
        *end = (*end).max(record.offset + 1);
    }
    ends
}

/// Whether `group` has committed every committed record of `topic`.
pub fn caught_up(group: &str, topic: &str, partitions: i32) -> bool {
    let ends = record_ends(topic, partitions);
    committed(group, topic, partitions)
        .iter()
        .zip(&ends)
        .all(|(at, end)| at >= end)
}
