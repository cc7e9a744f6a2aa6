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

/// Datagrams dropped because no key opened them or chitchat could not
/// safely read them, since start.
#[derive(Debug, Clone, Default)]
pub struct DroppedDatagrams(Arc<AtomicU64>);

impl DroppedDatagrams {
    /// How many so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Count one more; returns the new total.
    fn add(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
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
    /// Where refused datagrams are counted.
    pub dropped: DroppedDatagrams,
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
        });
        let receiver = tokio::spawn(receive_sealed(
            public.clone(),
            relays.clone(),
            self.dropped.clone(),
        ));
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
            self.inner_addr,
            peer,
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

/// What chitchat sends to `peer`'s relay: sealed, out of the public socket.
async fn seal_outgoing(
    relay: Arc<UdpSocket>,
    public: Arc<UdpSocket>,
    keyring: Option<Arc<Keyring>>,
    inner_addr: SocketAddr,
    peer: SocketAddr,
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
        let sealed = match &keyring {
            Some(keyring) => keyring.seal(&buffer[..length]),
            None => Ok(buffer[..length].to_vec()),
        };
        let Ok(sealed) = sealed else {
            tracing::warn!("cannot seal a gossip datagram");
            continue;
        };
        if sealed.len() > GOSSIP_DATAGRAM_BYTES_MAX {
            // chitchat fills datagrams up to the UDP maximum; sealing adds
            // a few bytes. Skipping one round's message is harmless: the
            // next round sends a fresh one.
            tracing::warn!(
                bytes = sealed.len(),
                "a sealed gossip datagram is too large; skipped"
            );
            continue;
        }
        if let Err(error) = public.send_to(&sealed, peer).await {
            tracing::debug!(%peer, "gossip send failed: {error}");
        }
    }
}

/// What arrives on the public socket: opened, and handed to chitchat from
/// the sender's relay; or dropped and counted.
async fn receive_sealed(public: Arc<UdpSocket>, relays: Arc<Relays>, dropped: DroppedDatagrams) {
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
            count_dropped(&dropped, from, "gossip datagram that no key opens dropped");
            continue;
        };
        if let Err(refusal) = wire_check::check(&plaintext) {
            count_dropped(
                &dropped,
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
fn count_dropped(dropped: &DroppedDatagrams, from: SocketAddr, what: &str) {
    let total = dropped.add();
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
