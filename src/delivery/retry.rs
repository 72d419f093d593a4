//! When to try a failed event again: the subscription's schedule with jitter, stretched to
//! honour the endpoint's `Retry-After`, or no more (dead letter) once the schedule is spent.

use std::time::Duration;

use crate::config::RetryConfig;

/// A subscription's retry rules.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
    max_retry_after: Duration,
}

impl RetryPolicy {
    /// From validated config.
    pub fn new(config: &RetryConfig) -> Self {
        Self {
            schedule: config.schedule.clone(),
            jitter: config.jitter,
            max_retry_after: config.max_retry_after,
        }
    }

    /// The wait before the next attempt after `attempts` failed ones, or `None` when the
    /// schedule is spent and the event goes to the dead letters. `retry_after` (the
    /// endpoint's wish) lengthens the wait, up to `max_retry_after`, but never shortens it.
    pub fn next_delay(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
        let base = *self.schedule.get(index)?;
        let jittered = if self.jitter > 0.0 && !base.is_zero() {
            let factor = 1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0);
            base.mul_f64(factor.max(0.0))
        } else {
            base
        };
        let asked = retry_after.map(|d| d.min(self.max_retry_after));
        Some(asked.map_or(jittered, |asked| jittered.max(asked)))
    }

    /// Attempts an event gets in all.
    pub fn max_attempts(&self) -> usize {
        self.schedule.len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &[u64], jitter: f64) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter,
            max_retry_after: Duration::from_secs(60),
        })
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let p = policy(&[5, 300], 0.0);
        assert_eq!(p.next_delay(1, None), Some(Duration::from_secs(5)));
        assert_eq!(p.next_delay(2, None), Some(Duration::from_secs(300)));
        assert_eq!(p.next_delay(3, None), None);
        assert_eq!(p.next_delay(0, None), None, "no attempt made: not a retry");
        assert_eq!(p.max_attempts(), 3);
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        let p = policy(&[5], 0.0);
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(5)),
            "never shorter than the schedule"
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(86_400))),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let p = policy(&[100], 0.2);
        for _ in 0..200 {
            let d = p.next_delay(1, None).unwrap().as_secs_f64();
            assert!((80.0..=120.0).contains(&d), "{d}");
        }
    }
}
