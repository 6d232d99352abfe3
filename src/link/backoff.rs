//! Reconnect backoff: exponential, bounded, with jitter; a pure function of the attempt
//! number and a random source, so that it is tested with a seeded RNG.
//!
//! The delay before attempt `n` (0 for the first retry after a loss) is drawn uniformly
//! from `[base - base * jitter / 100, base]` where `base = min(reconnect_min * 2^n,
//! reconnect_max)`: never above `reconnect_max`, never below `reconnect_min` less the
//! jitter (and never below [`FLOOR`]). The attempt count starts again at 0 only once an
//! association has lasted `reconnect_reset` (a switch that accepts and drops at once does
//! not get hammered at `reconnect_min`).

use std::time::Duration;

/// Shortest delay, whatever the configuration says.
pub const FLOOR: Duration = Duration::from_millis(10);

/// The backoff settings of a link ([`super::LinkConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (less the jitter).
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How much of each delay is random, in percent (0: none, 100: anywhere from 0 to the
    /// delay); above 100 counts as 100.
    pub jitter_percent: u8,
    /// An association that lasted this long starts the attempt count again.
    pub reset_after: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based) with randomness from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let max = self.max.max(FLOOR);
        let min = self.min.clamp(FLOOR, max);
        // min * 2^attempt, without overflow
        let base = match 1u32.checked_shl(attempt.min(31)) {
            Some(f) => min.checked_mul(f).unwrap_or(max).min(max),
            None => max,
        };
        let jitter = u128::from(self.jitter_percent.min(100));
        let nanos = base.as_nanos();
        let spread = nanos * jitter / 100;
        let cut = if spread == 0 { 0 } else { rng.u128(0..=spread) };
        let d = Duration::from_nanos(u64::try_from(nanos - cut).unwrap_or(u64::MAX));
        d.max(FLOOR)
    }

    /// Whether an association that lasted `up_for` starts the attempt count again.
    pub fn resets(&self, up_for: Duration) -> bool {
        up_for >= self.reset_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(jitter_percent: u8) -> Backoff {
        Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter_percent,
            reset_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn without_jitter_it_doubles_up_to_the_maximum() {
        let mut rng = fastrand::Rng::with_seed(7);
        let d: Vec<u64> = (0..10)
            .map(|n| b(0).delay(n, &mut rng).as_millis() as u64)
            .collect();
        assert_eq!(
            d,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
        // no overflow however many attempts
        for n in [31, 32, 63, 64, 1000, u32::MAX] {
            assert_eq!(b(0).delay(n, &mut rng), Duration::from_secs(30));
        }
    }

    #[test]
    fn jitter_stays_in_its_range_and_varies() {
        let mut rng = fastrand::Rng::with_seed(42);
        for n in 0..40 {
            let base = (500u64 << n.min(20)).min(30_000);
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = b(50).delay(n, &mut rng).as_millis() as u64;
                assert!(
                    d >= base / 2 && d <= base,
                    "attempt {n}: {d} ms outside {}..={base}",
                    base / 2
                );
                seen.insert(d);
            }
            assert!(seen.len() > 50, "attempt {n}: only {} values", seen.len());
        }
        // the same seed gives the same delays (the tests are repeatable)
        let a: Vec<_> = {
            let mut r = fastrand::Rng::with_seed(1);
            (0..8).map(|n| b(50).delay(n, &mut r)).collect()
        };
        let c: Vec<_> = {
            let mut r = fastrand::Rng::with_seed(1);
            (0..8).map(|n| b(50).delay(n, &mut r)).collect()
        };
        assert_eq!(a, c);
    }

    #[test]
    fn full_jitter_and_nonsense_settings_stay_bounded() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..1000 {
            let d = b(255).delay(3, &mut rng);
            assert!(d >= FLOOR && d <= Duration::from_secs(4), "{d:?}");
        }
        // min above max: max wins; zero: the floor
        let odd = Backoff {
            min: Duration::from_secs(60),
            max: Duration::from_secs(5),
            jitter_percent: 0,
            reset_after: Duration::ZERO,
        };
        assert_eq!(odd.delay(0, &mut rng), Duration::from_secs(5));
        let zero = Backoff {
            min: Duration::ZERO,
            max: Duration::ZERO,
            ..odd
        };
        assert_eq!(zero.delay(9, &mut rng), FLOOR);
    }

    #[test]
    fn a_stable_association_resets_the_count() {
        assert!(!b(0).resets(Duration::from_secs(29)));
        assert!(b(0).resets(Duration::from_secs(30)));
    }
}
