// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "gloo/common/error.h"
#include "gloo/transport/pair.h"
#include "gloo/transport/unbound_buffer.h"

namespace gloo {
namespace rendezvous {
class Store;
}

namespace transport {

// The transport context: the pairs of one gloo::Context, created by a Device.
class Context {
 public:
  Context(int rank, int size) : rank(rank), size(size) {}
  virtual ~Context();

  const int rank;
  const int size;

  virtual std::unique_ptr<Pair>& getPair(int rank);
  virtual std::unique_ptr<Pair>& createPair(int rank) = 0;
  virtual std::unique_ptr<UnboundBuffer> createUnboundBuffer(void* ptr, size_t size) = 0;

  void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds getTimeout() const { return timeout_; }

 protected:
  std::vector<std::unique_ptr<Pair>> pairs_;
  std::chrono::milliseconds timeout_{std::chrono::seconds(30)};
};

}  // namespace transport
}  // namespace gloo
