//! A source's request budget: never more than its own cap of requests in a sliding window,
//! and never past what the API's rate-limit headers say is left before their reset.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Requests allowed now, and when more will be.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    limit: usize,
    window: Duration,
    sent: VecDeque<Instant>,
    /// What the API said was left, less the requests sent since it said so.
    remaining: Option<f64>,
    /// When the API's window ends.
    reset_at: Option<Instant>,
}

impl RequestBudget {
    /// At most `limit` requests (at least 1) in any `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            sent: VecDeque::new(),
            remaining: None,
            reset_at: None,
        }
    }

    /// How long to wait before the next request may be sent (zero: now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|sent| now.duration_since(*sent) >= self.window)
        {
            self.sent.pop_front();
        }
        let own = match self.sent.front() {
            Some(oldest) if self.sent.len() >= self.limit => {
                (*oldest + self.window).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        };
        let api = match (self.remaining, self.reset_at) {
            (Some(remaining), Some(reset_at)) if remaining < 1.0 && reset_at > now => {
                reset_at - now
            }
            _ => Duration::ZERO,
        };
        own.max(api)
    }

    /// Counts a request sent at `now`.
    pub fn spend(&mut self, now: Instant) {
        self.sent.push_back(now);
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1.0;
        }
    }

    /// Takes in what a response's rate-limit headers said at `now`: requests left, and
    /// seconds until the window resets.
    pub fn observe(&mut self, now: Instant, remaining: Option<f64>, reset_in: Option<f64>) {
        if let Some(remaining) = remaining.filter(|r| r.is_finite()) {
            self.remaining = Some(remaining);
        }
        if let Some(reset_in) = reset_in.filter(|r| r.is_finite() && *r >= 0.0) {
            // A window ends a little later than said: the header is rounded to seconds.
            self.reset_at = Some(now + Duration::from_secs_f64(reset_in.min(86_400.0)));
        }
        if self.reset_at.is_some_and(|reset_at| reset_at <= now) {
            self.remaining = None;
        }
    }

    /// What the API last said is left (less what was sent since).
    pub fn remaining(&self) -> Option<f64> {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_cap_holds_in_any_window() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut budget = RequestBudget::new(3, window);
        for second in 0..3 {
            let at = start + Duration::from_secs(second);
            assert_eq!(budget.wait(at), Duration::ZERO);
            budget.spend(at);
        }
        let at = start + Duration::from_secs(10);
        assert_eq!(budget.wait(at), Duration::from_secs(50));
        assert_eq!(budget.wait(start + window), Duration::ZERO);
    }

    #[tokio::test]
    async fn an_exhausted_api_budget_waits_for_its_reset() {
        let start = Instant::now();
        let mut budget = RequestBudget::new(100, Duration::from_secs(60));
        budget.observe(start, Some(2.0), Some(30.0));
        budget.spend(start);
        assert_eq!(budget.wait(start), Duration::ZERO);
        budget.spend(start);
        assert_eq!(budget.remaining(), Some(0.0));
        assert_eq!(budget.wait(start), Duration::from_secs(30));
        // After the reset the old count no longer holds.
        let later = start + Duration::from_secs(31);
        budget.observe(later, None, None);
        assert_eq!(budget.wait(later), Duration::ZERO);
    }
}
