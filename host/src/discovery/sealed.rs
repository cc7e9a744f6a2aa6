//! Gossip over UDP with every datagram sealed (see [`super::keyring`]) and
//! checked (see [`super::wire_check`]), as a chitchat `Transport`. Without
//! a keyring datagrams travel as they are, but are still checked. chitchat 0.13 does not expose its wire
//! encoding, so this wraps its own UDP transport instead of replacing it:
//! chitchat's socket is bound on loopback and talks to a relay socket per
//! peer; the relay seals what chitchat sends and sends it from the public
//! gossip socket, and opens what arrives there and hands it to chitchat
//! from that peer's relay. Datagrams no key opens are dropped and counted
//! before anything parses them; opened ones that would crash chitchat are
//! dropped and counted too. Only the relays may talk to chitchat's
//! socket: anything else arriving there is ignored.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use super::keyring::Keyring;
use super::wire_check;
use crate::limits::{GOSSIP_DATAGRAM_BYTES_MAX, GOSSIP_RELAY_PEERS_MAX};

/// What the transport refused since start, shared with whoever reports it
/// (the ops listener's metrics). Cloning shares the counts.
#[derive(Debug, Clone, Default)]
pub struct DatagramCounters(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    dropped: AtomicU64,
    oversized: AtomicU64,
}

impl DatagramCounters {
    /// Datagrams received and dropped unread: no key opened them, or
    /// chitchat could not safely read them.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams chitchat wrote that were not sent: too large once sealed.
    pub fn oversized(&self) -> u64 {
        self.0.oversized.load(Ordering::Relaxed)
    }

    /// Count one more dropped datagram; returns the new total.
    fn add_dropped(&self) -> u64 {
        self.0.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Count one more oversized datagram; returns the new total.
    fn add_oversized(&self) -> u64 {
        self.0.oversized.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Whether the public gossip socket has closed: its last holder (the
/// receiving task and the relays, which stop asynchronously after chitchat
/// drops its socket) has let go, so the port can be bound again.
#[derive(Debug, Clone, Default)]
pub struct PublicSocketWatch(Arc<Mutex<Option<std::sync::Weak<UdpSocket>>>>);

impl PublicSocketWatch {
    /// True once the socket was opened and every holder has dropped it.
    pub fn is_closed(&self) -> bool {
        let socket = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        socket.as_ref().is_none_or(|weak| weak.strong_count() == 0)
    }

    fn watch(&self, socket: &Arc<UdpSocket>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(socket));
    }
}

/// Opens `SealedSocket`s.
pub struct SealedTransport {
    /// The keys; `None` sends and accepts datagrams unsealed.
    pub keyring: Option<Arc<Keyring>>,
    /// Where refused and oversized datagrams are counted.
    pub counters: DatagramCounters,
    /// Told when the public socket closes.
    pub public_socket: PublicSocketWatch,
}

#[async_trait::async_trait]
impl Transport for SealedTransport {
    async fn open(&self, bind_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = Arc::new(
            UdpSocket::bind(bind_addr)
                .await
                .with_context(|| format!("cannot bind {bind_addr}/UDP for gossip"))?,
        );
        self.public_socket.watch(&public);
        let inner = UdpTransport
            .open(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await?;
        let relays = Arc::new(Relays {
            public: public.clone(),
            keyring: self.keyring.clone(),
            inner_addr: inner.local_addr()?,
            peers: Mutex::default(),
            counters: self.counters.clone(),
        });
        let receiver = tokio::spawn(receive_sealed(public.clone(), relays.clone()));
        Ok(Box::new(SealedSocket {
            inner,
            public_addr: public.local_addr()?,
            relays,
            receiver: receiver.abort_handle(),
        }))
    }
}

/// chitchat's side: its loopback socket, reaching peers through relays.
struct SealedSocket {
    inner: Box<dyn Socket>,
    public_addr: SocketAddr,
    relays: Arc<Relays>,
    receiver: AbortHandle,
}

impl Drop for SealedSocket {
    fn drop(&mut self) {
        self.receiver.abort();
        self.relays.close();
    }
}

#[async_trait::async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public_addr)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let relay = self.relays.relay_for(to)?;
        self.inner.send(relay, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let outcome = self.inner.recv().await?;
            // Only relays speak for peers; anything else on loopback is not
            // a peer that proved it holds the key.
            if let Some(peer) = self.relays.peer_of(outcome.from_addr) {
                return Ok(RecvOutcome {
                    from_addr: peer,
                    ..outcome
                });
            }
        }
    }
}

/// One loopback relay socket per peer, made on first use.
struct Relays {
    public: Arc<UdpSocket>,
    keyring: Option<Arc<Keyring>>,
    inner_addr: SocketAddr,
    peers: Mutex<HashMap<SocketAddr, Relay>>,
    counters: DatagramCounters,
}

struct Relay {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    task: AbortHandle,
}

impl Relays {
    /// The relay address standing for `peer` (made if missing; beyond
    /// [`GOSSIP_RELAY_PEERS_MAX`] another peer's relay is dropped first).
    fn relay_for(&self, peer: SocketAddr) -> anyhow::Result<SocketAddr> {
        Ok(self.relay(peer)?.1)
    }

    fn relay(&self, peer: SocketAddr) -> anyhow::Result<(Arc<UdpSocket>, SocketAddr)> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(relay) = peers.get(&peer) {
            return Ok((relay.socket.clone(), relay.addr));
        }
        if peers.len() >= GOSSIP_RELAY_PEERS_MAX
            && let Some(evicted) = peers.keys().next().copied()
            && let Some(relay) = peers.remove(&evicted)
        {
            relay.task.abort();
        }
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .context("cannot bind a gossip relay socket")?;
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        let addr = socket.local_addr()?;
        let task = tokio::spawn(seal_outgoing(
            socket.clone(),
            self.public.clone(),
            self.keyring.clone(),
            (self.inner_addr, peer),
            self.counters.clone(),
        ));
        peers.insert(
            peer,
            Relay {
                socket: socket.clone(),
                addr,
                task: task.abort_handle(),
            },
        );
        Ok((socket, addr))
    }

    /// The peer a relay address stands for.
    fn peer_of(&self, relay_addr: SocketAddr) -> Option<SocketAddr> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .find(|(_, relay)| relay.addr == relay_addr)
            .map(|(peer, _)| *peer)
    }

