//! Data-parallel runs: the launcher's environment and the process group.
//!
//! `torchrun` (one node or several, `--nnodes`/`--rdzv-endpoint`) and Slurm's `srun` with the
//! same variables start one process per device and tell each its place through the environment:
//! `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (under Slurm `SLURM_LOCALID` is accepted for it),
//! `MASTER_ADDR`, `MASTER_PORT`. The ranks meet in c10d's `TCPStore` at that address: under
//! torchrun its agent hosts it (`TORCHELASTIC_USE_AGENT_STORE=True`), otherwise rank 0 does.
//! Keys live under `fast-electra/attempt_N/` (N = `TORCHELASTIC_RESTART_COUNT`), so a restarted
//! group (`--max-restarts`) does not see the previous attempt's keys. The process group is Gloo
//! for CPU tensors and NCCL for CUDA ones (`crate::ext`).
//!
//! Every collective has a timeout. When one fails, the error names this rank, the operation,
//! c10d's message and the ranks that look lost: each rank bumps a heartbeat counter in the store
//! twice a second from a background thread, and the ranks whose counter stopped moving are named.
use anyhow::{bail, Context};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tch::Tensor;

use crate::ext::{self, ProcessGroup, ReduceOp, Reducer, ReducerOptions, Store};

/// Where this process sits in a launched group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    /// The rank within this node: the CUDA device it uses.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent hosts the store (every rank is a client).
    pub agent_store: bool,
    /// torchrun's restart count (0 on the first attempt).
    pub attempt: u64,
}

fn parse<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> anyhow::Result<T> {
    v.trim()
        .parse::<T>()
        .ok()
        .with_context(|| format!("environment variable {name}={v:?}: expected {what}"))
}

