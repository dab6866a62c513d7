//! The hand-written step's gradient all-reduce, in buckets launched during its backward pass
//! (`--step fused --bucket-mb` > 0 in a data-parallel run): what c10d's DDP Reducer does for the
//! autograd step (`csrc/reducer.cpp`), done by hand, since the fused backward knows when each
//! part of the model's gradients is final ([`Unit`]: the head, the layers from the last to the
//! first, the embeddings).
//!
//! - Buckets are whole units taken in that order, each closed before it would exceed
//!   `--bucket-mb` (a unit larger than the cap is a bucket of its own).
//! - A bucket whose gradients tile a contiguous region of the optimizer's flat gradient buffer
//!   is all-reduced in place (a view of it); otherwise its gradients are copied into a bucket
//!   buffer and the sums copied back, as the Reducer does. With the optimizer's layout (decayed
//!   weights first, then biases and LayerNorms, each group by name) a layer's weights and its
//!   biases are apart, so in practice every bucket but a single all-in-one is copied.
//! - On the synchronising micro-batch of an update ([`FusedBuckets::arm`]), each bucket's
//!   all-reduce starts (asynchronously, a c10d `Work`) as soon as the backward has finished its
//!   last unit; [`FusedBuckets::finish`] starts any bucket not started yet, waits for them all
//!   and copies the copied ones back, before clipping and the optimizer. The earlier micro-batches
//!   of an update only accumulate (DDP's `no_sync`).
//! - Semantics: a sum over the ranks, as the flat path's (`crate::parallel`: each rank's loss
//!   is weighted by its share of the global batch). `--grad-comm bf16` sends each bucket as bf16
//!   (cast, sum, cast back: the autograd path's comm hook, which also divides by the world size
//!   because the Reducer averages).
//! - Every rank starts the same buckets in the same order (the backward finishes the units in
//!   one order), so their collectives match.
use std::collections::HashMap;
use tch::{Kind, Tensor};

use crate::dist::Dist;
use crate::ext::{now_ns, BucketTime, Work};
use crate::fused::grads::{GradReady, Unit};

/// One bucket: whole units, their gradients and where they lie.
struct Bucket {
    units: Vec<Unit>,
    /// The units not finished yet in the armed backward pass.
    left: usize,
    /// The gradients (views into the flat buffer), by offset in it.
    grads: Vec<Tensor>,
    /// The region of the flat buffer they tile, when they do.
    region: Option<Tensor>,
    /// What is sent when the region cannot be (no region, or `--grad-comm bf16`): a buffer of
    /// `numel` in the wire's kind, allocated once, that the gradients are copied into at each
    /// start and the sums copied back from.
    send: Option<Tensor>,
    numel: i64,
}

/// A started bucket all-reduce.
impl Bucket {
    /// Each gradient with its piece of `buf` (a tensor of `numel` elements), in offset order.
    fn pieces<'a>(&'a self, buf: &'a Tensor) -> impl Iterator<Item = (&'a Tensor, Tensor)> + 'a {
        let mut off = 0;
        self.grads.iter().map(move |g| {
            let n = g.numel() as i64;
            let piece = buf.narrow(0, off, n);
            off += n;
            (g, piece)
        })
    }
}

struct Started {
    work: Work,
    /// What travels: the region itself, or a copy (fp32 or bf16) to copy back.
    sent: Tensor,
    launched_ns: i64,
}

/// The hand-written step's bucketed all-reduce over a model's gradients.
pub struct FusedBuckets {
    buckets: Vec<Bucket>,
    of_unit: HashMap<Unit, usize>,
    bf16: bool,
    timing: bool,
    armed: bool,
    /// Per bucket, in bucket order: its all-reduce of this update once started.
    started: Vec<Option<Started>>,
    /// The order the buckets were started in this update.
    order: Vec<usize>,
    /// The first failure to start an all-reduce during the backward pass.
    error: Option<anyhow::Error>,
}

