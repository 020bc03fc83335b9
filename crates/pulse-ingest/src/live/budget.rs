//! A source's request budget. Two limits hold at once:
//! - its own cap: at most `limit` requests in any sliding `window`, a ceiling whatever the
//!   API says;
//! - the API's budget, as its rate-limit headers state it (requests left, seconds to the
//!   window's reset): what is left, less a headroom, is spread evenly until the reset, so a
//!   window of any length is paced and never run out.
//!
//! A 429 blocks every request until the reset it names (rounded up, at least a second), or
//! for a growing backoff when it names none. Requests have a [`Priority`]: work that can
//! wait (rechecks) goes only when the budget has room beyond what first work needs.
//!
//! The budget's state ([`BudgetState`], wall-clock times) goes into the source's
//! checkpoint, so that a restarted process continues its predecessor's pace instead of
//! starting blind.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Backoff;

/// Share of the API's window kept unspent, for requests a killed predecessor sent after
/// its last checkpoint and for clocks that disagree.
const HEADROOM: f64 = 0.1;

/// Added to every wait for an API reset: headers give whole seconds, and the server's
/// window may roll over a little after the moment they name.
const RESET_MARGIN: Duration = Duration::from_millis(1_000);

/// The shortest wait after a 429, whatever its reset says.
pub const MIN_RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);

/// The longest reset taken from a header (a day); longer values are misread headers.
const MAX_RESET: f64 = 86_400.0;

/// How urgent a request is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priority {
    /// New items: paced by the budget, never held back for other work.
    First,
    /// Work that can wait (rechecks): sent only while the budget keeps room for
    /// `first_per_second` requests of first work until the API's reset (and within the
    /// own window). Half the budget stays open to it whatever first work asks, so that it
    /// is slowed, never starved.
    WhenRoom { first_per_second: f64 },
}

/// What a response's rate-limit headers said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    /// Requests left in the window.
    pub remaining: Option<f64>,
    /// The window's size, when the API says it (or says what was used).
    pub limit: Option<f64>,
    /// Seconds until the window resets.
    pub reset_in: Option<f64>,
}

/// The API's window as last described, counted down by the requests sent since.
#[derive(Debug, Clone, Copy)]
struct ServerWindow {
    remaining: f64,
    limit: Option<f64>,
    reset_at: Instant,
    observed_at: Instant,
}

/// Requests allowed now, and when more will be.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    limit: usize,
    window: Duration,
    /// Send times within the own window, oldest first.
    sent: VecDeque<Instant>,
    server: Option<ServerWindow>,
    /// No request before this: a 429's reset or backoff.
    blocked_until: Option<Instant>,
}

