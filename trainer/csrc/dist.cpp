// c10d from Rust: a TCPStore (the rendezvous torchrun and Slurm launches use), a Gloo process
// group (CPU tensors) and the three collectives the trainer needs (all-reduce, broadcast,
// barrier). Collectives are started asynchronously and waited for with a timeout, so a lost or
// hung peer becomes an error message instead of a hang. The NCCL process group is in nccl.cpp.
//
// Gloo's own headers are not shipped in the torch wheel; trainer/csrc/third_party/gloo holds the
// subset of gloo's interface headers that ProcessGroupGloo.hpp needs to compile (see its README).
#include "dist.h"

#include <chrono>
#include <cstdlib>
#include <sstream>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

extern "C" {

char* fe_store_tcp(const char* host, uint16_t port, bool is_server, int64_t world_size,
                   int64_t timeout_ms, const char* prefix, FeStore** out) {
  return fe::guard([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    if (world_size > 0) opts.numWorkers = static_cast<size_t>(world_size);
    // Do not block the server's constructor until every worker connected: the ranks find out
    // about missing peers in the first collective (with its timeout) instead.
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store = tcp;
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new FeStore{std::move(store)};
  });
}

void fe_store_free(FeStore* s) { delete s; }

void fe_free_bytes(uint8_t* p) { std::free(p); }

char* fe_store_set(FeStore* s, const char* key, const uint8_t* data, size_t len) {
  return fe::guard([&] {
    std::vector<uint8_t> value(data, data + len);
    s->store->set(std::string(key), value);
  });
}

// Waits (up to the store's timeout) for `key`, then returns its value (malloc'd).
char* fe_store_get(FeStore* s, const char* key, uint8_t** data, size_t* len) {
  return fe::guard([&] {
    auto value = s->store->get(std::string(key));
    *len = value.size();
    *data = static_cast<uint8_t*>(std::malloc(value.size() + 1));
    TORCH_CHECK(*data != nullptr, "out of memory");
    if (!value.empty()) std::memcpy(*data, value.data(), value.size());
  });
}

char* fe_store_add(FeStore* s, const char* key, int64_t delta, int64_t* out) {
  return fe::guard([&] { *out = s->store->add(std::string(key), delta); });
}

char* fe_pg_gloo(FeStore* s, int rank, int size, int64_t timeout_ms, FePg** out) {
  return fe::guard([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    // As torch.distributed does: GLOO_SOCKET_IFNAME (comma-separated interfaces) when set,
    // else the address this machine's hostname resolves to (loopback when it does not).
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && ifname[0] != '\0') {
      std::stringstream names(ifname);
      std::string name;
      while (std::getline(names, name, ',')) {
        if (!name.empty()) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
        }
      }
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // The constructor connects the full mesh through the store (within the timeout).
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, opts);
    *out = new FePg{c10::static_intrusive_pointer_cast<c10d::Backend>(pg)};
  });
}

void fe_pg_free(FePg* pg) { delete pg; }

// Starts an all-reduce of `t` (op: 0 sum, 1 max, 2 min), in place.
char* fe_pg_allreduce(FePg* pg, at::Tensor* t, int op, FeWork** out) {
  return fe::guard([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions opts;
    switch (op) {
      case 0: opts.reduceOp = c10d::ReduceOp::SUM; break;
      case 1: opts.reduceOp = c10d::ReduceOp::MAX; break;
      case 2: opts.reduceOp = c10d::ReduceOp::MIN; break;
      default: TORCH_CHECK(false, "fe_pg_allreduce: unknown reduce op ", op);
    }
    *out = new FeWork{pg->pg->allreduce(tensors, opts)};
  });
}

// Starts a broadcast of `t` from rank `root`, in place.
char* fe_pg_broadcast(FePg* pg, at::Tensor* t, int root, FeWork** out) {
  return fe::guard([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    *out = new FeWork{pg->pg->broadcast(tensors, opts)};
  });
}

char* fe_pg_barrier(FePg* pg, FeWork** out) {
  return fe::guard([&] { *out = new FeWork{pg->pg->barrier(c10d::BarrierOptions())}; });
}

// Waits for a collective: an error when it failed (a peer closed its connection, ...) or did
// not finish within `timeout_ms`.
char* fe_work_wait(FeWork* w, int64_t timeout_ms) {
  return fe::guard([&] {
    bool done = w->work->wait(std::chrono::milliseconds(timeout_ms));
    TORCH_CHECK(done, "the collective did not complete within ", timeout_ms, " ms");
  });
}

// Records the steady-clock time at which the collective completes (read by fe_work_done_ns):
// a callback on the work's future, run by the thread that completes it (Gloo: its worker, as
// soon as the all-reduce finished; NCCL: when the collective was enqueued, its future
// completing with CUDA events, so on NCCL the time says little). Called right after the launch;
// a collective already complete is timed now.
char* fe_work_time_completion(FeWork* w) {
  return fe::guard([&] {
    auto done = std::make_shared<std::atomic<int64_t>>(0);
    w->done_ns = done;
    w->work->getFuture()->addCallback([done](c10::ivalue::Future&) {
      done->store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
    });
  });
}

// The completion time recorded by fe_work_time_completion; 0 when not (yet) recorded.
int64_t fe_work_done_ns(FeWork* w) { return w->done_ns ? w->done_ns->load() : 0; }

void fe_work_free(FeWork* w) { delete w; }

}  // extern "C"
