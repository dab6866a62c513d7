// Handles shared by dist.cpp (Gloo) and nccl.cpp (NCCL).
#pragma once

#include "ext.h"

#include <atomic>
#include <cstdint>
#include <memory>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

struct FeStore {
  c10::intrusive_ptr<c10d::Store> store;
};
struct FePg {
  c10::intrusive_ptr<c10d::Backend> pg;
};
struct FeWork {
  c10::intrusive_ptr<c10d::Work> work;
  // Steady-clock time (ns) the collective completed, once fe_work_time_completion asked for it
  // (0 until then).
  std::shared_ptr<std::atomic<int64_t>> done_ns;
};
