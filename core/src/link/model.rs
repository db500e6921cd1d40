//! What a path does to each packet, decided without I/O: the time comes in as `now_ns`,
//! every random choice comes from a seeded generator, so a path's fate sequence is
//! repeatable and testable. The userspace emulator is this model plus sockets.

use super::plan::PathImpairment;
use crate::scenario::JitterDistribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop,
    /// Hold until this monotonic time, then send.
    SendAt(u64),
    /// Send at once: the path has no impairment.
    SendNow,
    /// Send at once, overtaking packets still held (reordering).
    Overtake,
}

/// One direction of one path.
#[derive(Debug)]
pub struct PathModel {
    imp: PathImpairment,
    rng: ChaCha8Rng,
    /// Gilbert-Elliott state.
    in_bad_state: bool,
    /// Release time of the last held packet: jitter never lets a packet leave before it.
    last_release_ns: u64,
}

impl PathModel {
    pub fn new(imp: PathImpairment, seed: u64) -> PathModel {
        PathModel {
            imp,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_bad_state: false,
            last_release_ns: 0,
        }
    }

    pub fn impairment(&self) -> &PathImpairment {
        &self.imp
    }

    /// Decides the fate of a packet that arrived at `now_ns`.
    pub fn admit(&mut self, now_ns: u64) -> Fate {
        if self.imp.is_none() {
            return Fate::SendNow;
        }
        if self.lost() {
            return Fate::Drop;
        }
        if self.imp.reorder > 0.0 && self.rng.gen::<f64>() < self.imp.reorder {
            return Fate::Overtake;
        }
        let at = (now_ns + self.delay_sample_ns()).max(self.last_release_ns);
        self.last_release_ns = at;
        Fate::SendAt(at)
    }

    fn lost(&mut self) -> bool {
        let random = self.imp.loss > 0.0 && self.rng.gen::<f64>() < self.imp.loss;
        let bursty = match self.imp.burst_loss {
            None => false,
            Some(ge) => {
                let p_loss = if self.in_bad_state {
                    ge.loss_in_bad
                } else {
                    ge.loss_in_good
                };
                let lost = self.rng.gen::<f64>() < p_loss;
                let flip = if self.in_bad_state { ge.r } else { ge.p };
                if self.rng.gen::<f64>() < flip {
                    self.in_bad_state = !self.in_bad_state;
                }
                lost
            }
        };
        random || bursty
    }

    fn delay_sample_ns(&mut self) -> u64 {
        let sigma = self.imp.jitter_ns as f64;
        if sigma == 0.0 {
            return self.imp.delay_ns;
        }
        let offset = match self.imp.distribution {
            JitterDistribution::Normal => {
                let z: f64 = StandardNormal.sample(&mut self.rng);
                z.clamp(-3.0, 3.0) * sigma
            }
            JitterDistribution::Uniform => {
                let half = 3f64.sqrt() * sigma;
                self.rng.gen_range(-half..=half)
            }
        };
        (self.imp.delay_ns as f64 + offset).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::plan::BurstLoss;

    fn imp() -> PathImpairment {
        PathImpairment {
            delay_ns: 10_000_000,
            ..PathImpairment::NONE
        }
    }

    fn releases(model: &mut PathModel, gap_ns: u64, n: u64) -> Vec<Fate> {
        (0..n)
            .map(|i| model.admit(1_000_000 + i * gap_ns))
            .collect()
    }

    #[test]
    fn a_plain_path_forwards_at_once() {
        let mut m = PathModel::new(PathImpairment::NONE, 1);
        assert_eq!(m.admit(5), Fate::SendNow);
    }

    #[test]
    fn fixed_delay_is_exact() {
        let mut m = PathModel::new(imp(), 1);
        assert_eq!(m.admit(1_000), Fate::SendAt(10_001_000));
    }

    #[test]
    fn jitter_never_reorders_and_has_the_configured_spread() {
        for distribution in [JitterDistribution::Normal, JitterDistribution::Uniform] {
            let jittery = PathImpairment {
                jitter_ns: 2_000_000,
                distribution,
                ..imp()
            };
            // Spaced packets: the spread is the configured one.
            let mut m = PathModel::new(jittery, 3);
            let gap = 20_000_000;
            let delays: Vec<f64> = releases(&mut m, gap, 20_000)
                .iter()
                .enumerate()
                .map(|(i, f)| match f {
                    Fate::SendAt(t) => (t - 1_000_000 - i as u64 * gap) as f64,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            let mean = delays.iter().sum::<f64>() / delays.len() as f64;
            let sd = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64)
                .sqrt();
            assert!((mean - 10e6).abs() < 0.05e6, "{distribution:?} mean {mean}");
            assert!((sd - 2e6).abs() < 0.1e6, "{distribution:?} sd {sd}");
            // Back-to-back packets: release times still never go backwards.
            let mut m = PathModel::new(jittery, 4);
            let mut last = 0;
            for f in releases(&mut m, 10_000, 20_000) {
                let Fate::SendAt(t) = f else {
                    panic!("unexpected {f:?}")
                };
                assert!(t >= last, "packet released before its predecessor");
                last = t;
            }
        }
    }

    #[test]
    fn random_loss_and_reordering_hit_their_rates() {
        let mut m = PathModel::new(
            PathImpairment {
                loss: 0.01,
                reorder: 0.05,
                ..imp()
            },
            9,
        );
        let fates = releases(&mut m, 1_000, 200_000);
        let dropped = fates.iter().filter(|f| **f == Fate::Drop).count() as f64 / 200_000.0;
        let early = fates.iter().filter(|f| **f == Fate::Overtake).count() as f64 / 200_000.0;
        assert!((dropped - 0.01).abs() < 0.001, "{dropped}");
        assert!((early - 0.05 * 0.99).abs() < 0.002, "{early}");
    }

    #[test]
    fn bursty_loss_comes_in_bursts_at_the_stationary_rate() {
        let ge = BurstLoss {
            p: 0.001256,
            r: 0.25,
            loss_in_bad: 1.0,
            loss_in_good: 0.0,
        };
        let mut m = PathModel::new(
            PathImpairment {
                burst_loss: Some(ge),
                ..imp()
            },
            11,
        );
        let fates = releases(&mut m, 1_000, 1_000_000);
        let lost: Vec<bool> = fates.iter().map(|f| *f == Fate::Drop).collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        assert!((rate - ge.stationary_loss()).abs() < 0.0008, "{rate}");
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts;
        assert!((mean_burst - 4.0).abs() < 0.4, "mean burst {mean_burst}");
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let lossy = PathImpairment {
            loss: 0.1,
            jitter_ns: 1_000_000,
            ..imp()
        };
        let a = releases(&mut PathModel::new(lossy, 5), 1_000, 1000);
        let b = releases(&mut PathModel::new(lossy, 5), 1_000, 1000);
        assert_eq!(a, b);
    }
}
