// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <string>
#include <vector>

namespace gloo {
namespace transport {

class Address {
 public:
  virtual ~Address() = 0;
  virtual std::string str() const = 0;
  virtual std::vector<char> bytes() const = 0;
};

}  // namespace transport
}  // namespace gloo