impl RequestBudget {
    /// At most `limit` requests (at least 1) in any `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            sent: VecDeque::new(),
            server: None,
            blocked_until: None,
        }
    }

    /// How long to wait before a request of `priority` may be sent (zero: now).
    pub fn wait(&mut self, now: Instant, priority: Priority) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|sent| now.duration_since(*sent) >= self.window)
        {
            self.sent.pop_front();
        }
        let first_per_second = match priority {
            Priority::First => 0.0,
            Priority::WhenRoom { first_per_second } => first_per_second.max(0.0),
        };
        // The own cap, less what first work needs in a window when this can wait.
        let kept_own =
            ((first_per_second * self.window.as_secs_f64()).ceil() as usize).min(self.limit / 2);
        let allowed = self.limit.saturating_sub(kept_own).max(1);
        let own = if self.sent.len() >= allowed {
            let nth = self.sent.len() - allowed;
            (self.sent[nth] + self.window).saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        let blocked = self
            .blocked_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        own.max(blocked)
            .max(self.server_wait(now, first_per_second))
    }

    /// The wait the API's window asks for: none once it has reset, the rest of it when
    /// what is left is headroom, else an even share of the time to the reset.
    fn server_wait(&self, now: Instant, first_per_second: f64) -> Duration {
        let Some(server) = self.server.filter(|server| server.reset_at > now) else {
            return Duration::ZERO;
        };
        let to_reset = server.reset_at - now;
        let headroom = server
            .limit
            .map_or(1.0, |limit| (limit * HEADROOM).ceil().max(1.0));
        let open = (server.remaining - headroom).floor();
        let kept_first = (first_per_second * to_reset.as_secs_f64())
            .ceil()
            .min((open / 2.0).floor());
        let usable = open - kept_first;
        if usable < 1.0 {
            return to_reset + RESET_MARGIN;
        }
        match self.sent.back() {
            Some(last) => {
                let share = to_reset.div_f64(usable);
                (*last + share).saturating_duration_since(now)
            }
            None => Duration::ZERO,
        }
    }

    /// Counts a request sent at `now`.
    pub fn spend(&mut self, now: Instant) {
        self.sent.push_back(now);
        if let Some(server) = &mut self.server {
            server.remaining -= 1.0;
        }
    }

    /// Takes in what a response's rate-limit headers said at `now`. Headers without a
    /// count or a reset leave the last description as it is.
    pub fn observe(&mut self, now: Instant, headers: RateHeaders) {
        let remaining = headers.remaining.filter(|r| r.is_finite() && *r >= 0.0);
        let reset_in = headers
            .reset_in
            .filter(|r| r.is_finite() && *r >= 0.0)
            .map(|r| Duration::from_secs_f64(r.min(MAX_RESET).ceil()));
        match (remaining, reset_in) {
            (Some(remaining), Some(reset_in)) => {
                self.server = Some(ServerWindow {
                    remaining,
                    limit: headers.limit.filter(|l| l.is_finite() && *l >= 1.0),
                    reset_at: now + reset_in,
                    observed_at: now,
                });
            }
            (Some(remaining), None) => {
                if let Some(server) = self.server.as_mut().filter(|s| s.reset_at > now) {
                    server.remaining = remaining;
                    server.observed_at = now;
                }
            }
            _ => {}
        }
    }

    /// Takes in a 429 at `now`: no request until the reset it names (`reset_in` seconds,
    /// rounded up, at least a second), or for the next step of `backoff` (at least a second)
    /// when it names none. Returns the wait.
    pub fn rate_limited(
        &mut self,
        now: Instant,
        reset_in: Option<f64>,
        backoff: &mut Backoff,
    ) -> Duration {
        let wait = match reset_in.filter(|r| r.is_finite() && *r >= 0.0) {
            Some(reset) => Duration::from_secs_f64(reset.min(MAX_RESET).ceil()) + RESET_MARGIN,
            None => backoff.next_delay(),
        }
        .max(MIN_RATE_LIMITED_WAIT);
        let until = now + wait;
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        // What the window was said to hold no longer does; the next answer says anew.
        self.server = None;
        wait
    }

    /// Holds every request until `now + wait` (a failure's backoff, when the caller does
    /// not wait itself).
    pub fn hold(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// What the API last said is left (less what was sent since), while its window lasts.
    pub fn remaining(&self) -> Option<f64> {
        let now = Instant::now();
        self.server
            .filter(|server| server.reset_at > now)
            .map(|server| server.remaining.max(0.0))
    }

    /// The state to keep in a checkpoint, with times on the wall clock (`wall_ms` is
    /// `now` in Unix milliseconds).
    pub fn state(&self, now: Instant, wall_ms: i64) -> BudgetState {
        let wall = |at: Instant| {
            if at >= now {
                wall_ms.saturating_add((at - now).as_millis() as i64)
            } else {
                wall_ms.saturating_sub((now - at).as_millis() as i64)
            }
        };
        BudgetState {
            sent_ms: self.sent.iter().map(|at| wall(*at)).collect(),
            server: self
                .server
                .filter(|server| server.reset_at > now)
                .map(|server| ServerState {
                    remaining: server.remaining,
                    limit: server.limit,
                    reset_at_ms: wall(server.reset_at),
                    observed_ms: wall(server.observed_at),
                }),
            blocked_until_ms: self.blocked_until.filter(|b| *b > now).map(wall),
        }
    }

    /// Merges a checkpoint's state into this budget: a restarted process takes its
    /// predecessor's requests and the API's last word, while what this process saw itself
    /// stays (it is newer).
    pub fn restore(&mut self, state: &BudgetState, now: Instant, wall_ms: i64) {
        let instant = |ms: i64| {
            let ago = wall_ms.saturating_sub(ms);
            if ago >= 0 {
                now.checked_sub(Duration::from_millis(ago as u64))
            } else {
                Some(now + Duration::from_millis(ago.unsigned_abs()))
            }
        };
        // Requests of the predecessor are older than any of this process.
        let first_own = self.sent.front().copied();
        let mut earlier: Vec<Instant> = state
            .sent_ms
            .iter()
            .filter_map(|ms| instant(*ms))
            .map(|at| at.min(now))
            .filter(|at| first_own.is_none_or(|first| *at < first))
            .filter(|at| now.duration_since(*at) < self.window)
            .collect();
        earlier.sort();
        for at in earlier.into_iter().rev() {
            self.sent.push_front(at);
        }
        if self.server.is_none() {
            if let Some(server) = &state.server {
                if let (Some(reset_at), Some(observed_at)) =
                    (instant(server.reset_at_ms), instant(server.observed_ms))
                {
                    if reset_at > now && server.remaining.is_finite() {
                        self.server = Some(ServerWindow {
                            remaining: server.remaining,
                            limit: server.limit.filter(|l| l.is_finite() && *l >= 1.0),
                            reset_at,
                            observed_at: observed_at.min(now),
                        });
                    }
                }
            }
        }
        if let Some(until) = state.blocked_until_ms.and_then(instant) {
            if until > now {
                self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            }
        }
    }
}

