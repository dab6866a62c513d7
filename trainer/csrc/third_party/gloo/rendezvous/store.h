// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "gloo/common/error.h"
#include "gloo/common/logging.h"

// The optional multi-key operations of gloo's Store interface are not declared here (c10d's
// GlooStore adds them only under GLOO_STORE_HAS_STORE_V2, which stays undefined).

namespace gloo {
namespace rendezvous {

// A key-value store the ranks rendezvous through.
class Store {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds(30);

  virtual ~Store() = default;

  virtual void set(const std::string& key, const std::vector<char>& data) = 0;

  virtual std::vector<char> get(const std::string& key) = 0;

  virtual void wait(const std::vector<std::string>& keys) = 0;

  virtual void wait(const std::vector<std::string>& keys,
                    const std::chrono::milliseconds& /*timeout*/) {
    wait(keys);
  }
};

}  // namespace rendezvous
}  // namespace gloo
