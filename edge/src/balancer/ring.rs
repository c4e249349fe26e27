//! The consistent-hashing ring (Kong's Ketama-style continuum): each target owns points on a ring
//! of `slots` positions in proportion to its weight; a value hashes to a position and the first
//! owned point at or before it, counter-clockwise, names the target. Edges build the same ring
//! from the same config, so they send a value to the same target.

/// Points per target when all weights are equal (Kong's `SERVER_POINTS`).
const POINTS_PER_TARGET: u64 = 160;
/// Kong's smallest continuum: smaller `slots` would not leave room for the points.
const MIN_SLOTS: usize = 1000;
const EMPTY: u32 = u32::MAX;

#[derive(Debug)]
pub struct Ring {
    /// Target index per position, [`EMPTY`] when no target owns it.
    positions: Vec<u32>,
}

impl Ring {
    /// `targets` are (name, weight) in the balancer's order; names decide the points, so the
    /// order they are given in does not.
    pub fn build(targets: &[(&str, u32)], slots: usize) -> Ring {
        let size = slots.max(MIN_SLOTS);
        let mut positions = vec![EMPTY; size];
        let total: u64 = targets.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|a, b| targets[*a].0.cmp(targets[*b].0));
        // Kong stops with an error when the points do not fit; fewer points per target still
        // balance, so they are scaled down to leave room for collisions instead.
        let budget = (targets.len() as u64 * POINTS_PER_TARGET).min(size as u64 * 3 / 4);
        let mut free = size;
        for index in order {
            let (name, weight) = targets[index];
            if weight == 0 || free == 0 {
                continue;
            }
            let share = u64::from(weight) * budget / total;
            let mut wanted = share.max(1);
            let mut i = 0u64;
            // A point that lands on an owned position is moved to the next name, as in Kong.
            while i < wanted && free > 0 {
                i += 1;
                let position = point(&format!("{name} {i}"), size);
                if positions[position] == EMPTY {
                    positions[position] = u32::try_from(index).unwrap_or(EMPTY);
                    free -= 1;
                } else {
                    wanted += 1;
                }
            }
        }
        Ring { positions }
    }

    /// Where `value` falls on the ring.
    pub fn position_of(&self, value: &[u8]) -> usize {
        (hash32(value) as usize) % self.positions.len()
    }

    /// Target indexes from `position` counter-clockwise, once round the ring.
    pub fn walk(&self, position: usize) -> impl Iterator<Item = usize> + '_ {
        let size = self.positions.len();
        (0..size)
            .map(move |step| self.positions[(position + size - step % size) % size])
            .filter(|index| *index != EMPTY)
            .map(|index| index as usize)
    }
}

fn point(name: &str, size: usize) -> usize {
    (hash32(name.as_bytes()) as usize) % size
}

/// FNV-1a with a murmur3 finalizer: stable across builds and processes (std's hasher is not),
/// and well spread for the short, similar strings hashed here.
pub fn hash32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(ring: &Ring, value: &str) -> usize {
        ring.walk(ring.position_of(value.as_bytes()))
            .next()
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn points_follow_weights_and_order_does_not_matter() {
        let ring = Ring::build(&[("a:1", 100), ("b:1", 300)], 10000);
        let owned = |t: u32| ring.positions.iter().filter(|p| **p == t).count();
        assert_eq!((owned(0), owned(1)), (80, 240));
        let swapped = Ring::build(&[("b:1", 300), ("a:1", 100)], 10000);
        for value in ["x", "y", "z", "some-user"] {
            assert_eq!(owner(&ring, value), 1 - owner(&swapped, value));
        }
    }

    #[test]
    fn values_spread_and_removing_a_target_moves_only_its_values() {
        let three = Ring::build(&[("a:1", 100), ("b:1", 100), ("c:1", 100)], 10000);
        let two = Ring::build(&[("a:1", 100), ("b:1", 100)], 10000);
        let mut counts = [0; 3];
        for i in 0..3000 {
            let value = format!("user-{i}");
            let before = owner(&three, &value);
            counts[before] += 1;
            if before != 2 {
                assert_eq!(owner(&two, &value), before, "{value}");
            }
        }
        assert!(counts.iter().all(|c| *c > 700), "{counts:?}");
    }

    #[test]
    fn a_small_ring_still_gives_every_target_a_point() {
        let targets: Vec<(String, u32)> = (0..20).map(|i| (format!("t{i}:80"), 1)).collect();
        let refs: Vec<(&str, u32)> = targets.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        let ring = Ring::build(&refs, 10);
        for t in 0..20u32 {
            assert!(ring.positions.contains(&t), "target {t}");
        }
    }
}
