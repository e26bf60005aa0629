//! A store on a [`SimDisk`] with its disk operations carried out by hand: the tier-1
//! harness for deterministic store scenarios (no madsim, no async).

use keel_core::io::{Now, Output, StoreRead};
use keel_core::store::{RecoveryError, RecoveryReport, Store, StoreConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::disk_queue::DiskQueue;
use crate::sim_disk::SimDisk;

/// A store, its disk, and the operations it emitted that have not been carried out yet.
#[derive(Debug)]
pub struct StoreNode {
    /// The disk; it outlives restarts.
    pub disk: SimDisk,
    /// Operations emitted, not yet carried out.
    pub queue: DiskQueue,
    /// The store.
    pub store: Store,
    /// The time passed to the store.
    pub now: Now,
    /// Fatal stops the store emitted.
    pub fatal: Vec<String>,
    config: StoreConfig,
    rng: ChaCha8Rng,
}

impl StoreNode {
    /// Recover a store from `disk` and carry out its boot operations.
    pub fn boot(
        config: StoreConfig,
        disk: SimDisk,
        now: Now,
    ) -> Result<(Self, RecoveryReport), RecoveryError> {
        let (mut node, report) = Self::recover(config, disk, now)?;
        node.run_all();
        Ok((node, report))
    }

    /// Recover a store from `disk`, leaving its boot operations queued.
    pub fn recover(
        config: StoreConfig,
        disk: SimDisk,
        now: Now,
    ) -> Result<(Self, RecoveryReport), RecoveryError> {
        let (store, report) = Store::recover(config.clone(), &disk, now)?;
        let mut node = Self {
            disk,
            queue: DiskQueue::new(),
            store,
            now,
            fatal: Vec::new(),
            config,
            rng: ChaCha8Rng::seed_from_u64(0),
        };
        node.pump();
        Ok((node, report))
    }

    /// Move the store's outputs into the queue.
    pub fn pump(&mut self) {
        while let Some(output) = {
            self.store.start_round();
            self.store.poll_output()
        } {
            match output {
                Output::Disk { io, op } => self.queue.push(io, op),
                Output::Fatal { reason } => self.fatal.push(reason),
                Output::Send { .. }
                | Output::Command { .. }
                | Output::Close { .. }
                | Output::Connect { .. } => {}
            }
        }
    }

    /// Carry out up to `count` queued operations, feeding completions back.
    pub fn run(&mut self, count: usize) {
        self.pump();
        for _ in 0..count {
            let Some((io, result)) = self.queue.run_one(&mut self.disk, &mut self.rng) else { return };
            self.store.handle_disk_done(self.now, io, result);
            self.pump();
        }
    }

    /// Carry out everything until the store is quiet.
    pub fn run_all(&mut self) {
        self.pump();
        while !self.queue.is_empty() {
            self.run(usize::MAX);
        }
    }

    /// Shut down cleanly and hand back the disk.
    #[must_use]
    pub fn shutdown(mut self) -> SimDisk {
        self.store.begin_shutdown();
        self.run_all();
        assert!(self.store.is_stopped(), "shutdown did not finish");
        self.disk
    }

    /// Kill the process: queued operations are lost, the page cache (the disk's live view)
    /// is kept. Returns the disk.
    #[must_use]
    pub fn kill(self) -> SimDisk {
        self.disk
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A file's whole content as reads see it now.
    #[must_use]
    pub fn read_file(&self, path: &str) -> Vec<u8> {
        read_file(&self.disk, path)
    }
}

/// A file's whole content as reads see it now (empty if missing).
#[must_use]
pub fn read_file(disk: &SimDisk, path: &str) -> Vec<u8> {
    let Some(file) = keel_core::io::FilePath::new(path) else { return Vec::new() };
    let len = disk.len(&file).ok().flatten().unwrap_or(0);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let got = disk.read_at(&file, 0, &mut buf).unwrap_or(0);
    buf.truncate(got);
    buf
}
