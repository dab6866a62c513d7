// The C ABI of the trainer's libtorch extension (trainer/src/ext.rs declares the same functions).
//
// Conventions, shared by every function:
// - tensors are passed as `at::Tensor*` (what tch's `Tensor::as_ptr()` returns);
// - a function that can fail returns a `char*` error message (nullptr on success) allocated
//   with malloc; the caller frees it with `fe_free`. No C++ exception crosses this boundary:
//   each body runs inside `fe_guard`, which turns any exception into such a message.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace fe {

inline char* dup_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
  }
  return out;
}

// Runs `f`; returns nullptr, or the message of the exception it threw (without c10's C++
// backtrace, which says nothing to a user).
template <typename F>
char* guard(F&& f) noexcept {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return dup_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup_message(e.what());
  } catch (...) {
    return dup_message("unknown C++ exception");
  }
}

}  // namespace fe