/// Reads the launcher's variables through `get` (the process environment in the binary).
/// `None` when neither `RANK` nor `WORLD_SIZE` is set (a plain single-process run); an error
/// naming the variable when they are incomplete or inconsistent.
pub fn launch_from(get: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Launch>> {
    let (rank, world) = (get("RANK"), get("WORLD_SIZE"));
    if rank.is_none() && world.is_none() {
        return Ok(None);
    }
    let need = |name: &str| {
        get(name).with_context(|| {
            format!(
                "environment variable {name} is not set, but RANK/WORLD_SIZE are: a launched run needs RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (torchrun sets them all)"
            )
        })
    };
    let world_size: usize = parse("WORLD_SIZE", &need("WORLD_SIZE")?, "a positive integer")?;
    if world_size == 0 {
        bail!("environment variable WORLD_SIZE=0: expected a positive integer");
    }
    let rank: usize = parse("RANK", &need("RANK")?, "an integer >= 0")?;
    if rank >= world_size {
        bail!("environment variable RANK={rank}: expected a rank below WORLD_SIZE={world_size}");
    }
    let local_rank: usize = match (get("LOCAL_RANK"), get("SLURM_LOCALID")) {
        (Some(v), _) => parse("LOCAL_RANK", &v, "an integer >= 0")?,
        (None, Some(v)) => parse("SLURM_LOCALID", &v, "an integer >= 0")?,
        (None, None) => {
            need("LOCAL_RANK")?;
            unreachable!()
        }
    };
    let master_addr = need("MASTER_ADDR")?;
    if master_addr.trim().is_empty() {
        bail!("environment variable MASTER_ADDR is empty: expected a host name or address");
    }
    let master_port: u16 = parse("MASTER_PORT", &need("MASTER_PORT")?, "a port number")?;
    let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
    let attempt = match get("TORCHELASTIC_RESTART_COUNT") {
        Some(v) => parse("TORCHELASTIC_RESTART_COUNT", &v, "an integer >= 0")?,
        None => 0,
    };
    Ok(Some(Launch {
        rank,
        world_size,
        local_rank,
        master_addr: master_addr.trim().to_string(),
        master_port,
        agent_store,
        attempt,
    }))
}

/// [`launch_from`] on the process environment.
pub fn launch_from_env() -> anyhow::Result<Option<Launch>> {
    launch_from(&|k| std::env::var(k).ok())
}

const HEARTBEAT: Duration = Duration::from_millis(500);

/// A joined process group.
pub struct Dist {
    pub rank: usize,
    pub world_size: usize,
    store: Arc<Store>,
    pg: ProcessGroup,
    nccl: bool,
    timeout: Duration,
    address: String,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Dist {
    /// Joins the group: the store, then the process group (Gloo, or NCCL when `cuda`), within
    /// `timeout`; starts the heartbeat.
    pub fn init(l: &Launch, cuda: bool, timeout: Duration) -> anyhow::Result<Self> {
        let address = format!("{}:{}", l.master_addr, l.master_port);
        let is_server = !l.agent_store && l.rank == 0;
        let prefix = format!("fast-electra/attempt_{}/", l.attempt);
        let store = Store::tcp(
            &l.master_addr,
            l.master_port,
            is_server,
            Some(l.world_size),
            timeout,
            &prefix,
        )
        .with_context(|| {
            format!(
                "rank {}: connecting to the store at {address} (MASTER_ADDR:MASTER_PORT){}",
                l.rank,
                if is_server {
                    ", which this rank hosts"
                } else {
                    ""
                }
            )
        })?;
        let store = Arc::new(store);
        let pg = if cuda {
            ProcessGroup::nccl(&store, l.rank, l.world_size, l.local_rank, timeout)
        } else {
            ProcessGroup::gloo(&store, l.rank, l.world_size, timeout)
        }
        .with_context(|| {
            format!(
                "rank {}: joining the {} process group of {} ranks through {address} (timeout {} s)",
                l.rank,
                if cuda { "NCCL" } else { "Gloo" },
                l.world_size,
                timeout.as_secs()
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (store, stop, key) = (store.clone(), stop.clone(), heartbeat_key(l.rank));
            std::thread::Builder::new()
                .name("heartbeat".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if store.add(&key, 1).is_err() {
                            return;
                        }
                        std::thread::sleep(HEARTBEAT);
                    }
                })
                .context("spawning the heartbeat thread")?
        };
        Ok(Self {
            rank: l.rank,
            world_size: l.world_size,
            store,
            pg,
            nccl: cuda,
            timeout,
            address,
            stop,
            heartbeat: Some(heartbeat),
        })
    }

    /// Whether the group runs on NCCL (CUDA tensors) rather than Gloo (CPU tensors).
    pub fn is_nccl(&self) -> bool {
        self.nccl
    }

    fn wait(&mut self, work: anyhow::Result<ext::Work>, what: &str) -> anyhow::Result<()> {
        match work {
            Ok(w) => self.wait_for(&w, what),
            Err(e) => Err(self.failed(what, e)),
        }
    }

    /// Waits for a started collective (`what` names it in the error).
    pub fn wait_for(&mut self, work: &ext::Work, what: &str) -> anyhow::Result<()> {
        // NCCL: wait() makes the current CUDA stream wait (no host synchronisation); its
        // watchdog enforces the group's timeout. Gloo: the host waits, at most the timeout.
        let timeout = if self.nccl {
            Duration::ZERO
        } else {
            self.timeout
        };
        work.wait(timeout).map_err(|e| self.failed(what, e))
    }

    /// Starts summing `t` over the ranks, in place: the handle to wait for with
    /// [`Dist::wait_for`] (`t` must not be touched until then).
    pub fn start_all_reduce_sum(&self, t: &Tensor) -> anyhow::Result<ext::Work> {
        self.pg.all_reduce(t, ReduceOp::Sum)
    }

    /// Sums `t` over the ranks, in place.
    pub fn all_reduce_sum(&mut self, t: &Tensor, what: &str) -> anyhow::Result<()> {
        let w = self.pg.all_reduce(t, ReduceOp::Sum);
        self.wait(w, what)
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&mut self, t: &Tensor, root: usize, what: &str) -> anyhow::Result<()> {
        let w = self.pg.broadcast(t, root);
        self.wait(w, what)
    }

    /// c10d's DDP Reducer over `params` (named `names`) in this group: the gradients are
    /// all-reduced in buckets from autograd hooks during each prepared backward pass.
    pub fn reducer(
        &self,
        params: &[Tensor],
        names: &[String],
        opts: ReducerOptions,
    ) -> anyhow::Result<Reducer> {
        Reducer::new(
            &self.pg,
            &self.store,
            self.rank,
            self.world_size,
            self.nccl,
            params,
            names,
            opts,
        )
        .with_context(|| format!("rank {}: building the DDP Reducer", self.rank))
    }

    /// Waits until every rank got here.
    pub fn barrier(&mut self, what: &str) -> anyhow::Result<()> {
        let w = self.pg.barrier();
        self.wait(w, what)
    }

    /// Rank 0 publishes `value` under `key`; every other rank gets it (waiting up to the
    /// timeout). Returns rank 0's value on every rank.
    pub fn share_from_rank0(&mut self, key: &str, value: &[u8]) -> anyhow::Result<Vec<u8>> {
        let key = format!("shared/{key}");
        let r = if self.rank == 0 {
            self.store.set(&key, value).map(|()| value.to_vec())
        } else {
            self.store.get(&key)
        };
        r.map_err(|e| self.failed(&format!("sharing {key} from rank 0 through the store"), e))
    }

    /// The error for a failed collective: this rank, the operation, c10d's message and the
    /// ranks whose heartbeat stopped. Also makes drop skip the process group's destructor
    /// (which would wait for the failed collective's peers).
    pub fn failed(&mut self, what: &str, e: anyhow::Error) -> anyhow::Error {
        self.pg.leak();
        let lost = self.lost_ranks();
        anyhow::anyhow!(
            "rank {} of {}: {what}: {e:#}; {lost} (timeout {} s)",
            self.rank,
            self.world_size,
            self.timeout.as_secs()
        )
    }

    /// Which peers stopped bumping their heartbeat over two seconds, in words.
    fn lost_ranks(&self) -> String {
        let read = |r: usize| self.store.add(&heartbeat_key(r), 0);
        let peers: Vec<usize> = (0..self.world_size).filter(|&r| r != self.rank).collect();
        let Ok(before) = peers
            .iter()
            .map(|&r| read(r))
            .collect::<anyhow::Result<Vec<_>>>()
        else {
            return format!(
                "the store at {} is unreachable too: the rank hosting it (rank 0 unless torchrun's agent does) is lost",
                self.address
            );
        };
        std::thread::sleep(4 * HEARTBEAT);
        let Ok(after) = peers
            .iter()
            .map(|&r| read(r))
            .collect::<anyhow::Result<Vec<_>>>()
        else {
            return format!("the store at {} stopped answering", self.address);
        };
        let lost: Vec<String> = peers
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| a == b)
            .map(|(r, _)| r.to_string())
            .collect();
        if lost.is_empty() {
            "every peer's heartbeat is alive: a peer is hung or much slower".to_string()
        } else {
            format!(
                "lost rank(s) {}: no heartbeat in the store for {} s",
                lost.join(", "),
                (4 * HEARTBEAT).as_secs_f64()
            )
        }
    }
}

fn heartbeat_key(rank: usize) -> String {
    format!("heartbeat/{rank}")
}

impl Drop for Dist {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use tch::{Device, Kind};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const FULL: [(&str, &str); 5] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn reads_the_launcher_environment() {
        assert_eq!(launch_from(&env(&[])).unwrap(), None);
        let l = launch_from(&env(&FULL)).unwrap().unwrap();
        assert_eq!(
            (l.rank, l.world_size, l.local_rank, l.master_port),
            (1, 2, 1, 29500)
        );
        assert!(!l.agent_store);
        let mut slurm: Vec<_> = FULL
            .iter()
            .filter(|(k, _)| *k != "LOCAL_RANK")
            .copied()
            .collect();
        slurm.push(("SLURM_LOCALID", "3"));
        assert_eq!(launch_from(&env(&slurm)).unwrap().unwrap().local_rank, 3);
    }

    #[test]
    fn names_the_variable_that_is_missing_or_wrong() {
        let without = |name: &str| -> String {
            let v: Vec<_> = FULL.iter().filter(|(k, _)| *k != name).copied().collect();
            launch_from(&env(&v)).unwrap_err().to_string()
        };
        for name in [
            "WORLD_SIZE",
            "RANK",
            "LOCAL_RANK",
            "MASTER_ADDR",
            "MASTER_PORT",
        ] {
            let e = without(name);
            assert!(e.contains(&format!("{name} is not set")), "{e}");
        }
        let mut bad = FULL.to_vec();
        bad[0] = ("RANK", "2");
        let e = launch_from(&env(&bad)).unwrap_err().to_string();
        assert!(e.contains("RANK=2") && e.contains("WORLD_SIZE=2"), "{e}");
        bad[0] = ("RANK", "x");
        let e = launch_from(&env(&bad)).unwrap_err().to_string();
        assert!(e.contains("RANK=\"x\""), "{e}");
    }

    /// A TCP port free on this machine now (for a test's store).
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Rank `rank` of a 2-rank group on this machine whose store listens on `port`.
    pub(crate) fn launch(rank: usize, port: u16) -> Launch {
        Launch {
            rank,
            world_size: 2,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            agent_store: false,
            attempt: 0,
        }
    }

    #[test]
    fn two_gloo_ranks_all_reduce_broadcast_and_see_a_lost_peer() {
        let port = free_port();
        let timeout = Duration::from_secs(20);
        let peer = std::thread::spawn(move || {
            let mut d = Dist::init(&launch(1, port), false, timeout).unwrap();
            let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
            d.all_reduce_sum(&t, "sum").unwrap();
            let b = Tensor::zeros([2], (Kind::Float, Device::Cpu));
            d.broadcast(&b, 0, "broadcast").unwrap();
            d.barrier("barrier").unwrap();
            let shared = d.share_from_rank0("k", b"mine").unwrap();
            (
                Vec::<f32>::try_from(&t).unwrap(),
                Vec::<f32>::try_from(&b).unwrap(),
                shared,
            )
            // Dropping `d` here closes rank 1's connections: rank 0 loses its peer.
        });
        let mut d = Dist::init(&launch(0, port), false, timeout).unwrap();
        let t = Tensor::from_slice(&[10.0f32, 20.0, 30.0]);
        d.all_reduce_sum(&t, "sum").unwrap();
        let b = Tensor::from_slice(&[7.0f32, 8.0]);
        d.broadcast(&b, 0, "broadcast").unwrap();
        d.barrier("barrier").unwrap();
        assert_eq!(d.share_from_rank0("k", b"rank0").unwrap(), b"rank0");
        let (t1, b1, s1) = peer.join().unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![11.0, 22.0, 33.0]);
        assert_eq!(t1, vec![11.0, 22.0, 33.0]);
        assert_eq!(b1, vec![7.0, 8.0]);
        assert_eq!(s1, b"rank0");
        let t0 = std::time::Instant::now();
        let e = d
            .all_reduce_sum(&t, "the gradients")
            .unwrap_err()
            .to_string();
        assert!(t0.elapsed() < timeout, "{:?}", t0.elapsed());
        assert!(
            e.contains("rank 0 of 2: the gradients") && e.contains("lost rank(s) 1"),
            "{e}"
        );
    }
}
