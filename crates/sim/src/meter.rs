//! What an operator counts of the simulations a worker runs: how many, how
//! long (one in [`SAMPLE`] timed), and the drops by class. Kept beside the
//! simulation, not in it: the simulation itself reads no clock.

use crate::result::{DROP_CLASSES, Verdict};
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const BUCKETS: [f64; 12] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
];

/// One simulation in this many is timed: reading the clock twice costs a
/// third of an L2 simulation.
pub const SAMPLE: u64 = 64;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meter {
    pub simulations: u64,
    /// Simulations timed.
    pub sampled: u64,
    /// Per bucket of [`BUCKETS`], then +Inf (not cumulative).
    pub buckets: [u64; BUCKETS.len() + 1],
    pub seconds: f64,
    /// Drops by [`DROP_CLASSES`] (drop flows' hits are counted apart).
    pub drops: [u64; DROP_CLASSES.len()],
}

/// A duration into its bucket (the last is +Inf).
pub fn bucket(ns: u64) -> usize {
    let s = ns as f64 * 1e-9;
    BUCKETS
        .iter()
        .position(|b| s <= *b)
        .unwrap_or(BUCKETS.len())
}

impl Meter {
    /// Runs one simulation `f`, counted (and timed when sampled).
    pub fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.simulations += 1;
        if !self.simulations.is_multiple_of(SAMPLE) {
            return f();
        }
        let t0 = Instant::now();
        let out = f();
        let took = t0.elapsed();
        self.sampled += 1;
        self.seconds += took.as_secs_f64();
        self.buckets[bucket(took.as_nanos() as u64)] += 1;
        out
    }

    /// Counts a drop verdict; its class, for the drop flow.
    pub fn verdict(&mut self, v: &Verdict) -> Option<u8> {
        match v {
            Verdict::Drop(r) | Verdict::ShortDrop(r) | Verdict::ErrorDrop(r) => {
                self.drops[r.class()] += 1;
                Some(r.class() as u8)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::DropReason;

    #[test]
    fn counts_every_run_times_one_in_sample() {
        let mut m = Meter::default();
        for _ in 0..SAMPLE * 3 {
            m.run(|| ());
        }
        assert_eq!((m.simulations, m.sampled), (SAMPLE * 3, 3));
        assert_eq!(m.buckets.iter().sum::<u64>(), 3);
        assert_eq!(m.verdict(&Verdict::Drop(DropReason::NoRoute)), Some(1));
        assert_eq!(m.verdict(&Verdict::Forward), None);
        assert_eq!(m.drops[1], 1);
        assert_eq!(bucket(5_000), 0);
        assert_eq!(bucket(5_001), 1);
        assert_eq!(bucket(u64::MAX), BUCKETS.len());
    }
}
