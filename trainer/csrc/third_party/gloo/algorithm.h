// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in gloo/.
// Subset of gloo's interface headers, see gloo/README.md.
#pragma once

#include <memory>

#include "gloo/context.h"
#include "gloo/common/logging.h"

namespace gloo {

extern const size_t kOnDeviceThreshold;

class Algorithm {
 public:
  explicit Algorithm(const std::shared_ptr<Context>&);
  virtual ~Algorithm() = 0;

  virtual void run() = 0;

 protected:
  std::shared_ptr<Context> context_;
  const int contextRank_;
  const int contextSize_;

  std::unique_ptr<transport::Pair>& getPair(int i);
  std::unique_ptr<transport::Pair>& getLeftPair();
  std::unique_ptr<transport::Pair>& getRightPair();
};

// Type of reduction function.
template <typename T>
using ReductionFunction = void(T*, const T*, const T*, size_t);

}  // namespace gloo
