// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "gloo/common/logging.h"
#include "gloo/transport/address.h"
#include "gloo/transport/buffer.h"
#include "gloo/transport/unbound_buffer.h"

namespace gloo {
namespace transport {

class Pair {
 public:
  virtual ~Pair() = 0;

  virtual const Address& address() const = 0;
  virtual void connect(const std::vector<char>& bytes) = 0;
  virtual void close() = 0;
  virtual void setSync(bool enable, bool busyPoll) = 0;

  virtual std::unique_ptr<Buffer> createSendBuffer(int slot, void* ptr, size_t size) = 0;
  virtual std::unique_ptr<Buffer> createRecvBuffer(int slot, void* ptr, size_t size) = 0;

  virtual bool isConnected() = 0;
  virtual void setLocalRank(int localRank) = 0;
  virtual int getLocalRank() = 0;

  virtual void send(UnboundBuffer* buf, uint64_t tag, size_t offset = 0, size_t nbytes = 0) = 0;
  virtual void recv(UnboundBuffer* buf, uint64_t tag, size_t offset = 0, size_t nbytes = 0) = 0;
};

}  // namespace transport
}  // namespace gloo
