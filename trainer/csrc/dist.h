// Handles shared by dist.cpp (Gloo) and nccl.cpp (NCCL).
#pragma once

#include "ext.h"

#include <cstdint>

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
};
