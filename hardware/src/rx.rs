//! The receive buffer both frame decoders share: bytes pushed as they
//! arrive, a read position that frames and skipped garbage advance, and a
//! count of bytes dropped while resynchronising.
//!
//! Consumed bytes are dropped lazily, on the next push, so a decoded frame
//! can borrow its payload from the buffer until then.

/// Received bytes not yet decoded.
#[derive(Debug)]
pub struct RxBuffer {
    buf: Vec<u8>,
    head: usize,
    skipped: u64,
}

impl RxBuffer {
    pub fn with_capacity(capacity: usize) -> RxBuffer {
        RxBuffer {
            buf: Vec::with_capacity(capacity),
            head: 0,
            skipped: 0,
        }
    }

    /// Appends received bytes (first dropping what was consumed).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.head > 0 {
            self.buf.copy_within(self.head.., 0);
            self.buf.truncate(self.buf.len() - self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Forgets everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Bytes dropped while resynchronising, since creation.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The read position: bytes before it are consumed.
    pub fn position(&self) -> usize {
        self.head
    }

    /// The unconsumed bytes.
    pub fn window(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Bytes `range` of the whole buffer (positions as returned by
    /// [`RxBuffer::position`]).
    pub fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Marks `n` bytes as decoded.
    pub fn consume(&mut self, n: usize) {
        self.head += n;
    }

    /// Marks `n` bytes as dropped while resynchronising.
    pub fn skip(&mut self, n: usize) {
        self.head += n;
        self.skipped += n as u64;
    }
}
