//! A token bucket driven by the caller's clock, for ICMP errors and for logs.

/// Milli-tokens per token.
const MILLI: u64 = 1000;
/// `elapsed_ns * rate / NS_PER_MILLI_TOKEN` is the number of milli-tokens earned.
const NS_PER_MILLI_TOKEN: u128 = 1_000_000;

/// Allows `rate` events per second on average, and bursts of up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    tokens_milli: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            tokens_milli: u64::from(burst) * 1000,
            last_ns: 0,
        }
    }

    /// Takes one token if there is one. `now_ns` is any monotonic clock in nanoseconds; a clock
    /// that goes backwards adds no tokens.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        if self.tokens_milli >= MILLI {
            self.tokens_milli -= MILLI;
            true
        } else {
            false
        }
    }

    /// Adds the tokens earned since `last_ns`. Only the time that turned into whole milli-tokens
    /// is consumed, so frequent calls lose no fractions.
    fn refill(&mut self, now_ns: u64) {
        let cap = u64::from(self.burst) * MILLI;
        let Some(elapsed) = now_ns.checked_sub(self.last_ns) else {
            return; // the clock went backwards: no tokens
        };
        if self.tokens_milli >= cap || self.rate == 0 {
            self.tokens_milli = self.tokens_milli.min(cap);
            self.last_ns = now_ns;
            return;
        }
        // milli-tokens = elapsed_ns * rate / 1e9 * 1000; u128 cannot overflow.
        let rate = u128::from(self.rate);
        let earned = u128::from(elapsed) * rate / NS_PER_MILLI_TOKEN;
        let room = u128::from(cap - self.tokens_milli);
        if earned >= room {
            self.tokens_milli = cap;
            self.last_ns = now_ns;
        } else {
            // earned < room <= u64::MAX, and the time it took is at most `elapsed`.
            self.tokens_milli += earned as u64;
            self.last_ns += (earned * NS_PER_MILLI_TOKEN / rate) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * SEC;

    fn take_all(b: &mut TokenBucket, now: u64) -> u32 {
        let mut n = 0;
        while b.allow(now) {
            n += 1;
        }
        n
    }

    #[test]
    fn starts_full_and_bursts() {
        let mut b = TokenBucket::new(10, 5);
        assert_eq!(take_all(&mut b, T0), 5);
        assert!(!b.allow(T0));
    }

    #[test]
    fn refills_at_rate_up_to_burst() {
        let mut b = TokenBucket::new(10, 5);
        take_all(&mut b, T0);
        // 100 ms at 10/s is one token.
        assert!(!b.allow(T0 + SEC / 10 - 1));
        assert!(b.allow(T0 + SEC / 10));
        assert!(!b.allow(T0 + SEC / 10));
        // A long pause refills only up to the burst.
        assert_eq!(take_all(&mut b, T0 + 3600 * SEC), 5);
    }

    #[test]
    fn frequent_calls_lose_no_fractions() {
        // 1000/s with a call every 999 ns for one second: close to 1000 tokens, not half.
        let mut b = TokenBucket::new(1000, 1);
        take_all(&mut b, T0);
        let mut allowed = 0;
        let mut now = T0;
        while now < T0 + SEC {
            now += 999;
            allowed += u32::from(b.allow(now));
        }
        assert!((999..=1001).contains(&allowed), "{allowed}");
    }

    #[test]
    fn backwards_clock_adds_nothing() {
        let mut b = TokenBucket::new(1, 1);
        assert!(b.allow(T0));
        assert!(!b.allow(T0 - SEC));
        assert!(!b.allow(T0 - 2 * SEC));
        assert!(!b.allow(T0));
        assert!(b.allow(T0 + SEC));
    }

    #[test]
    fn zero_rate_and_zero_burst() {
        let mut b = TokenBucket::new(0, 2);
        assert_eq!(take_all(&mut b, T0), 2);
        assert!(!b.allow(T0 + 3600 * SEC));
        let mut b = TokenBucket::new(100, 0);
        assert!(!b.allow(T0));
        assert!(!b.allow(T0 + SEC));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut b = TokenBucket::new(u32::MAX, u32::MAX);
        assert!(b.allow(0));
        assert!(b.allow(u64::MAX));
        let mut b = TokenBucket::new(u32::MAX, 1);
        assert!(b.allow(u64::MAX));
        assert!(!b.allow(u64::MAX));
    }
}
