//! Tokenization throughput of `preprocess tokenize` on the SOTU corpus (10.8 MB of JSONL), with
//! one thread and with all cores: `cargo bench -p preprocess --bench tokenize`.
//!
//! Runs the real binary `BENCH_RUNS` times (default 3) per thread count into fresh folders and
//! reports medians: the binary's own figure (text MB/s of the read + tokenize + pack + write
//! phase) and the end-to-end figure (input file MB over wall-clock, including start-up, loading
//! the tokenizer and hashing the input), plus input MB per CPU-second of the child (user +
//! system; the least disturbed by other load, and for one thread the single-core speed). The
//! corpus and tokenizer come from `scripts/fetch-data` (`$FAST_ELECTRA_SHARED_DATA`,
//! `../shared/data` or the fetch cache; it fetches them when none is there). Not a test: run it on
//! a quiet machine.
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The public data folder, as `scripts/fetch-data` finds (or fetches) it.
fn shared_data() -> anyhow::Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-data");
    let out = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "{} failed", script.display());
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// CPU seconds (user + system) used by this process's finished children, from `/proc/self/stat`
/// (Linux; `None` elsewhere). Less sensitive than wall-clock to other load on the machine.
fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; cutime and cstime are fields 16 and 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let data = shared_data()?;
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
        let (mut phase, mut wall, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let out = tempfile::tempdir()?;
            let cpu_before = children_cpu_seconds();
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
            if let (Some(a), Some(b)) = (cpu_before, children_cpu_seconds()) {
                cpu.push(file_mb / (b - a).max(0.01));
            }
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
            "threads {threads:>2}: {:6.2} MB/s of text (tokenize phase), {:6.2} MB/s end to end, \
             {} MB/s per CPU-second (end to end)",
            median(phase),
            median(wall),
            if cpu.is_empty() {
                "n/a".to_string()
            } else {
                format!("{:.2}", median(cpu))
            }
        );
    }
    Ok(())
}
