//! `preprocess --epoch E`: corrupt one epoch of token shards with the frozen auxiliary model at
//! that epoch's temperature, another augmentation of it, or a model-free distribution
//! (data-spec/epoch.md).
mod args;
mod finish;
mod pipeline;
mod plan;
mod shard;

use anyhow::Context;

pub use args::{CorruptArgs, CorruptConfig};

pub fn run(args: CorruptArgs) -> anyhow::Result<()> {
    let mut config = CorruptConfig::try_from(args)?;
    // Under a launcher each process takes the GPU of its local rank.
    let device_name = match (config.local_rank, config.device.trim()) {
        (Some(r), "auto") if tch::Cuda::is_available() => format!("cuda:{r}"),
        (Some(r), "cuda") => format!("cuda:{r}"),
        (_, d) => d.to_string(),
    };
    let device = shared::runtime::device::parse_device(&device_name)
        .with_context(|| format!("--device {}", config.device))?;
    config.use_device(device);
    let mut plan = plan::plan(config)?;
    // One writer per epoch folder, or per part of it (data-spec/epoch.md, "Locks"), for the
    // whole run; then the folder is looked at again, under the lock.
    let _locks = {
        let c = &plan.config;
        let command = if c.part.count > 1 {
            format!(
                "preprocess --epoch {} --part {}/{}",
                c.epoch, c.part.index, c.part.count
            )
        } else {
            format!("preprocess --epoch {}", c.epoch)
        };
        shared::files::lock::lock_part(&c.out_dir, c.part.index, c.part.count, &command)?
    };
    plan.scan_output()?;
    let c = &plan.config;
    for (name, why) in &plan.redo {
        let who = match shared::format::spec::shard_index(name) {
            Some(k) if !c.part.owns(k) => format!(
                "part {}/{} must run again to make it",
                k % c.part.count,
                c.part.count
            ),
            _ => "making it again".to_string(),
        };
        eprintln!("{}: not complete: {why}: {who}", c.out_dir.display());
    }
    eprintln!(
        "epoch {} of {}: {}; {} token shards, part {}/{} (from {}) makes {} of them on \
         {device:?}",
        c.epoch,
        c.epochs,
        c.choice.describe(),
        plan.token_paths.len(),
        c.part.index,
        c.part.count,
        c.part_source,
        plan.todo.len()
    );
    if plan.complete {
        let m: shared::format::manifest::EpochManifest =
            shared::format::manifest::read_manifest(&c.out_dir)?;
        eprintln!(
            "{}: already complete with these settings",
            c.out_dir.display()
        );
        finish::print_report(c.epoch, c.choice.temperature, &m.report);
        return Ok(());
    }

    // Thread counts do not change the output (see data-spec/epoch.md, "Determinism").
    rayon::ThreadPoolBuilder::new()
        .num_threads(c.threads)
        .build_global()
        .context("starting the encoding threads")?;
    // On CUDA, libtorch's CPU work is a few small copies per batch: one thread, no pool to wake.
    tch::set_num_threads(if device.is_cuda() {
        1
    } else {
        c.threads as i32
    });

    std::fs::create_dir_all(&c.out_dir)
        .with_context(|| format!("creating {}", c.out_dir.display()))?;
    for path in &plan.stale {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    remove_own_temps(&plan)?;

    let made = if plan.todo.is_empty() {
        pipeline::Made::default()
    } else {
        let setup = plan.setup(device);
        let sampler = c.choice.distribution.sampler(&setup)?;
        let made = pipeline::run(&plan, &setup, sampler.as_ref())?;
        eprintln!(
            "pipeline: {} sequences in {:.2} s; {}",
            made.stats.rows, made.seconds, made.stages
        );
        if let Some(clock) = &made.clock {
            eprintln!("pipeline: model thread {clock}");
        }
        made
    };
    match finish::finish(&plan, &made)? {
        Some(m) => {
            finish::print_report(c.epoch, c.choice.temperature, &m.report);
            eprintln!(
                "{}: complete ({} sequences)",
                c.out_dir.display(),
                m.num_sequences
            );
        }
        None => {
            let mut report = made.stats.report();
            if made.seconds > 0.0 {
                report.insert(
                    finish::REPORT_THROUGHPUT.into(),
                    made.stats.rows as f64 / made.seconds,
                );
            }
            finish::print_report(c.epoch, c.choice.temperature, &report);
        }
    }
    Ok(())
}

/// Removes temporary files of this part's shards left by an interrupted run (another part's
/// in-progress files are left alone).
fn remove_own_temps(plan: &plan::Plan) -> anyhow::Result<()> {
    let dir = &plan.config.out_dir;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_prefix(".part-")
            .filter(|_| name.ends_with(".tmp"))
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(k) = index {
            if plan.config.part.owns(k) {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}