impl FusedBuckets {
    /// Buckets of at most `cap_bytes` over the gradients `grads` (name, `.grad()` view into
    /// `flat`, the optimizer's flat fp32 gradient buffer).
    pub fn new(
        grads: Vec<(String, Tensor)>,
        flat: &Tensor,
        cap_bytes: i64,
        bf16: bool,
        timing: bool,
    ) -> anyhow::Result<Self> {
        let mut units: HashMap<Unit, Vec<Tensor>> = HashMap::new();
        for (name, g) in grads {
            anyhow::ensure!(
                g.defined() && g.kind() == Kind::Float,
                "{name}: expected an fp32 gradient"
            );
            units.entry(Unit::of(&name)).or_default().push(g);
        }
        let mut order: Vec<Unit> = units.keys().copied().collect();
        // Head, layers from the last, embeddings: the order the backward finishes them.
        order.sort_by_key(|u| match u {
            Unit::Head => (0, 0),
            Unit::Layer(l) => (1, usize::MAX - l),
            Unit::Embeddings => (2, 0),
        });
        let bytes = |u: &Unit| -> i64 { units[u].iter().map(|g| g.numel() as i64 * 4).sum() };
        let mut groups: Vec<Vec<Unit>> = Vec::new();
        let mut size = 0;
        for u in order {
            let b = bytes(&u);
            match groups.last_mut() {
                Some(last) if size + b <= cap_bytes => {
                    last.push(u);
                    size += b;
                }
                _ => {
                    groups.push(vec![u]);
                    size = b;
                }
            }
        }
        let base = flat.data_ptr() as usize;
        let mut of_unit = HashMap::new();
        let mut buckets = Vec::new();
        for (i, us) in groups.into_iter().enumerate() {
            let mut gs: Vec<Tensor> = us
                .iter()
                .flat_map(|u| units[u].iter().map(Tensor::shallow_clone))
                .collect();
            gs.sort_by_key(|g| g.data_ptr() as usize);
            let numel: i64 = gs.iter().map(|g| g.numel() as i64).sum();
            let offset = |g: &Tensor| (g.data_ptr() as usize).wrapping_sub(base) as i64 / 4;
            let inside = |g: &Tensor| {
                let o = offset(g);
                o >= 0 && o + g.numel() as i64 <= flat.numel() as i64
            };
            let tiles = gs.iter().all(|g| g.is_contiguous() && inside(g))
                && gs
                    .windows(2)
                    .all(|p| offset(&p[1]) == offset(&p[0]) + p[0].numel() as i64);
            let region = tiles.then(|| flat.narrow(0, offset(&gs[0]), numel));
            let wire = if bf16 { Kind::BFloat16 } else { Kind::Float };
            let send =
                (region.is_none() || bf16).then(|| Tensor::zeros([numel], (wire, flat.device())));
            for u in &us {
                of_unit.insert(*u, i);
            }
            buckets.push(Bucket {
                left: us.len(),
                units: us,
                grads: gs,
                region,
                send,
                numel,
            });
        }
        let n = buckets.len();
        Ok(Self {
            buckets,
            of_unit,
            bf16,
            timing,
            armed: false,
            started: (0..n).map(|_| None).collect(),
            order: Vec::new(),
            error: None,
        })
    }

    /// How many buckets.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// How many buckets are all-reduced in place (the others through a copy).
    pub fn in_place(&self) -> usize {
        self.buckets.iter().filter(|b| b.region.is_some()).count()
    }

