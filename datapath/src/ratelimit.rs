//! A token bucket driven by the caller's clock, for ICMP errors and for logs.

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
        Self { rate, burst, tokens_milli: u64::from(burst) * 1000, last_ns: 0 }
    }

    /// Takes one token if there is one. `now_ns` is any monotonic clock in nanoseconds; a clock
    /// that goes backwards adds no tokens.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let _ = now_ns;
        todo!()
    }
}
