//! What the live sources' soak tests share: the soak's length, the spacing of its SIGKILLs,
//! and the checks of a request log and of delivery lags.

use std::ops::Range;
use std::time::{Duration, Instant};

/// The soak's length: `PULSE_SOAK_SECS` (120 s in the suite; `scripts/soak` runs 1,800),
/// at least a minute.
pub fn length() -> Duration {
    let secs = std::env::var("PULSE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120u64);
    Duration::from_secs(secs.max(60))
}

/// Whether this is the long form (20 minutes or more).
pub fn is_long(length: Duration) -> bool {
    length >= Duration::from_secs(1_200)
}

/// The time between two SIGKILLs: a quarter to two fifths of the soak, 2 to 5 minutes in
/// the long form.
pub fn kill_gap(length: Duration) -> Range<Duration> {
    (length / 4).min(Duration::from_secs(120))..(length * 2 / 5).min(Duration::from_secs(300))
}

/// What disturbs a source in a soak, in the order of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL and restart.
    Kill,
    /// The first of the source's own faults (a 5xx burst, a cut stream).
    First,
    /// The second (a 429, a stall).
    Second,
}

/// A soak's faults: rounds at random moments (a [`kill_gap`] apart), each a SIGKILL, then
/// the source's two faults a few seconds apart while it recovers; between rounds, quiet
/// stretches in which every delivery is held to its bound.
pub struct Schedule {
    gap: Range<Duration>,
    next: Instant,
    pending: Vec<(Instant, Fault)>,
    /// Each disturbance (Unix ms) with how long the lag may stay high after it.
    disturbances: Vec<(i64, Duration)>,
    recovery: Duration,
}

impl Schedule {
    /// Rounds over `length`, each disturbance followed by `recovery` of high lag allowed.
    pub fn new(length: Duration, recovery: Duration) -> Schedule {
        let gap = kill_gap(length);
        let next = Instant::now() + rand::Rng::random_range(&mut rand::rng(), gap.clone());
        Schedule {
            gap,
            next,
            pending: Vec::new(),
            disturbances: Vec::new(),
            recovery,
        }
    }

    /// The faults due now, in order; each is recorded as a disturbance.
    pub fn due(&mut self) -> Vec<Fault> {
        let now = Instant::now();
        if now >= self.next {
            self.pending = vec![
                (now, Fault::Kill),
                (now + Duration::from_secs(4), Fault::First),
                (now + Duration::from_secs(8), Fault::Second),
            ];
            self.next = now + rand::Rng::random_range(&mut rand::rng(), self.gap.clone());
        }
        let due: Vec<Fault> = self
            .pending
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, fault)| *fault)
            .collect();
        self.pending.retain(|(at, _)| *at > now);
        for _ in &due {
            self.disturbances.push((wall_ms(), self.recovery));
        }
        due
    }

    /// Holds each delivery made away from disturbances to `bound`: an item made (Unix ms)
    /// within `bound` before one, or within its recovery after, may be late; every other
    /// must arrive within `bound`, and at least a tenth of them are such. Returns
    /// (items held to the bound, the worst of their lags, the worst lag of all), in ms.
    pub fn check_lags(
        &self,
        what: &str,
        deliveries: &[(i64, i64)],
        bound: Duration,
        started_ms: i64,
    ) -> (usize, i64, i64) {
        let bound_ms = bound.as_millis() as i64;
        let near = |made: i64| {
            made < started_ms + self.recovery.as_millis() as i64
                || self.disturbances.iter().any(|(at, recovery)| {
                    made >= at - bound_ms && made <= at + recovery.as_millis() as i64
                })
        };
        let (mut steady, mut worst_steady, mut worst) = (0, 0, 0);
        let mut late = Vec::new();
        for (made, delivered) in deliveries {
            let lag = delivered - made;
            worst = worst.max(lag);
            if !near(*made) {
                steady += 1;
                worst_steady = worst_steady.max(lag);
                if lag > bound_ms {
                    late.push((made - started_ms, lag));
                }
            }
        }
        let offsets: Vec<i64> = self
            .disturbances
            .iter()
            .map(|(at, _)| at - started_ms)
            .collect();
        assert!(
            late.is_empty(),
            "{what}: late away from disturbances (ms from start, lag ms): {late:?}; disturbances at {offsets:?}"
        );
        assert!(
            steady * 10 >= deliveries.len(),
            "{what}: only {steady} of {} deliveries away from disturbances at {offsets:?}",
            deliveries.len()
        );
        (steady, worst_steady, worst)
    }
}

/// The wall clock, Unix milliseconds.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The most requests any sliding `window` of the (ordered) log holds.
pub fn busiest_window(times: &[Instant], window: Duration) -> usize {
    let mut busiest = 0;
    let mut first = 0;
    for (last, at) in times.iter().enumerate() {
        while at.duration_since(times[first]) >= window {
            first += 1;
        }
        busiest = busiest.max(last + 1 - first);
    }
    busiest
}