/// A budget as a checkpoint keeps it: wall-clock times in Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// Requests sent within the own window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_ms: Vec<i64>,
    /// The API's window as last described, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerState>,
    /// No request before this (a 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_until_ms: Option<i64>,
}

/// The API's window in a [`BudgetState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    pub remaining: f64,
    #[serde(default)]
    pub limit: Option<f64>,
    pub reset_at_ms: i64,
    pub observed_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Schedule;

    const FIRST: Priority = Priority::First;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn headers(remaining: f64, limit: f64, reset_in: f64) -> RateHeaders {
        RateHeaders {
            remaining: Some(remaining),
            limit: Some(limit),
            reset_in: Some(reset_in),
        }
    }

    fn backoff() -> Backoff {
        Backoff::exact(Schedule::Doubling {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        })
    }

    #[tokio::test]
    async fn own_cap_holds_in_any_window() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut budget = RequestBudget::new(3, window);
        for second in 0..3 {
            let at = start + Duration::from_secs(second);
            assert_eq!(budget.wait(at, FIRST), Duration::ZERO);
            budget.spend(at);
        }
        let at = start + Duration::from_secs(10);
        assert_eq!(budget.wait(at, FIRST), Duration::from_secs(50));
        assert_eq!(budget.wait(start + window, FIRST), Duration::ZERO);
    }

    #[tokio::test]
    async fn what_is_left_is_spread_evenly_until_the_reset() {
        let start = Instant::now();
        let mut budget = RequestBudget::new(1_000, Duration::from_secs(60));
        // 40 left of 100 for 30 s: 10 are headroom, 30 go one a second.
        budget.observe(start, headers(40.0, 100.0, 30.0));
        assert_eq!(budget.wait(start, FIRST), Duration::ZERO);
        budget.spend(start);
        assert_eq!(budget.wait(start, FIRST), secs(30.0 / 29.0));
        // The same holds for a ten-minute window: 1,000 left over 600 s.
        let mut long = RequestBudget::new(1_000, Duration::from_secs(60));
        long.observe(start, headers(1_000.0, 1_000.0, 600.0));
        long.spend(start);
        let share = long.wait(start, FIRST);
        assert!(share > secs(0.66) && share < secs(0.67), "{share:?}");
    }

    #[tokio::test]
    async fn a_spent_window_waits_for_its_reset_and_no_longer() {
        let start = Instant::now();
        let mut budget = RequestBudget::new(100, Duration::from_secs(60));
        budget.observe(start, headers(10.0, 100.0, 15.0));
        assert_eq!(
            budget.wait(start, FIRST),
            Duration::from_secs(15) + RESET_MARGIN
        );
        let after = start + Duration::from_secs(16);
        assert_eq!(budget.wait(after, FIRST), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_429_waits_out_its_reset_rounded_up_and_never_less_than_a_second() {
        let start = Instant::now();
        let mut budget = RequestBudget::new(100, Duration::from_secs(60));
        let mut backoff = backoff();
        let wait = budget.rate_limited(start, Some(0.0), &mut backoff);
        assert!(wait >= Duration::from_secs(1), "{wait:?}");
        assert_eq!(budget.wait(start, FIRST), wait);
        let later = start + wait;
        let wait = budget.rate_limited(later, Some(9.2), &mut backoff);
        assert!(wait >= Duration::from_secs(10), "{wait:?}");
        assert!(budget.wait(later + Duration::from_secs(9), FIRST) > Duration::ZERO);
        // Without a usable reset: the backoff grows, from at least a second.
        let waits: Vec<Duration> = (0..5)
            .map(|_| budget.rate_limited(later, None, &mut backoff))
            .collect();
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(1)));
        assert!(waits[4] > waits[3] || waits[4] == Duration::from_secs(8));
    }

    #[tokio::test]
    async fn work_that_can_wait_leaves_room_for_first_work() {
        let start = Instant::now();
        let mut budget = RequestBudget::new(100, Duration::from_secs(60));
        // 30 left, 10 headroom, 20 s to go: first work may use 20, one a second.
        budget.observe(start, headers(31.0, 100.0, 20.0));
        budget.spend(start);
        assert_eq!(budget.wait(start, FIRST), secs(1.0));
        // First work needs 0.25 a second, so 5: rechecks share the other 15.
        let rechecks = |first_per_second| Priority::WhenRoom { first_per_second };
        assert_eq!(budget.wait(start, rechecks(0.25)), secs(20.0 / 15.0));
        // Needs beyond half the room leave rechecks half of it: slowed, not starved.
        assert_eq!(budget.wait(start, rechecks(5.0)), secs(2.0));
        assert_eq!(budget.wait(start, rechecks(1_000.0)), secs(2.0));
    }

    #[tokio::test]
    async fn a_restarted_budget_continues_its_predecessors_pace() {
        let start = Instant::now();
        let wall = 1_800_000_000_000;
        let mut old = RequestBudget::new(100, Duration::from_secs(60));
        for i in 0..100 {
            old.spend(start + Duration::from_millis(i * 300));
        }
        let at = start + Duration::from_secs(30);
        old.observe(at, headers(2.0, 100.0, 30.0));
        let state = old.state(at, wall);
        let bytes = serde_json::to_vec(&state).unwrap();
        let state: BudgetState = serde_json::from_slice(&bytes).unwrap();

        // A process started 5 s later on the same clock: the window is spent, and so is
        // the own minute.
        let now = Instant::now();
        let mut new = RequestBudget::new(100, Duration::from_secs(60));
        new.restore(&state, now, wall + 5_000);
        let wait = new.wait(now, FIRST);
        assert!(wait >= Duration::from_secs(25), "{wait:?}");
        assert_eq!(new.state(now, wall + 5_000).sent_ms.len(), 100);
        // A state from long ago restores nothing.
        let mut fresh = RequestBudget::new(100, Duration::from_secs(60));
        fresh.restore(&state, now, wall + 3_600_000);
        assert_eq!(fresh.wait(now, FIRST), Duration::ZERO);
        assert_eq!(fresh.state(now, wall + 3_600_000), BudgetState::default());
    }
}
