//! The deterministic randomness plugins see through `wasi:random`.
//!
//! We own the algorithm (SplitMix64 to expand a seed, xoshiro256** to
//! generate) so a dependency upgrade can never change the bytes a plugin
//! reads, which would make replicas running different host builds diverge.

/// What a plugin call is doing, mixed into the seed so that, for example,
/// the `apply` of entry 7 and a `query` after entry 7 read different streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `apply` of a committed entry.
    Apply = 1,
    /// `query` against the state after an entry.
    Query = 2,
    /// `snapshot` of the state after an entry.
    Snapshot = 3,
    /// `restore` of a snapshot taken after an entry.
    Restore = 4,
    /// Component start-up (instantiation).
    Start = 5,
}

/// A xoshiro256** generator seeded from a log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSeededRng {
    state: [u64; 4],
}

impl LogSeededRng {
    /// A generator for the call of `kind` at log `index` in `term`.
    pub fn for_position(index: u64, term: u64, kind: CallKind) -> Self {
        let mut seed = index ^ term.rotate_left(32) ^ ((kind as u64) << 56);
        let mut state = [0u64; 4];
        for word in &mut state {
            *word = splitmix64(&mut seed);
        }
        Self { state }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// Fill `destination` with random bytes, little-endian words in order.
    pub fn fill_bytes(&mut self, destination: &mut [u8]) {
        for chunk in destination.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn splitmix64(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the stream is a pure function of the position, and pinned, so a
    // change to the algorithm (which would split a cluster) fails here first.
    #[test]
    fn stream_is_pinned_to_the_log_position() {
        let mut first = LogSeededRng::for_position(7, 2, CallKind::Apply);
        let mut second = LogSeededRng::for_position(7, 2, CallKind::Apply);
        let a: Vec<u64> = (0..4).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        assert_eq!(
            a[0],
            LogSeededRng::for_position(7, 2, CallKind::Apply).next_u64()
        );
        let golden = LogSeededRng::for_position(1, 1, CallKind::Apply).next_u64();
        assert_eq!(golden, GOLDEN_FIRST_WORD, "the random algorithm changed");
    }

    #[test]
    fn different_positions_and_kinds_give_different_streams() {
        let apply = LogSeededRng::for_position(7, 2, CallKind::Apply).next_u64();
        let query = LogSeededRng::for_position(7, 2, CallKind::Query).next_u64();
        let next = LogSeededRng::for_position(8, 2, CallKind::Apply).next_u64();
        assert_ne!(apply, query);
        assert_ne!(apply, next);
    }

    #[test]
    fn fill_bytes_handles_partial_words() {
        let mut rng = LogSeededRng::for_position(3, 1, CallKind::Apply);
        let mut bytes = [0u8; 13];
        rng.fill_bytes(&mut bytes);
        let mut again = LogSeededRng::for_position(3, 1, CallKind::Apply);
        let word = again.next_u64().to_le_bytes();
        assert_eq!(&bytes[..8], &word);
    }

    const GOLDEN_FIRST_WORD: u64 = 12_981_120_531_160_232_986;
}