    fn close(&self) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, relay) in peers.drain() {
            relay.task.abort();
        }
    }
}

/// What chitchat (at `inner_addr`) sends to `peer`'s relay: sealed, out of
/// the public socket.
async fn seal_outgoing(
    relay: Arc<UdpSocket>,
    public: Arc<UdpSocket>,
    keyring: Option<Arc<Keyring>>,
    (inner_addr, peer): (SocketAddr, SocketAddr),
    counters: DatagramCounters,
) {
    let mut buffer = vec![0u8; GOSSIP_DATAGRAM_BYTES_MAX];
    loop {
        let (length, from) = match relay.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => continue,
            Err(error) => {
                tracing::warn!(%peer, "gossip relay socket failed: {error}");
                return;
            }
        };
        if from != inner_addr {
            continue;
        }
        let sealed = match outgoing(keyring.as_deref(), &buffer[..length]) {
            Ok(sealed) => sealed,
            Err(Unsendable::SealFailed) => {
                tracing::warn!("cannot seal a gossip datagram");
                continue;
            }
            Err(Unsendable::Oversized { bytes }) => {
                // Counted, and logged at powers of two: chitchat may fill
                // every round's reply to this peer alike.
                let total = counters.add_oversized();
                if total.is_power_of_two() {
                    tracing::warn!(
                        %peer,
                        bytes,
                        gossip_datagrams_oversized = total,
                        "a sealed gossip datagram is too large to send; skipped"
                    );
                }
                continue;
            }
        };
        if let Err(error) = public.send_to(&sealed, peer).await {
            tracing::debug!(%peer, "gossip send failed: {error}");
        }
    }
}

/// Why a datagram chitchat wrote is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsendable {
    /// The system's random source failed to make a nonce.
    SealFailed,
    /// Larger than one UDP datagram once sealed.
    Oversized { bytes: usize },
}

