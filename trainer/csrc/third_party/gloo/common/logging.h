// Copyright (c) 2017-present, Facebook, Inc. BSD licence: see LICENSE in this folder's parent.
// Subset of gloo's interface headers, see ../README.md.
#pragma once

#include <exception>
#include <string>

#include "gloo/common/error.h"
#include "gloo/common/string.h"

namespace gloo {

class EnforceNotMet : public std::exception {
 public:
  EnforceNotMet(const char* file, const int line, const char* condition, const std::string& msg)
      : msg_(MakeString("[enforce fail at ", file, ":", line, "] ", condition, ". ", msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

}  // namespace gloo

#define GLOO_ENFORCE(condition, ...)                                                   \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      throw ::gloo::EnforceNotMet(__FILE__, __LINE__, #condition,                      \
                                  ::gloo::MakeString(__VA_ARGS__));                    \
    }                                                                                  \
  } while (false)

#define GLOO_ENFORCE_EQ(x, y, ...) GLOO_ENFORCE((x) == (y), __VA_ARGS__)
#define GLOO_ENFORCE_NE(x, y, ...) GLOO_ENFORCE((x) != (y), __VA_ARGS__)
#define GLOO_ENFORCE_LE(x, y, ...) GLOO_ENFORCE((x) <= (y), __VA_ARGS__)
#define GLOO_ENFORCE_LT(x, y, ...) GLOO_ENFORCE((x) < (y), __VA_ARGS__)
#define GLOO_ENFORCE_GE(x, y, ...) GLOO_ENFORCE((x) >= (y), __VA_ARGS__)
#define GLOO_ENFORCE_GT(x, y, ...) GLOO_ENFORCE((x) > (y), __VA_ARGS__)
