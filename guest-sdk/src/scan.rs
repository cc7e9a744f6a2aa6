//! Bounded prefix scans over an ordered map: the range read a key-value
//! plugin offers (`{"scan":{"prefix":P,"limit":N}}`), with the limit checks
//! that keep one query's response size and fuel bounded.
//!
//! ```
//! use clusterhost_sdk::scan::{self, ScanLimits};
//! use std::collections::BTreeMap;
//!
//! /// 100 items when the request names no limit, at most 1000 on request.
//! const SCAN_LIMITS: ScanLimits = ScanLimits::new(100, 1_000);
//!
//! let map = BTreeMap::from([("a/1".to_string(), 1), ("a/2".to_string(), 2), ("b".to_string(), 3)]);
//! let limit = SCAN_LIMITS.resolve(Some(10)).unwrap();
//! let keys: Vec<&String> = scan::prefix(&map, "a/", limit).map(|(key, _)| key).collect();
//! assert_eq!(keys, ["a/1", "a/2"]);
//! assert_eq!(
//!     SCAN_LIMITS.resolve(Some(5_000)),
//!     Err("scan limit 5000 exceeds the maximum 1000".to_string())
//! );
//! ```

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Bound;

/// How many items one scan may return: `default` when the request names no
/// limit, `max` at most. Both are part of a plugin's wire contract, so a new
/// version keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    default: usize,
    max: usize,
}

impl ScanLimits {
    /// Limits with `default <= max`; used in a `const`, a violation fails
    /// the build.
    pub const fn new(default: usize, max: usize) -> Self {
        assert!(default <= max, "the default scan limit exceeds the maximum");
        ScanLimits { default, max }
    }

    /// Items a scan returns when the request names no limit.
    pub const fn default_limit(self) -> usize {
        self.default
    }

    /// Most items one scan may return.
    pub const fn max(self) -> usize {
        self.max
    }

    /// The limit to scan with: `requested`, or the default when `None`. A
    /// limit above the maximum is refused with an error naming both, not
    /// clamped, so a client never mistakes a clamped page for the end of the
    /// range.
    pub fn resolve(self, requested: Option<usize>) -> Result<usize, String> {
        let limit = requested.unwrap_or(self.default);
        if limit > self.max {
            return Err(format!(
                "scan limit {limit} exceeds the maximum {}",
                self.max
            ));
        }
        Ok(limit)
    }
}

/// The first `limit` entries of `map` whose key starts with `prefix`, in key
/// order (`""` matches every key). Lazy, and it visits at most `limit + 1`
/// entries whatever the map's size: it starts at `prefix` and stops at the
/// first key past it.
pub fn prefix<'a, K, V>(
    map: &'a BTreeMap<K, V>,
    prefix: &'a str,
    limit: usize,
) -> impl Iterator<Item = (&'a K, &'a V)> + 'a
where
    K: Borrow<str> + Ord,
{
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(key, _)| Borrow::<str>::borrow(*key).starts_with(prefix))
        .take(limit)
}

#[cfg(test)]
mod tests {
    //! Goal: scans return exactly the prefixed keys in order, never more than
    //! the limit, and limits resolve to the default or refuse what is too
    //! large.
    use super::*;

    const LIMITS: ScanLimits = ScanLimits::new(2, 3);

    fn map(keys: &[&str]) -> BTreeMap<String, usize> {
        keys.iter()
            .enumerate()
            .map(|(index, key)| (key.to_string(), index))
            .collect()
    }

    fn keys(map: &BTreeMap<String, usize>, prefix: &str, limit: usize) -> Vec<String> {
        super::prefix(map, prefix, limit)
            .map(|(key, _)| key.clone())
            .collect()
    }

    #[test]
    fn scans_prefixed_keys_in_order_up_to_the_limit() {
        let map = map(&["b/2", "a", "b/1", "b", "ba", "c", "b/3"]);
        assert_eq!(keys(&map, "b/", 10), ["b/1", "b/2", "b/3"]);
        assert_eq!(keys(&map, "b", 10), ["b", "b/1", "b/2", "b/3", "ba"]);
        assert_eq!(keys(&map, "b", 2), ["b", "b/1"]);
        assert_eq!(keys(&map, "", 3), ["a", "b", "b/1"]);
        assert_eq!(keys(&map, "b", 0), Vec::<String>::new());
        assert_eq!(keys(&map, "z", 10), Vec::<String>::new());
        assert_eq!(keys(&map, "0", 10), Vec::<String>::new());
        assert_eq!(keys(&BTreeMap::new(), "", 10), Vec::<String>::new());
    }

    #[test]
    fn prefixes_compare_by_bytes() {
        let map = map(&["k\"ü", "k\"u", "kü", "k"]);
        assert_eq!(keys(&map, "k\"", 10), ["k\"u", "k\"ü"]);
        assert_eq!(keys(&map, "kü", 10), ["kü"]);
    }

    #[test]
    fn works_on_borrowed_str_keys() {
        let map = BTreeMap::from([("x/1", 1), ("x/2", 2), ("y", 3)]);
        let values: Vec<i32> = prefix(&map, "x/", 10).map(|(_, value)| *value).collect();
        assert_eq!(values, [1, 2]);
    }

    #[test]
    fn limits_resolve_to_the_default_or_refuse_too_large() {
        assert_eq!(LIMITS.resolve(None), Ok(2));
        assert_eq!(LIMITS.resolve(Some(0)), Ok(0));
        assert_eq!(LIMITS.resolve(Some(3)), Ok(3));
        assert_eq!(
            LIMITS.resolve(Some(4)),
            Err("scan limit 4 exceeds the maximum 3".to_string())
        );
        assert_eq!(
            LIMITS.resolve(Some(usize::MAX)),
            Err(format!("scan limit {} exceeds the maximum 3", usize::MAX))
        );
        assert_eq!((LIMITS.default_limit(), LIMITS.max()), (2, 3));
    }

    #[test]
    #[should_panic(expected = "default scan limit exceeds the maximum")]
    fn a_default_above_the_maximum_is_a_bug() {
        // At run time here; in a `const` the same check fails the build.
        let default = std::hint::black_box(4);
        ScanLimits::new(default, 3);
    }
}
