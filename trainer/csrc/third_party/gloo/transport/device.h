// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "gloo/transport/context.h"
#include "gloo/transport/pair.h"

namespace gloo {
namespace transport {

// Default timeout of a device's pairs.
const auto kDefaultTimeout = std::chrono::seconds(30);

// A transport device: an interface to send and receive over (TCP on an address, ...).
class Device {
 public:
  virtual ~Device() = 0;

  virtual std::string str() const = 0;
  virtual const std::string& getPCIBusID() const = 0;
  virtual int getInterfaceSpeed() const { return 0; }
  virtual bool hasGPUDirect() const { return false; }

  virtual std::shared_ptr<Context> createContext(int rank, int size) = 0;
};

}  // namespace transport
}  // namespace gloo
