//! Tokenization throughput of `preprocess tokenize` on the SOTU corpus (10.8 MB of JSONL), with
//! one thread and with all cores: `cargo bench -p preprocess --bench tokenize`.
//!
//! Runs the real binary `BENCH_RUNS` times (default 3) per thread count into fresh folders and
//! reports medians: the binary's own figure (text MB/s of the read + tokenize + pack + write
//! phase) and the end-to-end figure (input file MB over wall-clock, including start-up, loading
//! the tokenizer and hashing the input). Shared data: `$FAST_ELECTRA_SHARED_DATA` or
//! `../shared/data`. Not a test: run it on a quiet machine.
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn shared_data() -> PathBuf {
    std::env::var_os("FAST_ELECTRA_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let data = shared_data();
    let corpus = data.join("corpus/sotu.jsonl");
    let tokenizer = data.join("tokenizers/bert-base-uncased/tokenizer.json");
    let file_mb = std::fs::metadata(&corpus)?.len() as f64 / 1e6;
    let runs: usize = std::env::var("BENCH_RUNS").map_or(Ok(3), |v| v.parse())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if cores > 1 {
        thread_counts.push(cores);
    }
    println!(
        "corpus {} ({file_mb:.1} MB), {runs} runs each, medians",
        corpus.display()
    );
    for threads in thread_counts {
        let (mut phase, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let out = tempfile::tempdir()?;
            let started = Instant::now();
            let res = Command::new(env!("CARGO_BIN_EXE_preprocess"))
                .arg("tokenize")
                .arg("--input")
                .arg(&corpus)
                .arg("--tokenizer")
                .arg(&tokenizer)
                .arg("--out")
                .arg(out.path())
                .args(["--threads", &threads.to_string()])
                .output()?;
            let seconds = started.elapsed().as_secs_f64();
            let stderr = String::from_utf8_lossy(&res.stderr);
            anyhow::ensure!(res.status.success(), "preprocess failed: {stderr}");
            let mbs = stderr
                .split("throughput ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no throughput line in: {stderr}"))?;
            phase.push(mbs);
            wall.push(file_mb / seconds);
        }
        println!(
            "threads {threads:>2}: {:6.2} MB/s of text (tokenize phase), {:6.2} MB/s end to end",
            median(phase),
            median(wall)
        );
    }
    Ok(())
}
