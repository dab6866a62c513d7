// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gloo/common/error.h"

namespace gloo {
namespace transport {

// The unbound buffer base class: a buffer not bound to a pair, used for send/recv.
class UnboundBuffer {
 public:
  UnboundBuffer(void* ptr, size_t size) : ptr(ptr), size(size) {}
  virtual ~UnboundBuffer() = 0;

  void* const ptr;
  const size_t size;

  virtual bool waitRecv(int* rank, std::chrono::milliseconds timeout) = 0;
  virtual bool waitSend(int* rank, std::chrono::milliseconds timeout) = 0;

  bool waitRecv(std::chrono::milliseconds timeout = kNoTimeout) {
    return waitRecv(nullptr, timeout);
  }
  bool waitSend(std::chrono::milliseconds timeout = kNoTimeout) {
    return waitSend(nullptr, timeout);
  }

  virtual void abortWaitRecv() = 0;
  virtual void abortWaitSend() = 0;

  virtual void send(int dstRank, uint64_t slot, size_t offset = 0, size_t nbytes = 0) = 0;
  virtual void recv(int srcRank, uint64_t slot, size_t offset = 0, size_t nbytes = 0) = 0;
  virtual void recv(std::vector<int> srcRanks, uint64_t slot, size_t offset = 0,
                    size_t nbytes = 0) = 0;
};

}  // namespace transport
}  // namespace gloo
