// DDP's gradient reduction for the trainer's autograd step: c10d's `Reducer` over the model's
// parameters. It registers a hook on every parameter's gradient accumulator; during a backward
// pass prepared by `fe_reducer_prepare` each gradient is copied into its bucket as soon as
// autograd produces it, and a bucket's all-reduce starts as soon as all its gradients are in
// (buckets launch in bucket order), overlapping the rest of the backward pass. At the end of the
// backward pass the Reducer waits for every bucket and copies the averaged gradients back into
// the parameters' `.grad` (which stay views of the optimizer's flat buffer:
// gradient_as_bucket_view is off). Backward passes not prepared (accumulating micro-batches,
// DDP's no_sync) only accumulate.
//
// The call sequence follows torch/nn/parallel/distributed.py: bucket assignment with
// compute_bucket_assignment_by_size (a first bucket of at most 1 MiB, then `bucket_bytes`) over
// the parameters in forward order, the bucket list reversed (the last layers' gradients are
// ready first), and before each synchronising pass prepare_for_forward, rebuild_buckets (once,
// after the first pass: the buckets re-formed in the order the gradients became ready, with the
// same caps) and prepare_for_backward. The first bucket's cap is min(1 MiB, bucket_bytes): DDP
// uses 1 MiB with its default cap and the given cap otherwise; without the min, a model whose
// gradients other than the word embeddings' fit in 1 MiB (the tiny test model) would get one
// bucket after the rebuild, the embeddings' gradient being ready last.
//
// A comm hook of our own (`FeHook`) replaces the default all-reduce when asked: bf16 compression
// (torch 2.11's C++ builtins have only ALLREDUCE and FP16_COMPRESS; this is Python's
// bf16_compress_hook: cast, divide by the world size, all-reduce, cast back) and/or timing (the
// steady-clock time each bucket is launched and its all-reduce completes).
#include "dist.h"

#include <chrono>
#include <mutex>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Launch and completion times (steady clock, ns) of each bucket's all-reduce, in launch order.
struct Times {
  std::mutex m;
  std::vector<int64_t> index, launched, done;

  size_t launch(size_t bucket) {
    std::lock_guard<std::mutex> g(m);
    index.push_back(static_cast<int64_t>(bucket));
    launched.push_back(now_ns());
    done.push_back(0);
    return launched.size() - 1;
  }
  void finish(size_t slot) {
    std::lock_guard<std::mutex> g(m);
    if (slot < done.size()) done[slot] = now_ns();
  }
};

class FeHook : public c10d::CommHookInterface {
 public:
  FeHook(c10::intrusive_ptr<c10d::ProcessGroup> pg, bool bf16, std::shared_ptr<Times> times)
      : pg_(std::move(pg)), bf16_(bf16), times_(std::move(times)) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    at::Tensor buffer = bucket.getBufferRef();
    size_t slot = times_ ? times_->launch(bucket.getIndex()) : 0;
    // Divide first (as the builtin hooks do): no overflow in the sum.
    at::Tensor send = bf16_ ? buffer.to(at::kBFloat16) : buffer;
    send.div_(pg_->getSize());
    std::vector<at::Tensor> tensors{send};
    auto fut = pg_->allreduce(tensors)->getFuture();
    auto times = times_;
    bool bf16 = bf16_;
    return fut->then(
        [buffer, times, slot, bf16](c10::ivalue::Future& f) {
          auto reduced = f.value().toTensorVector()[0];
          if (bf16) buffer.copy_(reduced);
          if (times) times->finish(slot);
          return c10::IValue(std::vector<at::Tensor>{bf16 ? buffer : reduced});
        },
        c10::ListType::create(c10::TensorType::get()));
  }

  at::Tensor parseHookResult(const c10::IValue& result) override {
    return result.toTensorVector()[0];
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  bool bf16_;
  std::shared_ptr<Times> times_;
};

}  // namespace

struct FeReducer {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::shared_ptr<c10d::Reducer> reducer;
  std::shared_ptr<Times> times;
  size_t buckets;
};

