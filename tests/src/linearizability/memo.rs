//! The search's memory: the set of operations placed, and the (placed set,
//! register) pairs already explored, with the bytes they take.

use std::collections::HashMap;

use super::model::Register;

/// Which operations of a key are placed, one bit each, with the bounds of
/// its short form kept up to date.
pub(super) struct Bitset {
    words: Vec<u64>,
    /// Leading words with every bit set.
    full: usize,
    /// One past the last word with a bit set (at least `full`).
    end: usize,
}

impl Bitset {
    pub(super) fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
            full: 0,
            end: 0,
        }
    }

    pub(super) fn set(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] |= 1 << (bit % 64);
        self.end = self.end.max(word + 1);
        while self.words.get(self.full) == Some(&u64::MAX) {
            self.full += 1;
        }
    }

    pub(super) fn clear(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] &= !(1 << (bit % 64));
        self.full = self.full.min(word);
        while self.end > self.full && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
    }

    /// The set in a canonical short form: the number of full words, then the
    /// words up to the last one with a bit set. Operations are numbered by
    /// invocation, so this is about as long as the window of pending ones
    /// rather than the whole history.
    fn short_form(&self, into: &mut Vec<u64>) {
        into.clear();
        into.push(self.full as u64);
        into.extend_from_slice(&self.words[self.full..self.end]);
    }
}

/// Bytes the cache counts for a new set, besides the set's own words.
const CACHE_ENTRY_OVERHEAD_BYTES: usize =
    size_of::<Vec<u64>>() + size_of::<Vec<Register>>() + size_of::<Register>();

/// The (placed set, register) pairs already explored.
#[derive(Default)]
pub(super) struct Cache {
    seen: HashMap<Vec<u64>, Vec<Register>>,
    /// The short form looked up, kept to save an allocation per step.
    key: Vec<u64>,
    pub(super) bytes: usize,
}

impl Cache {
    /// Remember the pair; `false` if it was already there.
    pub(super) fn insert(&mut self, placed: &Bitset, register: Register) -> bool {
        placed.short_form(&mut self.key);
        if let Some(registers) = self.seen.get_mut(self.key.as_slice()) {
            if registers.contains(&register) {
                return false;
            }
            registers.push(register);
            self.bytes += size_of::<Register>();
            return true;
        }
        self.bytes += size_of_val(self.key.as_slice()) + CACHE_ENTRY_OVERHEAD_BYTES;
        self.seen.insert(self.key.clone(), vec![register]);
        true
    }
}
