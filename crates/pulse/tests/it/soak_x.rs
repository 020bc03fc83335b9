//! The X source in a soak: `pulse ingest x` (filtered stream, gaps filled by recent search)
//! against the in-process fake for `PULSE_SOAK_SECS`, SIGKILLed at random (every 2 to 5
//! minutes in the long form). Meanwhile the fake streams posts, edits some, cuts the stream
//! mid-line, stalls it silently, and answers a search 429 now and then; recent search has
//! a fixed window (12 a minute in the short form, 450 per 15 minutes in the long one).
//!
//! Asserted: every post exactly once on the raw topic and every edit once as an update
//! (never followed by an older version);
//! no sliding window holding more searches than the limit, restarts included; no search
//! before the reset of a 429; and, away from each disturbance, every post delivered within
//! a few seconds.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::soak::{self, busiest_window, wall_ms, Fault, Schedule};
use common::{read_all, wait_for, Lane, Record};
use pulse_ingest::x::fake::FakeX;

const TOKEN: &str = "fake-bearer";
/// The longest delivery away from disturbances: the batch, the transaction.
const DELIVERY: Duration = Duration::from_secs(5);
/// How long after a disturbance (a restart, a cut, a stall) the lag may stay high.
const RECOVERY: Duration = Duration::from_secs(15);
/// The reset of the injected search 429s.
const RESET: u64 = 3;

/// Whether post `id` is on the raw topic as it should end: its edit last when it was
/// edited.
fn complete(ids: &BTreeMap<String, (Vec<String>, i64)>, id: &str, edited: &[String]) -> bool {
    let edit = format!("edited {id}");
    ids.get(&format!("twitter:{id}"))
        .is_some_and(|(texts, _)| !edited.iter().any(|e| e == id) || texts.last() == Some(&edit))
}

/// Records on the raw topic by post id: their texts, and the first one's timestamp.
fn by_id(records: &[Record]) -> BTreeMap<String, (Vec<String>, i64)> {
    let mut ids: BTreeMap<String, (Vec<String>, i64)> = BTreeMap::new();
    for record in records {
        let value = record.json();
        let id = value["id"].as_str().expect("id").to_string();
        let entry = ids.entry(id).or_insert((Vec::new(), i64::MAX));
        entry
            .0
            .push(value["text"].as_str().expect("text").to_string());
        entry.1 = entry.1.min(record.timestamp_ms.expect("timestamp"));
    }
    ids
}

#[test]
fn every_post_once_within_the_search_window_through_random_sigkills() {
    let length = soak::length();
    let long = soak::is_long(length);
    let (window, limit) = if long { (900, 450) } else { (60, 12) };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeX::start(TOKEN)).expect("fake x");
    fake.limit_searches(limit, Duration::from_secs(window));
    // Keep-alives within the read timeout, as X's every 20 s are within its 30 s.
    fake.keep_alive_every(Duration::from_secs(1));
    let lane = Lane::new("soak-x", 3);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
        r##"[sources.x.soak]
