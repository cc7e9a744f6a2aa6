//! The nodes a [`crate::Cluster`] knows and which one it calls first: the
//! ones the user gave, and the leaders nodes named since (bounded), with
//! the connection to each once made.
//!
//! A node names the leader by the address the leader advertises. A client
//! behind NAT or a port mapping may not reach that address, so one that
//! failed to connect is not preferred again on a hint for a while: every
//! forwarded answer names it, and following each hint would cost a connect
//! timeout per write.

use std::time::{Duration, Instant};

use crate::client::Client;

/// Leaders learned from answers that are kept beyond the endpoints given.
pub const LEARNED_ENDPOINTS_MAX: usize = 8;

/// How long an endpoint that failed to connect is not preferred on a hint.
pub const UNREACHABLE_HINT_QUARANTINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Endpoint {
    address: String,
    connection: Option<Client>,
    /// When a connection to it last failed.
    unreachable_at: Option<Instant>,
}

impl Endpoint {
    fn new(address: String) -> Self {
        Self {
            address,
            connection: None,
            unreachable_at: None,
        }
    }
}

/// The known endpoints and the one tried first.
#[derive(Clone)]
pub struct Endpoints {
    known: Vec<Endpoint>,
    /// How many of `known` the user gave (the learned ones follow).
    given: usize,
    /// The next learned slot to reuse once they are all taken.
    next_learned: usize,
    preferred: usize,
}

impl Endpoints {
    /// The endpoints the user gave, the first preferred; at least one.
    pub fn new(given: Vec<String>) -> Self {
        debug_assert!(!given.is_empty());
        Self {
            given: given.len(),
            known: given.into_iter().map(Endpoint::new).collect(),
            next_learned: 0,
            preferred: 0,
        }
    }

    /// The address calls go to first.
    pub fn preferred(&self) -> &str {
        &self.known[self.preferred].address
    }

    /// The connection to the preferred endpoint, if made.
    pub fn connection(&self) -> Option<Client> {
        self.known[self.preferred].connection.clone()
    }

    /// Keep (or with `None` drop) the connection to the preferred endpoint.
    pub fn set_connection(&mut self, connection: Option<Client>) {
        self.known[self.preferred].connection = connection;
    }

    /// Connecting to the preferred endpoint failed at `now`: move on.
    pub fn unreachable(&mut self, now: Instant) {
        self.known[self.preferred].unreachable_at = Some(now);
        self.move_on();
    }

    /// Prefer the next endpoint.
    pub fn move_on(&mut self) {
        self.preferred = (self.preferred + 1) % self.known.len();
    }

    /// A node named `address` as the leader at `now`: prefer it, adding it
    /// to the known endpoints, unless it failed to connect recently.
    pub fn prefer(&mut self, address: &str, now: Instant) {
        if address.is_empty() {
            return;
        }
        match self.known.iter().position(|known| known.address == address) {
            Some(index) => {
                let quarantined = self.known[index]
                    .unreachable_at
                    .is_some_and(|at| now.duration_since(at) < UNREACHABLE_HINT_QUARANTINE);
                if !quarantined {
                    self.preferred = index;
                }
            }
            None if self.known.len() < self.given + LEARNED_ENDPOINTS_MAX => {
                self.known.push(Endpoint::new(address.to_string()));
                self.preferred = self.known.len() - 1;
            }
            None => {
                let index = self.given + self.next_learned;
                self.next_learned = (self.next_learned + 1) % LEARNED_ENDPOINTS_MAX;
                self.known[index] = Endpoint::new(address.to_string());
                self.preferred = index;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> Endpoints {
        Endpoints::new(vec!["a:1".to_string(), "b:1".to_string()])
    }

    #[test]
    fn a_hint_is_followed_and_remembered() {
        let mut endpoints = given();
        let now = Instant::now();
        endpoints.prefer("c:1", now);
        assert_eq!(endpoints.preferred(), "c:1");
        endpoints.prefer("a:1", now);
        assert_eq!(endpoints.preferred(), "a:1");
        endpoints.prefer("c:1", now);
        assert_eq!(endpoints.preferred(), "c:1", "known, not added twice");
        assert_eq!(endpoints.known.len(), 3);
    }

    #[test]
    fn an_unreachable_hint_is_not_followed_for_a_while() {
        let mut endpoints = given();
        let now = Instant::now();
        endpoints.prefer("c:1", now);
        endpoints.unreachable(now);
        assert_eq!(endpoints.preferred(), "a:1", "moved on");
        endpoints.prefer("c:1", now + Duration::from_secs(1));
        assert_eq!(endpoints.preferred(), "a:1", "quarantined");
        endpoints.prefer("c:1", now + UNREACHABLE_HINT_QUARANTINE);
        assert_eq!(endpoints.preferred(), "c:1", "tried again later");
    }

    #[test]
    fn learned_endpoints_are_bounded_and_the_given_ones_kept() {
        let mut endpoints = given();
        let now = Instant::now();
        for n in 0..3 * LEARNED_ENDPOINTS_MAX {
            let address = format!("learned-{n}:1");
            endpoints.prefer(&address, now);
            assert_eq!(endpoints.preferred(), address);
        }
        assert_eq!(endpoints.known.len(), 2 + LEARNED_ENDPOINTS_MAX);
        endpoints.prefer("b:1", now);
        assert_eq!(endpoints.preferred(), "b:1");
    }
}
