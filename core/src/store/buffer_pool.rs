//! Reusable write buffers for the CommitLog's staged bytes.
//!
//! Each staged chunk leaves the core as the data of a `Write`; the runtime holds it until
//! the write is done. Allocating a fresh buffer per chunk means touching fresh pages every
//! time (page faults cost more than the copy itself). Instead a chunk's buffer returns to
//! this pool when the last reference to the written `Bytes` is dropped, already faulted in.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Buffers kept for reuse at most; more are freed.
const MAX_IDLE: usize = 16;

type Shelf = Mutex<Vec<Vec<u8>>>;

/// A pool of buffers of one capacity.
#[derive(Debug)]
pub(crate) struct BufferPool {
    shelf: Arc<Shelf>,
    capacity: usize,
}

impl BufferPool {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { shelf: Arc::new(Mutex::new(Vec::new())), capacity }
    }

    /// An empty buffer with at least the pool's capacity.
    pub(crate) fn take(&self) -> Vec<u8> {
        let reused = self.shelf.lock().ok().and_then(|mut shelf| shelf.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// `data` as `Bytes` whose buffer comes back to the pool when dropped. A chunk filling
    /// less than a quarter of its buffer is copied out instead and the buffer shelved at
    /// once: a queue of small writes behind a slow fsync would otherwise hold a whole
    /// buffer each (a few KiB of data in 320 KiB, hundreds of MiB under a flood).
    pub(crate) fn freeze(&self, data: Vec<u8>) -> Bytes {
        if data.len() < self.capacity / 4 {
            let copy = Bytes::copy_from_slice(&data);
            drop(Pooled { data, home: Arc::downgrade(&self.shelf), capacity: self.capacity });
            return copy;
        }
        Bytes::from_owner(Pooled { data, home: Arc::downgrade(&self.shelf), capacity: self.capacity })
    }
}

struct Pooled {
    data: Vec<u8>,
    home: Weak<Shelf>,
    capacity: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Oversized buffers (a single huge record) are not kept.
        if self.data.capacity() > 2 * self.capacity {
            return;
        }
        if let Some(shelf) = self.home.upgrade() {
            if let Ok(mut shelf) = shelf.lock() {
                if shelf.len() < MAX_IDLE {
                    let mut data = core::mem::take(&mut self.data);
                    data.clear();
                    shelf.push(data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_bytes_are_dropped() {
        let pool = BufferPool::new(1024);
        let mut buf = pool.take();
        buf.extend_from_slice(&[7u8; 600]);
        let address = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let copy = bytes.slice(1..3);
        assert_eq!(&bytes[..], &[7u8; 600][..]);
        drop(bytes);
        // Still referenced by the slice: not back yet.
        let other = pool.take();
        assert_ne!(other.as_ptr(), address);
        drop(copy);
        let again = pool.take();
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty());
    }

    #[test]
    fn a_small_chunk_is_copied_out_and_its_buffer_shelved_at_once() {
        let pool = BufferPool::new(1024);
        let mut buf = pool.take();
        buf.extend_from_slice(b"hello");
        let address = buf.as_ptr();
        let bytes = pool.freeze(buf);
        assert_eq!(&bytes[..], b"hello");
        assert_ne!(bytes.as_ptr(), address, "a right-sized copy");
        let back = pool.take();
        assert_eq!(back.as_ptr(), address, "the buffer is back while the bytes live");
    }
}