    /// Each bucket's size in bytes (fp32) and units, in launch order, for the log.
    pub fn describe(&self) -> String {
        self.buckets
            .iter()
            .map(|b| {
                let names: Vec<String> = b
                    .units
                    .iter()
                    .map(|u| match u {
                        Unit::Head => "head".to_string(),
                        Unit::Layer(l) => format!("layer {l}"),
                        Unit::Embeddings => "embeddings".to_string(),
                    })
                    .collect();
                format!(
                    "{} ({:.2} MB)",
                    names.join(", "),
                    b.numel as f64 * 4.0 / 1e6
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Before the synchronising micro-batch's backward pass.
    pub fn arm(&mut self) {
        self.armed = true;
        for b in &mut self.buckets {
            b.left = b.units.len();
        }
    }

    /// Whether the next backward pass is the synchronising one.
    pub fn armed(&self) -> bool {
        self.armed
    }

    fn start(&mut self, i: usize, dist: &Dist) -> anyhow::Result<()> {
        let b = &self.buckets[i];
        let launched_ns = now_ns();
        let sent = tch::no_grad(|| match (&b.send, &b.region) {
            (None, Some(r)) => r.shallow_clone(),
            (Some(buf), Some(r)) => {
                buf.shallow_clone().copy_(r);
                buf.shallow_clone()
            }
            (Some(buf), None) => {
                for (g, piece) in b.pieces(buf) {
                    piece.shallow_clone().copy_(&g.view([-1]));
                }
                buf.shallow_clone()
            }
            (None, None) => unreachable!("a bucket without a region has a send buffer"),
        });
        let work = dist.start_all_reduce_sum(&sent)?;
        if self.timing {
            work.time_completion()?;
        }
        self.started[i] = Some(Started {
            work,
            sent,
            launched_ns,
        });
        self.order.push(i);
        Ok(())
    }

    /// A [`GradReady`] over this and the group, while armed.
    pub fn ready<'a>(&'a mut self, dist: &'a Dist) -> Ready<'a> {
        Ready {
            buckets: self,
            dist,
        }
    }

    /// After the synchronising backward pass: starts the buckets not started yet (in bucket
    /// order), waits for every all-reduce and copies the copied buckets back into the
    /// gradients. Returns each bucket's launch and completion times, in launch order
    /// (completion 0 when not timed; timed on `--comm-timing`).
    pub fn finish(&mut self, dist: &mut Dist, what: &str) -> anyhow::Result<Vec<BucketTime>> {
        self.armed = false;
        if let Some(e) = self.error.take() {
            return Err(dist.failed(what, e));
        }
        for i in 0..self.buckets.len() {
            if self.started[i].is_none() {
                if let Err(e) = self.start(i, dist) {
                    return Err(dist.failed(what, e));
                }
            }
        }
        let mut times = Vec::with_capacity(self.order.len());
        for i in std::mem::take(&mut self.order) {
            let s = self.started[i].take().expect("started");
            dist.wait_for(&s.work, what)?;
            let waited = now_ns();
            let b = &self.buckets[i];
            tch::no_grad(|| match &b.region {
                Some(_) if !self.bf16 => {} // reduced in place
                Some(r) => {
                    r.shallow_clone().copy_(&s.sent);
                }
                None => {
                    for (g, piece) in b.pieces(&s.sent) {
                        g.view([-1]).copy_(&piece);
                    }
                }
            });
            let done = s.work.done_ns();
            times.push(BucketTime {
                bucket: i as i64,
                launched_ns: s.launched_ns,
                done_ns: if done > 0 { done } else { waited },
            });
        }
        Ok(times)
    }
}

/// The bucketed all-reduce as the backward sees it: starts a bucket when its last unit is done.
pub struct Ready<'a> {
    buckets: &'a mut FusedBuckets,
    dist: &'a Dist,
}

impl GradReady for Ready<'_> {
    fn ready(&mut self, unit: Unit) {
        let fb = &mut *self.buckets;
        if !fb.armed || fb.error.is_some() {
            return;
        }
        let Some(&i) = fb.of_unit.get(&unit) else {
            return;
        };
        let b = &mut fb.buckets[i];
        b.left = b.left.saturating_sub(1);
        if b.left == 0 && fb.started[i].is_none() {
            if let Err(e) = fb.start(i, self.dist) {
                fb.error = Some(e.context(format!("starting the all-reduce of bucket {i}")));
            }
        }
    }
}

/// The gradients of `vs`'s trainable variables, by name.
pub fn named_grads(vs: &tch::nn::VarStore) -> anyhow::Result<Vec<(String, Tensor)>> {
    vs.variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| {
            let g = t.grad();
            if g.defined() {
                Ok((n, g))
            } else {
                Err(anyhow::anyhow!("{n}: no gradient tensor"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat buffer holding, in this order: layer 1's weight, the head's weight, layer 0's
    /// weight, the embeddings, then layer 1's bias (apart from its weight).
    fn layout() -> (Tensor, Vec<(String, Tensor)>) {
        let flat = Tensor::zeros([30], (Kind::Float, tch::Device::Cpu));
        let at = |o: i64, n: i64| flat.narrow(0, o, n);
        let grads = vec![
            ("electra.encoder.layer.1.w".to_string(), at(0, 4)),
            ("head.w".to_string(), at(4, 4)),
            ("electra.encoder.layer.0.w".to_string(), at(8, 6)),
            ("electra.embeddings.w".to_string(), at(14, 12)),
            ("electra.encoder.layer.1.b".to_string(), at(26, 4)),
        ];
        (flat, grads)
    }

    #[test]
    fn buckets_are_whole_units_in_backward_order_under_the_cap() {
        let (flat, grads) = layout();
        // Head 16 B, layer 1 32 B, layer 0 24 B, embeddings 48 B; cap 48 B.
        let b = FusedBuckets::new(grads, &flat, 48, false, false).unwrap();
        let units: Vec<Vec<Unit>> = b.buckets.iter().map(|b| b.units.clone()).collect();
        assert_eq!(
            units,
            vec![
                vec![Unit::Head, Unit::Layer(1)],
                vec![Unit::Layer(0)],
                vec![Unit::Embeddings]
            ]
        );
        // Head + layer 1: offsets 0-8 and 26-30, not contiguous: copied. Layer 0 and the
        // embeddings: one region each, in place.
        let regions: Vec<Option<(i64, i64)>> = b
            .buckets
            .iter()
            .map(|b| {
                b.region.as_ref().map(|r| {
                    (
                        (r.data_ptr() as i64 - flat.data_ptr() as i64) / 4,
                        r.numel() as i64,
                    )
                })
            })
            .collect();
        assert_eq!(regions, vec![None, Some((8, 6)), Some((14, 12))]);
        assert_eq!(b.in_place(), 2);
        // A cap below every unit: one bucket per unit; a large one: one bucket, in place.
        let (flat, grads) = layout();
        assert_eq!(
            FusedBuckets::new(grads, &flat, 1, false, false)
                .unwrap()
                .len(),
            4
        );
        let (flat, grads) = layout();
        let one = FusedBuckets::new(grads, &flat, 1 << 20, false, false).unwrap();
        assert_eq!((one.len(), one.in_place()), (1, 1));
    }
}
