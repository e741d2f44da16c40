//! The criterion settings every bench shares, sized so that a full `cargo bench -p tundra-bench`
//! stays within a few minutes on a 2-core machine.

use std::time::Duration;

use criterion::Criterion;

/// Short warm-up and measurement; no plots (they cost several seconds per benchmark) unless
/// `TUNDRA_BENCH_PLOTS=1`. Command-line options (`--quick`, `--sample-size`, ...) still apply.
pub fn config() -> Criterion {
    let c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    if std::env::var_os("TUNDRA_BENCH_PLOTS").is_some_and(|v| v == "1") {
        c
    } else {
        c.without_plots()
    }
}
