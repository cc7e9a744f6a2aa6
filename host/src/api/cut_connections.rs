//! Connections the gRPC server can cut. A stopping node lets its
//! connections finish the calls they have open, but only for so long
//! ([`crate::limits::SERVER_DRAIN_TIMEOUT`]): a peer holding a call open (an
//! upload that never ends, a stream it never reads) must not hold shutdown.
//! Stopping the server's task would not do: the server serves each
//! connection on a task of its own, which would go on serving (and holding
//! the stopped node's services) for as long as the peer stays. Cutting
//! fails every read and write of every connection instead, so each task
//! ends, and with them the server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tonic::transport::server::Connected;

/// Cuts every connection of the `incoming` it was made with.
#[derive(Debug)]
pub struct Cutter(watch::Sender<bool>);

impl Cutter {
    /// Cut every connection, open now or accepted later.
    pub fn cut(&self) {
        self.0.send_replace(true);
    }
}

/// `incoming`'s connections, each of which the returned [`Cutter`] cuts.
pub fn cuttable<Incoming, Io, Error>(
    incoming: Incoming,
) -> (impl Stream<Item = Result<Cuttable<Io>, Error>>, Cutter)
where
    Incoming: Stream<Item = Result<Io, Error>>,
{
    let (cutter, cut) = watch::channel(false);
    let connections = incoming.map(move |accepted| {
        accepted.map(|io| Cuttable {
            io,
            cut: Box::pin(cut_of(cut.clone())),
            was_cut: false,
        })
    });
    (connections, Cutter(cutter))
}

/// Resolves once `cut` says so; never if its cutter is dropped without
/// cutting (a server whose owner went away is not cut for that).
async fn cut_of(mut cut: watch::Receiver<bool>) {
    if cut.wait_for(|cut| *cut).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A connection whose reads and writes fail once it is cut.
pub struct Cuttable<Io> {
    io: Io,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// `cut` resolved (it must not be polled again).
    was_cut: bool,
}

impl<Io> Cuttable<Io> {
    /// Whether the connection was cut; if not, the task is woken when it is.
    fn is_cut(&mut self, context: &mut Context<'_>) -> bool {
        if !self.was_cut {
            self.was_cut = self.cut.as_mut().poll(context).is_ready();
        }
        self.was_cut
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server is stopping: the connection was cut",
    )
}

impl<Io: Connected> Connected for Cuttable<Io> {
    type ConnectInfo = Io::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Cuttable<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_cut(context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_read(context, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Cuttable<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_cut(context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write(context, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.is_cut(context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_cut(context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_cut(context) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.io).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a connection works until it is cut; then a read waiting on it
    //! fails at once, as do later writes; a dropped cutter cuts nothing.
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One cuttable end of an in-memory pipe, the other end, the cutter.
    async fn pipe() -> (
        Cuttable<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Cutter,
    ) {
        let (near, far) = tokio::io::duplex(64);
        let accepted = futures::stream::iter([Ok::<_, io::Error>(near)]);
        let (incoming, cutter) = cuttable(accepted);
        let mut incoming = std::pin::pin!(incoming);
        let near = incoming
            .next()
            .await
            .expect("one connection")
            .expect("accepted");
        (near, far, cutter)
    }

    #[tokio::test]
    async fn a_cut_fails_a_waiting_read_and_later_writes() {
        let (mut near, mut far, cutter) = pipe().await;
        far.write_all(b"ping").await.expect("write");
        let mut read = [0; 4];
        near.read_exact(&mut read)
            .await
            .expect("read before the cut");
        assert_eq!(&read, b"ping");
        // A read waiting for bytes that never come ends with the cut.
        let waiting = tokio::spawn(async move {
            let error = near.read(&mut [0; 4]).await.expect_err("cut");
            (near, error)
        });
        // Let the read start waiting (one thread: it runs now).
        tokio::task::yield_now().await;
        cutter.cut();
        let (mut near, error) = waiting.await.expect("the read task");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        let error = near.write_all(b"pong").await.expect_err("cut");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn a_dropped_cutter_cuts_nothing() {
        let (mut near, mut far, cutter) = pipe().await;
        drop(cutter);
        near.write_all(b"ping").await.expect("write");
        let mut read = [0; 4];
        far.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, b"ping");
    }
}
