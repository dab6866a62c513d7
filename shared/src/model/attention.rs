//! `BertAttention` (= `ElectraAttention`): `self.{query,key,value}`, `output.{dense,LayerNorm}`,
//! computed with `scaled_dot_product_attention` and a boolean padding mask (or, with relative
//! positions, an additive fp32 mask holding the position bias and -inf at padding). With Admin
//! initialisation the residual input is scaled by `output.admin_omega` ([`super::admin`]).
use super::dense::{Dense, LayerNorm};
use super::ModelConfig;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    output_dense: Dense,
    output_layer_norm: LayerNorm,
    /// Admin's residual scale (None: plain post-LN residual).
    pub(crate) omega: Option<Tensor>,
    heads: i64,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    /// `p` is the `attention` path.
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let (h, r) = (cfg.hidden_size, cfg.initializer_range);
        let s = &p / "self";
        let o = &p / "output";
        Attention {
            query: Dense::new(&s / "query", h, h, r),
            key: Dense::new(&s / "key", h, h, r),
            value: Dense::new(&s / "value", h, h, r),
            output_dense: Dense::new(&o / "dense", h, h, r),
            output_layer_norm: LayerNorm::new(&o / "LayerNorm", h, cfg.layer_norm_eps),
            omega: super::admin::omega(&o, cfg),
            heads: cfg.num_attention_heads,
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
        }
    }

    /// `x` [B, S, H]; `mask` [B, 1, 1, S] bool (true = attend) or [B, heads, S, S] additive
    /// fp32. Returns [B, S, H] fp32.
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let out = self.branch(x, mask, train);
        self.output_layer_norm
            .forward(&super::admin::residual(out, x, self.omega.as_ref()))
    }

    /// The attention branch before the residual: output projection of the attended values,
    /// after dropout.
    pub(crate) fn branch(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (b, s, h) = x.size3().expect("attention input is [B, S, H]");
        let split = |t: Tensor| t.view([b, s, self.heads, h / self.heads]).transpose(1, 2);
        let q = split(self.query.forward(x));
        let k = split(self.key.forward(x));
        let v = split(self.value.forward(x));
        let dropout = if train { self.attention_dropout } else { 0.0 };
        // An additive mask must be of the query's kind (bf16 under mixed precision).
        let mask = if mask.kind() == tch::Kind::Bool {
            mask.shallow_clone()
        } else {
            mask.to_kind(q.kind())
        };
        let ctx = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(&mask),
            dropout,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .contiguous()
        .view([b, s, h]);
        self.output_dense
            .forward(&ctx)
            .dropout(self.hidden_dropout, train)
    }

    /// The LayerNorm after the residual.
    pub(crate) fn layer_norm(&self) -> &LayerNorm {
        &self.output_layer_norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    const H: i64 = 64;

    /// An attention block of the tiny model (64 wide, 2 heads) with the given dropout rates,
    /// whose scores are all 0 (zero query and key weights: uniform probabilities) and whose
    /// value and output projections are the identity: its branch returns the attention-weighted
    /// inputs, i.e. shows the attention probabilities it used.
    fn see_through(hidden: f64, attention: f64) -> (nn::VarStore, Attention) {
        let mut cfg = ModelConfig::preset("tiny", 50).unwrap();
        cfg.hidden_dropout_prob = hidden;
        cfg.attention_probs_dropout_prob = attention;
        let vs = nn::VarStore::new(Device::Cpu);
        let a = Attention::new(vs.root() / "attention", &cfg);
        tch::no_grad(|| {
            for (name, v) in vs.variables() {
                let value = if name.ends_with("value.weight") || name.ends_with("dense.weight") {
                    Tensor::eye(H, (Kind::Float, Device::Cpu))
                } else {
                    Tensor::zeros_like(&v)
                };
                v.shallow_clone().copy_(&value);
            }
        });
        (vs, a)
    }

    fn all_real(b: i64, s: i64) -> Tensor {
        Tensor::ones([b, 1, 1, s], (Kind::Bool, Device::Cpu))
    }

    /// The values of `t`, flattened.
    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap()
    }

    /// Asserts that a fraction `rate` of `n` Bernoulli draws is within 4.5 standard errors of
    /// `gamma`.
    fn assert_rate(dropped: usize, n: usize, gamma: f64, what: &str) {
        let rate = dropped as f64 / n as f64;
        let se = (gamma * (1.0 - gamma) / n as f64).sqrt();
        assert!(
            (rate - gamma).abs() <= 4.5 * se,
            "{what}: dropped {rate} of {n}, expected {gamma} (standard error {se})"
        );
    }

    #[test]
    fn attention_dropout_drops_the_probabilities_at_its_rate() {
        // One-hot inputs (key j is the unit vector j) make entry [i, j] of the output the
        // probability with which query i attends to key j (in the head that holds dimension j):
        // 1/64 each, 0 where dropped, 1 / (64 (1 - gamma)) where kept.
        let gamma = 0.3;
        let (_vs, a) = see_through(0.0, gamma);
        tch::manual_seed(5);
        let x = Tensor::eye(H, (Kind::Float, Device::Cpu))
            .unsqueeze(0)
            .repeat([8, 1, 1]);
        let out = a.branch(&x, &all_real(8, H), true);
        let v = values(&out);
        let kept = 1.0 / (H as f64 * (1.0 - gamma));
        let dropped = v.iter().filter(|&&p| p == 0.0).count();
        assert!(
            v.iter()
                .all(|&p| p == 0.0 || (p as f64 - kept).abs() < 1e-6),
            "entries other than 0 and {kept}"
        );
        assert_rate(dropped, v.len(), gamma, "attention probabilities");
        // Without training, nothing is dropped.
        let eval = values(&a.branch(&x, &all_real(8, H), false));
        assert!(eval
            .iter()
            .all(|&p| (p as f64 - 1.0 / H as f64).abs() < 1e-6));
    }

    #[test]
    fn hidden_dropout_drops_hidden_states_and_attention_dropout_does_not() {
        // Every key holds the same all-ones vector: whatever the probabilities, each query
        // reads a multiple of it in each head (the sum of that head's probabilities), so
        // attention dropout scales each head's 32 dimensions as a whole and never zeroes single
        // entries; hidden-state dropout zeroes single entries of the output at its rate and
        // scales the others by 1 / (1 - gamma).
        let gamma = 0.3;
        let x = Tensor::ones([8, 32, H], (Kind::Float, Device::Cpu));
        tch::manual_seed(6);
        let (_vs, hidden) = see_through(gamma, 0.0);
        let v = values(&hidden.branch(&x, &all_real(8, 32), true));
        let kept = 1.0 / (1.0 - gamma);
        assert!(v
            .iter()
            .all(|&h| h == 0.0 || (h as f64 - kept).abs() < 1e-5));
        let dropped = v.iter().filter(|&&h| h == 0.0).count();
        assert_rate(dropped, v.len(), gamma, "hidden states");

        let (_vs, attention) = see_through(0.0, gamma);
        let out = attention.branch(&x, &all_real(8, 32), true);
        let rows = out.view([-1, 2, H / 2]);
        let (lo, hi) = (rows.min_dim(2, false).0, rows.max_dim(2, false).0);
        assert!(
            values(&(&hi - &lo)).iter().all(|&d| d.abs() < 1e-6),
            "a head's output under attention dropout is not a multiple of the input"
        );
        assert!(values(&lo).iter().all(|&m| m > 0.0), "an entry was zeroed");
        let spread = values(&lo);
        let (min, max) = spread
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(
            max - min > 0.1,
            "rows are scaled by their kept probabilities: {min}..{max}"
        );
    }

    #[test]
    fn gamma_one_drops_everything_and_stays_finite() {
        // gamma = 1 (the schedule's upper end): every hidden state, or every attention
        // probability, is dropped: the branch reads nothing, and says 0, not NaN.
        let x = Tensor::ones([2, 16, H], (Kind::Float, Device::Cpu));
        for (hidden, attention) in [(1.0, 0.0), (0.0, 1.0)] {
            let (_vs, a) = see_through(hidden, attention);
            let v = values(&a.branch(&x, &all_real(2, 16), true));
            assert!(
                v.iter().all(|&h| h == 0.0),
                "hidden {hidden}, attention {attention}: {:?}",
                &v[..4]
            );
        }
    }
}
