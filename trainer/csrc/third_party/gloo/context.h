// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "gloo/transport/pair.h"

namespace gloo {

namespace transport {
class Context;
class Device;
class UnboundBuffer;
}  // namespace transport

// The set of connections of one process to its peers, and its rank among them.
class Context {
 public:
  Context(int rank, int size, int base = 2);
  virtual ~Context();

  const int rank;
  const int size;
  int base;

  std::shared_ptr<transport::Device>& getDevice();
  std::unique_ptr<transport::Pair>& getPair(int i);
  std::unique_ptr<transport::UnboundBuffer> createUnboundBuffer(void* ptr, size_t size);

  int nextSlot(int numToSkip = 1);
  void closeConnections();

  void setTimeout(std::chrono::milliseconds timeout);
  std::chrono::milliseconds getTimeout() const;

 protected:
  std::shared_ptr<transport::Device> device_;
  std::shared_ptr<transport::Context> transportContext_;
  int slot_;
  std::chrono::milliseconds timeout_;
};

}  // namespace gloo
