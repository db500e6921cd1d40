//! Time for one object to reach a share of the nodes.

/// The shares of receivers whose reach time is recorded, in percent.
pub const REACH_PERCENTS: [u32; 4] = [50, 90, 99, 100];

/// For each of [`REACH_PERCENTS`], the latency at which that share of `receivers` had the
/// object, or `None` where too few received it. `latencies` need not be sorted.
pub fn reach_times(latencies: &mut [u64], receivers: u32) -> [Option<u64>; 4] {
    latencies.sort_unstable();
    REACH_PERCENTS.map(|pct| {
        // Smallest count of receivers that is at least pct% of them (at least one).
        let needed = ((receivers as u64 * pct as u64).div_ceil(100)).max(1) as usize;
        latencies.get(needed - 1).copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        let mut l = vec![30, 10, 20, 40];
        assert_eq!(
            reach_times(&mut l, 4),
            [Some(20), Some(40), Some(40), Some(40)]
        );
        let mut l = vec![5];
        assert_eq!(reach_times(&mut l, 1), [Some(5); 4]);
    }

    #[test]
    fn missing_receivers_leave_high_shares_unreached() {
        let mut l = vec![7, 3];
        assert_eq!(reach_times(&mut l, 4), [Some(7), None, None, None]);
    }
}