extern "C" {

// `params`: the parameters (leaf tensors requiring grad) in the order the buckets are assigned
// from; `names`: one per parameter (for the Reducer's error messages). `cuda`: the group is NCCL
// on CUDA tensors (else Gloo on CPU ones). `bf16`: compress to bf16 for the all-reduce;
// `timing`: record each bucket's launch and completion (fe_reducer_take_times).
char* fe_reducer_new(FePg* backend, FeStore* store, int rank, int size, bool cuda,
                     at::Tensor** params, const char** names, size_t n, int64_t bucket_bytes,
                     bool bf16, bool timing, FeReducer** out) {
  return fe::guard([&] {
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store->store, rank, size);
    auto type = cuda ? c10d::ProcessGroup::BackendType::NCCL : c10d::ProcessGroup::BackendType::GLOO;
    pg->setDefaultBackend(type);
    pg->setBackend(cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU, type, backend->pg);
    std::vector<at::Tensor> tensors;
    std::unordered_map<size_t, std::string> param_names;
    for (size_t i = 0; i < n; ++i) {
      tensors.push_back(*params[i]);
      param_names[i] = names[i];
    }
    // torch.distributed._DEFAULT_FIRST_BUCKET_BYTES, or the cap when smaller.
    const int64_t first_bucket = std::min<int64_t>(1024 * 1024, bucket_bytes);
    std::vector<size_t> limits{static_cast<size_t>(first_bucket), static_cast<size_t>(bucket_bytes)};
    std::vector<bool> sparse(n, false);
    auto [buckets, per_bucket_limits] =
        c10d::compute_bucket_assignment_by_size(tensors, limits, sparse);
    (void)per_bucket_limits;
    std::reverse(buckets.begin(), buckets.end());
    size_t count = buckets.size();
    auto reducer = std::make_shared<c10d::Reducer>(
        tensors, std::move(buckets), pg, sparse, bucket_bytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
        std::move(param_names), first_bucket, /*skip_all_reduce_unused_params=*/false,
        /*use_python_reducer=*/false, std::vector<int64_t>{});
    std::shared_ptr<Times> times = timing ? std::make_shared<Times>() : nullptr;
    if (bf16 || timing) {
      reducer->register_comm_hook(std::make_unique<FeHook>(pg, bf16, times));
    }
    *out = new FeReducer{pg, reducer, times, count};
  });
}

void fe_reducer_free(FeReducer* r) { delete r; }

size_t fe_reducer_buckets(FeReducer* r) { return r->buckets; }

// Before a synchronising micro-batch's forward and backward pass.
char* fe_reducer_prepare(FeReducer* r) {
  return fe::guard([&] {
    r->reducer->prepare_for_forward();
    if (r->reducer->rebuild_buckets()) {
      r->buckets = r->reducer->get_grad_buckets(false).size();
    }
    r->reducer->prepare_for_backward({});
  });
}

// After a synchronising backward pass: an error when the Reducer did not finish it, which
// happens when a parameter got no gradient in it (its bucket never became ready: with
// find_unused_parameters off, DDP's default, the buckets holding it are never all-reduced and
// the next prepare fails). c10d's message lists the indices of the parameters without one.
char* fe_reducer_check_finished(FeReducer* r) {
  return fe::guard([&] { r->reducer->check_finalized(); });
}

// The recorded (bucket index, launch ns, done ns) triples since the last call, at most `cap`;
// `*n` says how many were written; the record is cleared.
char* fe_reducer_take_times(FeReducer* r, int64_t* index, int64_t* launched, int64_t* done,
                            size_t cap, size_t* n) {
  return fe::guard([&] {
    *n = 0;
    if (!r->times) return;
    std::lock_guard<std::mutex> g(r->times->m);
    size_t k = std::min(cap, r->times->launched.size());
    for (size_t i = 0; i < k; ++i) {
      index[i] = r->times->index[i];
      launched[i] = r->times->launched[i];
      done[i] = r->times->done[i];
    }
    *n = k;
    r->times->index.clear();
    r->times->launched.clear();
    r->times->done.clear();
  });
}

int64_t fe_now_ns() { return now_ns(); }

}  // extern "C"
