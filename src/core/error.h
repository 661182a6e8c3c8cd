// Errors a user can cause (bad paths, bad files, bad flags) are thrown as wanrt::Error with a
// message that names the file or flag, says what is wrong, and where possible what to do.
// Bugs (broken invariants) use WANRT_ASSERT, which also throws so tests can see it, but
// with file:line so it reads as a bug report.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace wanrt {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Joins its arguments with operator<< into one message: str_cat("bad shape ", 3, "x", 4).
template <typename... Parts>
std::string str_cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(str_cat(std::forward<Parts>(parts)...));
}

}  // namespace wanrt

// A condition the user's input can break: the message parts are joined into the error.
#define WANRT_CHECK(cond, ...)              \
  do {                                      \
    if (!(cond)) ::wanrt::fail(__VA_ARGS__); \
  } while (0)

// An internal invariant: failing it is a bug in wanrt.
#define WANRT_ASSERT(cond)                                                                 \
  do {                                                                                     \
    if (!(cond))                                                                           \
      ::wanrt::fail("internal error (a wanrt bug): ", #cond, " at ", __FILE__, ":", __LINE__); \
  } while (0)
