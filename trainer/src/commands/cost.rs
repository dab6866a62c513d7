//! `trainer cost`: the table of shared::cost for a main model and an auxiliary model.
use anyhow::Context;
use clap::{Args, ValueEnum};
use shared::cost::{cost_report, EncoderShape, ModelCost};
use shared::model::ModelConfig;
use std::path::Path;

#[derive(Debug, Clone, Args)]
pub struct CostArgs {
    /// Main model: tiny, small, base or large, or a Hugging Face config.json.
    #[arg(long, default_value = "base")]
    pub model: String,
    /// Layers of the auxiliary model (same width as the main model).
    #[arg(long, default_value_t = 4)]
    pub aux_layers: u64,
    /// Sequence length in tokens.
    #[arg(long, default_value_t = 512)]
    pub seq_len: u64,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    pub vocab: u64,
    /// Sequences per batch (for activation memory).
    #[arg(long, default_value_t = 32)]
    pub batch_size: u64,
    /// Fraction of positions the auxiliary model predicts (its vocabulary logits).
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// What to count: `system` (this system: auxiliary logits at the masked positions only,
    /// softmax and heads included, GiB) or `paper` (the Fast-ELECTRA paper's Table 1: the
    /// auxiliary vocabulary projection at every position, no softmax or heads, relative
    /// positions, decimal GB; `--model base --aux-layers 4 --vocab 128000 --batch-size 2048`
    /// gives its base column).
    #[arg(long, value_enum, default_value_t = Accounting::System)]
    pub accounting: Accounting,
}

/// The cost accounting of `trainer cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accounting {
    /// This system's costs (shared::cost).
    System,
    /// The paper's Table 1 rules (shared::cost::paper).
    Paper,
}

/// The encoder shape of a preset name or of a Hugging Face `config.json`, with `vocab` tokens
/// (the same configs the trainer builds).
pub fn encoder_shape(model: &str, vocab: u64) -> anyhow::Result<EncoderShape> {
    let cfg = if ModelConfig::is_preset(model) {
        ModelConfig::preset(model, vocab as i64)?
    } else {
        let mut cfg = ModelConfig::from_file(Path::new(model)).with_context(|| {
            format!("--model {model}: expected tiny, small, base, large or a config.json")
        })?;
        cfg.vocab_size = vocab as i64;
        cfg
    };
    Ok(crate::train::model::shape(&cfg))
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

fn row(name: &str, c: &ModelCost) -> String {
    format!(
        "{name:<28} {:>8.1}M {:>12.3} {:>12.3} {:>9.2} {:>9.2} {:>9.2}",
        c.params as f64 / 1e6,
        c.forward_flops as f64 / 1e9,
        c.flops_per_sequence as f64 / 1e9,
        gib(c.param_bytes),
        gib(c.activation_bytes),
        gib(c.memory_bytes()),
    )
}

/// Runs `trainer cost`.
pub fn run(args: &CostArgs) -> anyhow::Result<()> {
    let main = encoder_shape(&args.model, args.vocab)?;
    let aux = main.with_layers(args.aux_layers);
    if args.accounting == Accounting::Paper {
        print_paper(args, &main, &aux);
        return Ok(());
    }
    let r = cost_report(&main, &aux, args.seq_len, args.batch_size, args.mask_rate);
    println!(
        "main model {} ({} layers, hidden {}), auxiliary model {} layers, seq len {}, vocab {}, batch {}, aux logits at {:.0}% of positions",
        args.model, main.layers, main.hidden, aux.layers, args.seq_len, args.vocab, args.batch_size, args.mask_rate * 100.0
    );
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "model", "params", "fwd GFLOP", "GFLOP/seq", "param GiB", "act GiB", "total GiB"
    );
    println!("{}", row("main (trained)", &r.main));
    println!("{}", row("aux, joint (fwd+bwd)", &r.aux_joint));
    println!("{}", row("aux, frozen (fwd only)", &r.aux_frozen));
    let m = r.main.flops_per_sequence as f64;
    let joint = m + r.aux_joint.flops_per_sequence as f64;
    let frozen = m + r.aux_frozen.flops_per_sequence as f64;
    println!(
        "per update: ELECTRA (joint) {:.3} GFLOP/seq, Fast-ELECTRA {:.3} GFLOP/seq with the frozen aux online ({:.1}% of joint), {:.3} with dumped epochs ({:.1}%)",
        joint / 1e9,
        frozen / 1e9,
        100.0 * frozen / joint,
        m / 1e9,
        100.0 * m / joint
    );
    println!(
        "memory: joint {:.2} GiB, frozen aux online {:.2} GiB, dumped epochs {:.2} GiB",
        gib(r.main.memory_bytes() + r.aux_joint.memory_bytes()),
        gib(r.main.memory_bytes() + r.aux_frozen.memory_bytes()),
        gib(r.main.memory_bytes())
    );
    Ok(())
}

/// The paper's Table 1 as it lays it out: computation and memory of ELECTRA and Fast-ELECTRA
/// (main, auxiliary, total) and their ratios (shared::cost::paper::PaperTable::render).
fn print_paper(args: &CostArgs, main: &EncoderShape, aux: &EncoderShape) {
    let t = shared::cost::paper::table(main, aux, args.seq_len, args.batch_size);
    println!(
        "Table 1 accounting (Fast-ELECTRA paper): main model {} ({} layers, hidden {}), auxiliary model {} layers, seq len {}, vocab {}, batch {}",
        args.model, main.layers, main.hidden, aux.layers, args.seq_len, args.vocab, args.batch_size
    );
    print!("{}", t.render());
}