bearer_token = "{TOKEN}"
api_url = "{url}"
rules = [{{ tag = "rust", value = "#rustlang" }}, {{ tag = "go", value = "#golang" }}]
read_timeout_ms = 3000
backoff_scale = 0.01
"##,
        url = fake.url()
    ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "x",
        "--instance",
        "soak",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut schedule = Schedule::new(length, RECOVERY);
    let started = Instant::now();
    let mut source = lane.spawn("x.0", &args, &env);
    wait_for("the stream connected", || fake.open_streams() == 1);
    let mut posts: Vec<(String, i64)> = Vec::new();
    let mut edits: VecDeque<(Instant, String)> = VecDeque::new();
    let mut edited: Vec<String> = Vec::new();
    let mut restarts = 0;
    while started.elapsed() < length {
        let now = Instant::now();
        let i = posts.len();
        let tag = if i.is_multiple_of(3) { "go" } else { "rust" };
        let text = format!("post {i} about {tag}");
        let due = schedule.due();
        let id = if due.contains(&Fault::First) {
            fake.post_and_cut(tag, &text)
        } else {
            fake.post(tag, &text)
        };
        if i % 40 == 11 {
            edits.push_back((now + Duration::from_secs(2), id.clone()));
        }
        posts.push((id, wall_ms()));
        while edits.front().is_some_and(|(due, _)| *due <= now) {
            let (_, id) = edits.pop_front().expect("a due edit");
            fake.edit(&id, &format!("edited {id}"));
            edited.push(id);
        }
        if due.contains(&Fault::Second) {
            // A silent stall, and the search of the gap it leaves refused once.
            fake.refuse_searches(&[RESET]);
            fake.stall();
        }
        if due.contains(&Fault::Kill) {
            restarts += 1;
            lane.kill_and_restart(&mut source, &format!("x.{restarts}"), &args, &env);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, id) in edits.drain(..) {
        fake.edit(&id, &format!("edited {id}"));
        edited.push(id);
    }

    let drained = Instant::now();
    let ids = loop {
        let ids = by_id(&read_all(&lane.raw, lane.partitions));
        if posts.iter().all(|(id, _)| complete(&ids, id, &edited)) {
            break ids;
        }
        if drained.elapsed() >= Duration::from_secs(120) {
            let started_ms = wall_ms() - started.elapsed().as_millis() as i64;
            let missing: Vec<(i64, &String)> = posts
                .iter()
                .filter(|(id, _)| !complete(&ids, id, &edited))
                .map(|(id, made)| (made - started_ms, id))
                .collect();
            panic!(
                "{} posts incomplete (ms from start, id): {:?}; searches {:?}; \
                 stats {:?}; logs: {}",
                missing.len(),
                &missing[..missing.len().min(20)],
                fake.search_log()
                    .iter()
                    .map(|(at, status)| (
                        at.duration_since(tokio::time::Instant::from_std(started))
                            .as_millis(),
                        *status
                    ))
                    .collect::<Vec<_>>(),
                fake.stats(),
                lane.log_tails(20)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());
    assert_eq!(by_id(&read_all(&lane.raw, lane.partitions)), ids);

    // Exactly once: each post, and each edit as an update of the first id.
    assert_eq!(ids.len(), posts.len(), "an unknown id");
    for (id, _) in &posts {
        let (texts, _) = &ids[&format!("twitter:{id}")];
        if edited.contains(id) {
            // The edit last; the first version before it, unless the stream brought the
            // edit before a gap's search found the first version (never after it).
            assert_eq!(
                texts.last(),
                Some(&format!("edited {id}")),
                "{id}: {texts:?}"
            );
            assert!(texts.len() <= 2, "{id}: {texts:?}");
        } else {
            assert_eq!(texts.len(), 1, "{id}: {texts:?}");
        }
    }

    // Searches within the window; none before a 429's reset.
    let log = fake.search_log();
    let times: Vec<Instant> = log.iter().map(|(at, _)| at.into_std()).collect();
    let busiest = busiest_window(&times, Duration::from_secs(window));
    assert!(
        busiest <= limit as usize,
        "{busiest} searches in a sliding {window} s"
    );
    for (n, (at, status)) in log.iter().enumerate() {
        if *status == 429 {
            if let Some((next, _)) = log.get(n + 1) {
                assert!(
                    next.duration_since(*at) >= Duration::from_secs(RESET),
                    "a search {:?} after a 429",
                    next.duration_since(*at)
                );
            }
        }
    }
    let stats = fake.stats();
    assert_eq!(stats.searches_over_limit, 0, "{stats:?}");

    // Away from disturbances, every post within a few seconds.
    let started_ms = wall_ms() - started.elapsed().as_millis() as i64;
    let deliveries: Vec<(i64, i64)> = posts
        .iter()
        .map(|(id, made)| (*made, ids[&format!("twitter:{id}")].1))
        .collect();
    let (steady, worst_steady, worst) = schedule.check_lags("x", &deliveries, DELIVERY, started_ms);
    println!(
        "x soak: {} s, {} posts ({} edited), {restarts} restarts, {} connections, {} searches \
         (busiest {window} s window {busiest} of {limit}, {} answered 429); lag worst {worst} \
         ms, away from disturbances {worst_steady} ms over {steady} posts",
        length.as_secs(),
        posts.len(),
        edited.len(),
        stats.connects,
        stats.searches,
        log.iter().filter(|(_, status)| *status == 429).count(),
    );
}
