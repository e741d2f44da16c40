//! Shared helpers for tundra's benchmarks.
