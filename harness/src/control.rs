//! The control protocol between the controller and its nodes: one JSON message per line
//! over a Unix socket, which works across network namespaces. The messages are the core's.

use serde::{de::DeserializeOwned, Serialize};
pub use stackbench_core::control::*;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed control message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("a control message longer than {MAX_MESSAGE} bytes")]
    TooLong,
}

pub async fn send<W: AsyncWrite + Unpin, M: Serialize>(
    w: &mut W,
    msg: &M,
) -> Result<(), ProtocolError> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

/// The next message, or `None` at end of stream.
pub async fn recv<R: AsyncBufRead + Unpin, M: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<M>, ProtocolError> {
    let mut line = String::new();
    let n = r.take(MAX_MESSAGE as u64 + 1).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if n > MAX_MESSAGE {
        return Err(ProtocolError::TooLong);
    }
    Ok(Some(decode(&line)?))
}
