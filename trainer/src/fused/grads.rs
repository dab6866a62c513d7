//! Where the backward puts each parameter's gradient: collected by name (fp32; the tests and
//! `trainer fused-check`), or added at once into the parameters' `.grad()` (the training step:
//! views into the optimizer's flat buffer), so no gradient is materialised and then added again:
//! one in-place addition per gradient (the bf16 GEMM output promoted to fp32 inside it), and
//! one for the key, query and value weights together when their `.grad()` are adjacent.
use super::weights::{adjacent, Grads};
use std::collections::{HashMap, HashSet};
use tch::{Kind, Tensor};

/// A part of the model whose gradients the backward finishes at once, in the order it does:
/// the head, the encoder layers from the last to the first, then the embeddings (with their
/// projection, when the model has one): the reverse of their use in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Head,
    Layer(usize),
    Embeddings,
}

impl Unit {
    /// The unit of a discriminator parameter, by its Hugging Face name.
    pub fn of(name: &str) -> Unit {
        if name.contains("embeddings") {
            return Unit::Embeddings;
        }
        let parts: Vec<&str> = name.split('.').collect();
        match parts
            .windows(2)
            .find(|w| w[0] == "layer")
            .and_then(|w| w[1].parse::<usize>().ok())
        {
            Some(l) => Unit::Layer(l),
            None => Unit::Head,
        }
    }
}

/// Told by the backward each time a [`Unit`]'s gradients are final (added to their `.grad()`
/// for the last time in this backward pass): the data-parallel bucketed all-reduce
/// (`crate::buckets`) launches a bucket when its last unit is done.
pub trait GradReady {
    fn ready(&mut self, unit: Unit);
}

/// A gradient sink.
pub enum Sink {
    /// Gradients by name, fp32 (summed when a name comes twice).
    Collect(Grads),
    /// The `.grad()` tensor of every parameter by name (fp32), added to in place; the names
    /// already written.
    Into(HashMap<String, Tensor>, HashSet<String>),
}

impl Sink {
    /// Adds `g` (any float kind) to the gradient of `name`.
    pub fn add(&mut self, name: &str, g: &Tensor) {
        match self {
            Sink::Collect(grads) => match grads.get_mut(name) {
                Some(acc) => {
                    let _ = acc.g_add_(g);
                }
                None => {
                    grads.insert(name.to_string(), g.to_kind(Kind::Float));
                }
            },
            Sink::Into(targets, seen) => {
                let acc = targets
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("--step fused: no parameter {name}"));
                let _ = acc.g_add_(g);
                seen.insert(name.to_string());
            }
        }
    }

    /// Adds the rows of `g` (the gradient of the parameters `names` concatenated along dimension
    /// 0, each of `g.size()[0] / names.len()` rows) to their gradients: in one addition when
    /// their `.grad()` tensors are adjacent in memory.
    pub fn add_rows(&mut self, names: &[String], g: &Tensor) {
        if let Sink::Into(targets, seen) = self {
            let parts: Vec<Tensor> = names
                .iter()
                .map(|n| {
                    targets
                        .get(n)
                        .unwrap_or_else(|| panic!("--step fused: no parameter {n}"))
                        .shallow_clone()
                })
                .collect();
            if let Some(mut all) = adjacent(&parts) {
                let _ = all.g_add_(g);
                seen.extend(names.iter().cloned());
                return;
            }
        }
        let rows = g.size()[0] / names.len() as i64;
        for (i, n) in names.iter().enumerate() {
            self.add(n, &g.narrow(0, i as i64 * rows, rows));
        }
    }

    /// Panics unless every parameter of an `Into` sink received a gradient (a parameter the
    /// step forgot would silently not train).
    pub fn check_complete(&self) {
        if let Sink::Into(targets, seen) = self {
            let mut missing: Vec<&String> = targets.keys().filter(|n| !seen.contains(*n)).collect();
            missing.sort();
            assert!(
                missing.is_empty(),
                "--step fused computed no gradient for {missing:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_their_parameters_adjacent_or_not() {
        let flat = Tensor::zeros([12], (Kind::Float, tch::Device::Cpu));
        let names: Vec<String> = ["k", "q", "v"].iter().map(|s| s.to_string()).collect();
        let views: HashMap<String, Tensor> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), flat.narrow(0, 4 * i as i64, 4).view([2, 2])))
            .collect();
        let g = Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([6, 2]);
        let mut sink = Sink::Into(views, HashSet::new());
        sink.add_rows(&names, &g);
        sink.check_complete();
        assert_eq!(
            Vec::<f32>::try_from(&flat).unwrap(),
            (0..12).map(|i| i as f32).collect::<Vec<_>>()
        );
        let mut c = Sink::Collect(Grads::new());
        c.add_rows(&names, &g.to_kind(Kind::BFloat16));
        c.add_rows(&names, &g);
        let Sink::Collect(grads) = c else {
            unreachable!()
        };
        assert_eq!(grads["q"].kind(), Kind::Float);
        assert_eq!(
            Vec::<f32>::try_from(grads["q"].view([-1])).unwrap(),
            vec![8.0, 10.0, 12.0, 14.0]
        );
    }

    #[test]
    fn parameters_belong_to_their_units() {
        for (name, unit) in [
            ("discriminator_predictions.dense.weight", Unit::Head),
            (
                "electra.encoder.layer.10.output.LayerNorm.bias",
                Unit::Layer(10),
            ),
            (
                "electra.encoder.layer.0.attention.self.key.weight",
                Unit::Layer(0),
            ),
            (
                "electra.embeddings.word_embeddings.weight",
                Unit::Embeddings,
            ),
            ("electra.embeddings_project.bias", Unit::Embeddings),
        ] {
            assert_eq!(Unit::of(name), unit, "{name}");
        }
    }

    #[test]
    #[should_panic(expected = "no gradient for [\"b\"]")]
    fn a_parameter_without_gradient_is_found() {
        let t = |n: &str| {
            (
                n.to_string(),
                Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)),
            )
        };
        let mut sink = Sink::Into([t("a"), t("b")].into_iter().collect(), HashSet::new());
        sink.add("a", &Tensor::ones([2], (Kind::Float, tch::Device::Cpu)));
        sink.check_complete();
    }
}
