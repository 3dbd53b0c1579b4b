#pragma once
// kvcap/core/error.hpp — the one exception type of the host path.
//
// Every validation failure names the argument that was wrong, what was expected and what
// was received, so that an engine author can fix the call without reading kvcap's source.
// Validation always runs before any write: a call that throws leaves the cache unchanged.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kvcap {

class error : public std::invalid_argument {
 public:
  error(std::string argument, std::string expected, std::string received)
      : std::invalid_argument("kvcap: argument '" + argument + "': expected " + expected +
                              ", got " + received),
        argument_(std::move(argument)),
        expected_(std::move(expected)),
        received_(std::move(received)) {}

  const std::string& argument() const noexcept { return argument_; }
  const std::string& expected() const noexcept { return expected_; }
  const std::string& received() const noexcept { return received_; }

 private:
  std::string argument_, expected_, received_;
};

namespace detail {

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

/// Throws kvcap::error unless `ok`. The message parts are only formatted on failure.
template <class Expected, class Received>
void require(bool ok, const char* argument, const Expected& expected, const Received& received) {
  if (!ok) throw error(argument, concat(expected), concat(received));
}

}  // namespace detail
}  // namespace kvcap