/// What goes on the wire for `plaintext`: sealed when keyed. chitchat
/// fills a reply's delta up to the UDP maximum (stopping at the first
/// key-value that does not fit), so sealing, which adds
/// [`super::keyring::SEAL_OVERHEAD_BYTES`], can take a full one past it:
/// that one is not sent. chitchat does not resend; a later round computes
/// a fresh delta from the peer's digest (see README, Security).
fn outgoing(keyring: Option<&Keyring>, plaintext: &[u8]) -> Result<Vec<u8>, Unsendable> {
    let sealed = match keyring {
        Some(keyring) => keyring
            .seal(plaintext)
            .map_err(|_| Unsendable::SealFailed)?,
        None => plaintext.to_vec(),
    };
    if sealed.len() > GOSSIP_DATAGRAM_BYTES_MAX {
        return Err(Unsendable::Oversized {
            bytes: sealed.len(),
        });
    }
    Ok(sealed)
}

/// What arrives on the public socket: opened, and handed to chitchat from
/// the sender's relay; or dropped and counted.
async fn receive_sealed(public: Arc<UdpSocket>, relays: Arc<Relays>) {
    let dropped = &relays.counters;
    let mut buffer = vec![0u8; GOSSIP_DATAGRAM_BYTES_MAX];
    loop {
        let (length, from) = match public.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => continue,
            Err(error) => {
                tracing::error!("the gossip socket failed: {error}");
                return;
            }
        };
        let opened = match &relays.keyring {
            Some(keyring) => keyring.open(&buffer[..length]),
            None => Some(buffer[..length].to_vec()),
        };
        let Some(plaintext) = opened else {
            count_dropped(dropped, from, "gossip datagram that no key opens dropped");
            continue;
        };
        if let Err(refusal) = wire_check::check(&plaintext) {
            count_dropped(
                dropped,
                from,
                &format!("gossip datagram refused: {refusal}"),
            );
            continue;
        }
        match relays.relay(from) {
            Ok((relay, _)) => {
                let _ = relay.send_to(&plaintext, relays.inner_addr).await;
            }
            Err(error) => tracing::warn!("gossip relay: {error:#}"),
        }
    }
}

/// Count a dropped datagram; logged at powers of two: visible, yet a flood
/// cannot fill the log.
fn count_dropped(counters: &DatagramCounters, from: SocketAddr, what: &str) {
    let total = counters.add_dropped();
    if total.is_power_of_two() {
        tracing::warn!(%from, gossip_datagrams_dropped = total, "{what}");
    }
}

/// Errors after which the socket still works: ICMP reports of an earlier
/// send to a peer that is gone, and a momentary lack of memory.
fn is_transient(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::keyring::SEAL_OVERHEAD_BYTES;

    // Goal: a datagram chitchat filled to within the seal's overhead of the
    // UDP maximum is refused as oversized once sealed (the caller counts
    // it); one that still fits is sent; unsealed gossip never grows.
    #[test]
    fn a_full_datagram_is_too_large_once_sealed() {
        let keyring = Keyring::parse(&Keyring::generate().expect("key")).expect("keyring");
        let fits = vec![7u8; GOSSIP_DATAGRAM_BYTES_MAX - SEAL_OVERHEAD_BYTES];
        let sealed = outgoing(Some(&keyring), &fits).expect("fits");
        assert_eq!(sealed.len(), GOSSIP_DATAGRAM_BYTES_MAX);

        let full = vec![7u8; GOSSIP_DATAGRAM_BYTES_MAX - SEAL_OVERHEAD_BYTES + 1];
        assert_eq!(
            outgoing(Some(&keyring), &full),
            Err(Unsendable::Oversized {
                bytes: GOSSIP_DATAGRAM_BYTES_MAX + 1
            })
        );
        let unsealed = vec![7u8; GOSSIP_DATAGRAM_BYTES_MAX];
        assert_eq!(outgoing(None, &unsealed).expect("sent as is"), unsealed);
    }

    // Goal: clones share the counts the metrics read.
    #[test]
    fn counters_are_shared_by_clones() {
        let counters = DatagramCounters::default();
        let reporter = counters.clone();
        assert_eq!(counters.add_dropped(), 1);
        assert_eq!(counters.add_oversized(), 1);
        assert_eq!(counters.add_oversized(), 2);
        assert_eq!((reporter.dropped(), reporter.oversized()), (1, 2));
    }
}
