#pragma once
// kvcap/core/error.hpp — the one exception type of the host path.
//
// Every validation failure names the argument that was wrong, what was expected and what
// was received, so that an engine author can fix the call without reading kvcap's source.
// Validation always runs before any write: a call that throws leaves the cache unchanged.

#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
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

/// Message parts held by reference and formatted only when streamed, i.e. only when a
/// check fails: validation runs on every chunk and must not allocate (an ostringstream
/// does). Use it inside the full expression of a require() call.
template <class... Parts>
class lazy_message {
 public:
  explicit lazy_message(const Parts&... parts) : parts_(parts...) {}
  friend std::ostream& operator<<(std::ostream& os, const lazy_message& m) {
    std::apply([&os](const auto&... p) { (os << ... << p); }, m.parts_);
    return os;
  }

 private:
  std::tuple<const Parts&...> parts_;
};

template <class... Parts>
lazy_message<Parts...> lazy(const Parts&... parts) {
  return lazy_message<Parts...>(parts...);
}

/// Throws kvcap::error unless `ok`. The message parts are only formatted on failure
/// (pass lazy(...) rather than concat(...) for a composed expected value).
template <class Expected, class Received>
void require(bool ok, const char* argument, const Expected& expected, const Received& received) {
  if (!ok) throw error(argument, concat(expected), concat(received));
}

}  // namespace detail
}  // namespace kvcap
