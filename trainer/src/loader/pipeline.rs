//! The loader thread: walks the passes in order, decodes each window's row groups in parallel
//! (rayon), shuffles the window's rows, collates micro-batches and sends them into a bounded
//! crossbeam channel ahead of the model.
use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, Receiver, Sender};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::collate::{collate, BatchKind, HostBatch};
use super::order::{group_order, row_order, PassKey};
use super::rows::{Cursor, Rows};

/// One row group of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Index into [`EpochData::files`].
    pub file: usize,
    /// Row-group index in that file.
    pub index: usize,
    /// Number of rows.
    pub rows: usize,
}

/// The row groups of one epoch (or of a token folder, for MLM).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochData {
    /// Epoch number (from the manifest; 0 for token folders).
    pub epoch: u32,
    pub files: Vec<PathBuf>,
    pub groups: Vec<Group>,
}

impl EpochData {
    /// Rows in the epoch.
    pub fn rows(&self) -> u64 {
        self.groups.iter().map(|g| g.rows as u64).sum()
    }
}

/// Decodes one row group of one epoch (index into the loader's epoch list).
pub trait Decoder: Send + Sync + 'static {
    fn decode(&self, epoch: usize, group: &Group) -> anyhow::Result<Rows>;
}

/// Settings of the loader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    pub seed: u64,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Row groups whose rows are shuffled together.
    pub window: usize,
    /// Micro-batches decoded ahead of the model.
    pub prefetch: usize,
    pub pad_id: i32,
    pub kind: BatchKind,
    /// After the last epoch, pass over it again (reshuffled) instead of ending.
    pub repeat_last_epoch: bool,
}

/// Pass `pass`'s epoch index in the list and its repeat number, or `None` past the end.
pub fn pass_epoch(pass: u64, epochs: usize, repeat_last: bool) -> Option<(usize, u64)> {
    let n = epochs as u64;
    if pass < n {
        Some((pass as usize, 0))
    } else if repeat_last && n > 0 {
        Some((epochs - 1, pass - n + 1))
    } else {
        None
    }
}

/// Micro-batches one pass over `epoch` yields (the last partial batch is dropped).
pub fn batches_per_pass(epoch: &EpochData, batch_size: usize) -> u64 {
    epoch.rows() / batch_size as u64
}

