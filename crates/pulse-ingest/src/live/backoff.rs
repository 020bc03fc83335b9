//! Waits between retries: a [`Schedule`] (linear or doubling, capped) and the [`Backoff`]
//! that walks it, with optional jitter so that many clients do not retry in step.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the wait grows with each failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `step`, `2 * step`, `3 * step`... up to `max`.
    Linear { step: Duration, max: Duration },
    /// `initial`, `2 * initial`, `4 * initial`... up to `max`.
    Doubling { initial: Duration, max: Duration },
}

impl Schedule {
    /// The wait before retry number `attempt` (0 for the first retry), without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        match *self {
            Schedule::Linear { step, max } => {
                step.saturating_mul(attempt.saturating_add(1)).min(max)
            }
            Schedule::Doubling { initial, max } => {
                let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
                initial.saturating_mul(factor).min(max)
            }
        }
    }
}

/// The retries of one kind of failure: each [`Backoff::next_delay`] moves one step along
/// the schedule, [`Backoff::reset`] after a success starts it over.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Schedule,
    attempt: u32,
    /// Each wait is shortened by a random share of up to this fraction (0: exact waits).
    jitter: f64,
    rng: StdRng,
}

impl Backoff {
    /// Exact waits, as documented schedules require.
    pub fn exact(schedule: Schedule) -> Self {
        Self {
            schedule,
            attempt: 0,
            jitter: 0.0,
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// Waits shortened at random by up to `jitter` (0 to 1) of their length.
    pub fn jittered(schedule: Schedule, jitter: f64) -> Self {
        Self {
            schedule,
            attempt: 0,
            jitter: jitter.clamp(0.0, 1.0),
            // Clients started together must not draw the same waits.
            rng: StdRng::seed_from_u64(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default()
                    ^ u64::from(std::process::id()),
            ),
        }
    }

    /// Waits from `initial` doubling up to `max` (at least `initial`, both at least a
    /// millisecond), each shortened at random by up to half: the retries of a source whose
    /// API documents no schedule of its own.
    pub fn doubling_jittered(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self::jittered(
            Schedule::Doubling {
                initial,
                max: max.max(initial),
            },
            0.5,
        )
    }

    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.schedule.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        if self.jitter == 0.0 {
            return delay;
        }
        let keep = 1.0 - self.rng.random_range(0.0..=self.jitter);
        delay.mul_f64(keep)
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn schedules_grow_as_documented_and_stop_at_their_cap() {
        let mut linear = Backoff::exact(Schedule::Linear {
            step: ms(250),
            max: ms(16_000),
        });
        let waits: Vec<_> = (0..66).map(|_| linear.next_delay()).collect();
        assert_eq!(waits[..3], [ms(250), ms(500), ms(750)]);
        assert_eq!(waits[63], ms(16_000));
        assert_eq!(waits[65], ms(16_000));
        let mut doubling = Backoff::exact(Schedule::Doubling {
            initial: ms(5_000),
            max: ms(320_000),
        });
        let waits: Vec<_> = (0..9).map(|_| doubling.next_delay()).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 320, 320].map(|s| ms(s * 1_000))
        );
        doubling.reset();
        assert_eq!(doubling.next_delay(), ms(5_000));
        // Far along, the arithmetic saturates instead of overflowing.
        assert_eq!(
            Schedule::Doubling {
                initial: ms(60_000),
                max: Duration::MAX
            }
            .delay(40),
            ms(60_000).saturating_mul(1 << 31)
        );
    }

    #[test]
    fn jitter_only_shortens() {
        let schedule = Schedule::Doubling {
            initial: ms(1_000),
            max: ms(8_000),
        };
        let mut backoff = Backoff::jittered(schedule, 0.5);
        for attempt in 0..6 {
            let wait = backoff.next_delay();
            let full = schedule.delay(attempt);
            assert!(wait <= full && wait >= full / 2, "{wait:?} of {full:?}");
        }
        assert_eq!(backoff.attempts(), 6);
    }
}