/// The running loader; dropping it stops the thread.
pub struct Loader {
    rx: Option<Receiver<anyhow::Result<HostBatch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing micro-batches from `start`.
    pub fn start(
        epochs: Arc<Vec<EpochData>>,
        decoder: Arc<dyn Decoder>,
        cfg: LoaderConfig,
        start: Cursor,
    ) -> Self {
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                if let Err(e) = produce(&epochs, decoder.as_ref(), &cfg, start, &tx) {
                    let _ = tx.send(Err(e));
                }
            })
            .expect("spawning the loader thread");
        Self {
            rx: Some(rx),
            handle: Some(handle),
        }
    }

    /// The next micro-batch (blocks until decoded); an error when the data ran out or a shard
    /// could not be decoded.
    pub fn next_batch(&self) -> anyhow::Result<HostBatch> {
        match self.rx.as_ref().expect("receiver").recv() {
            Ok(r) => r,
            Err(_) => Err(anyhow!("the data ran out (no more passes)")),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `Ok(batch)`; false when the receiver is gone.
fn send(tx: &Sender<anyhow::Result<HostBatch>>, b: HostBatch) -> bool {
    tx.send(Ok(b)).is_ok()
}

fn produce(
    epochs: &[EpochData],
    decoder: &dyn Decoder,
    cfg: &LoaderConfig,
    start: Cursor,
    tx: &Sender<anyhow::Result<HostBatch>>,
) -> anyhow::Result<()> {
    let mut pass = start.pass;
    let mut skip = start.row;
    while let Some((e, repeat)) = pass_epoch(pass, epochs.len(), cfg.repeat_last_epoch) {
        let epoch = &epochs[e];
        let key = PassKey {
            seed: cfg.seed,
            epoch: epoch.epoch,
            repeat,
        };
        let order = group_order(key, epoch.groups.len());
        let usable = batches_per_pass(epoch, cfg.batch_size) * cfg.batch_size as u64;
        let mut row_in_pass = 0u64;
        let mut pending: Vec<(Arc<Rows>, usize)> = Vec::with_capacity(cfg.batch_size);
        for (w, chunk) in order.chunks(cfg.window.max(1)).enumerate() {
            let window_rows: u64 = chunk.iter().map(|&g| epoch.groups[g].rows as u64).sum();
            if row_in_pass + window_rows <= skip || row_in_pass >= usable {
                row_in_pass += window_rows;
                continue;
            }
            let decoded: Vec<Arc<Rows>> = chunk
                .par_iter()
                .map(|&g| {
                    let group = &epoch.groups[g];
                    let rows = decoder.decode(e, group)?;
                    if rows.len() != group.rows {
                        anyhow::bail!(
                            "{}: row group {}: expected {} rows (file metadata), found {}",
                            epoch.files[group.file].display(),
                            group.index,
                            group.rows,
                            rows.len()
                        );
                    }
                    Ok(Arc::new(rows))
                })
                .collect::<anyhow::Result<_>>()
                .with_context(|| format!("decoding epoch {}", epoch.epoch))?;
            let mut index: Vec<(usize, usize)> = Vec::with_capacity(window_rows as usize);
            for (k, r) in decoded.iter().enumerate() {
                index.extend((0..r.len()).map(|i| (k, i)));
            }
            for &o in &row_order(key, w, index.len()) {
                let here = row_in_pass;
                row_in_pass += 1;
                if here < skip {
                    continue;
                }
                if here >= usable {
                    break;
                }
                let (k, i) = index[o as usize];
                pending.push((decoded[k].clone(), i));
                if pending.len() == cfg.batch_size {
                    let refs: Vec<(&Rows, usize)> =
                        pending.iter().map(|(r, i)| (r.as_ref(), *i)).collect();
                    let mut b = collate(&refs, cfg.pad_id, cfg.kind, pass);
                    b.epoch = epoch.epoch;
                    b.cursor_after = Cursor {
                        pass,
                        row: here + 1,
                    };
                    pending.clear();
                    if !send(tx, b) {
                        return Ok(());
                    }
                }
            }
        }
        pass += 1;
        skip = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch `e`'s group `g` holds rows whose ids encode (e, g, row).
    struct Synthetic;
    impl Decoder for Synthetic {
        fn decode(&self, epoch: usize, group: &Group) -> anyhow::Result<Rows> {
            let mut r = Rows {
                offsets: vec![0],
                ..Default::default()
            };
            for i in 0..group.rows {
                let id = (epoch * 10_000 + group.index * 100 + i) as i32;
                r.sequence_ids.push(id as u64);
                r.ids.extend([101, id, 102]);
                r.targets.extend([0, (i % 2) as i8, 0]);
                r.offsets.push(r.ids.len());
            }
            Ok(r)
        }
    }

    fn epochs() -> Arc<Vec<EpochData>> {
        let mk = |epoch| EpochData {
            epoch,
            files: vec![PathBuf::from("x")],
            groups: (0..5)
                .map(|index| Group {
                    file: 0,
                    index,
                    rows: 7,
                })
                .collect(),
        };
        Arc::new(vec![mk(1), mk(2)])
    }

    fn cfg() -> LoaderConfig {
        LoaderConfig {
            seed: 9,
            batch_size: 4,
            window: 2,
            prefetch: 3,
            pad_id: 0,
            kind: BatchKind::Rtd,
            repeat_last_epoch: false,
        }
    }

    fn drain(start: Cursor) -> Vec<HostBatch> {
        let l = Loader::start(epochs(), Arc::new(Synthetic), cfg(), start);
        let mut out = vec![];
        while let Ok(b) = l.next_batch() {
            out.push(b);
        }
        out
    }

    #[test]
    fn each_row_once_per_pass_full_batches_in_epoch_order() {
        let all = drain(Cursor::default());
        // 35 rows per epoch -> 8 batches of 4 each.
        assert_eq!(all.len(), 16);
        assert!(all[..8].iter().all(|b| b.epoch == 1) && all[8..].iter().all(|b| b.epoch == 2));
        let mut ids: Vec<i64> = all[..8].iter().flat_map(|b| b.input_ids.iter().skip(1).step_by(3).copied()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        // Shuffled: not in decoding order.
        assert_ne!(all[0].input_ids[1], 0);
    }

    #[test]
    fn resuming_from_a_cursor_continues_the_same_stream() {
        let all = drain(Cursor::default());
        let resumed = drain(all[5].cursor_after);
        assert_eq!(&all[6..], &resumed[..]);
        let resumed = drain(all[7].cursor_after);
        assert_eq!(resumed[0].epoch, 2);
        assert_eq!(&all[8..], &resumed[..]);
    }

    #[test]
    fn repeat_last_epoch_reshuffles() {
        let mut c = cfg();
        c.repeat_last_epoch = true;
        let l = Loader::start(epochs(), Arc::new(Synthetic), c, Cursor { pass: 1, row: 0 });
        let first: Vec<HostBatch> = (0..8).map(|_| l.next_batch().unwrap()).collect();
        let second: Vec<HostBatch> = (0..8).map(|_| l.next_batch().unwrap()).collect();
        assert_eq!(second[0].cursor_after.pass, 2);
        assert_eq!(second[0].epoch, 2);
        assert_ne!(first[0].input_ids, second[0].input_ids);
    }
}
