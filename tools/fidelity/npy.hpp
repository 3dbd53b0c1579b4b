#pragma once
// tools/fidelity/npy.hpp — a reader of NumPy .npy files (format 1.0 / 2.0), enough for K/V
// dumps: little-endian float32, float16, int32, int64, uint8; C order; any rank.

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvcap_tools {

struct npy_array {
  std::string descr;               ///< e.g. "<f4"
  std::vector<std::int64_t> shape;
  std::vector<char> bytes;         ///< raw little-endian data, C order

  std::int64_t size() const {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  /// Element i converted to double, whatever the stored type.
  double at(std::int64_t i) const {
    const char* p = bytes.data();
    if (descr == "<f4") return load<float>(p, i);
    if (descr == "<f2") return static_cast<float>(load<Eigen::half>(p, i));
    if (descr == "<f8") return load<double>(p, i);
    if (descr == "<i4") return load<std::int32_t>(p, i);
    if (descr == "<i8") return static_cast<double>(load<std::int64_t>(p, i));
    if (descr == "|u1" || descr == "<u1") return load<std::uint8_t>(p, i);
    if (descr == "|b1") return load<std::uint8_t>(p, i);
    throw std::runtime_error("npy: unsupported dtype " + descr);
  }

 private:
  template <class T>
  static T load(const char* p, std::int64_t i) {
    T v;
    std::memcpy(&v, p + i * static_cast<std::int64_t>(sizeof(T)), sizeof(T));
    return v;
  }
};

inline std::size_t npy_item_size(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f2") return 2;
  if (descr == "<f8" || descr == "<i8") return 8;
  if (descr == "|u1" || descr == "<u1" || descr == "|b1") return 1;
  throw std::runtime_error("npy: unsupported dtype '" + descr + "' (expected <f4, <f2, <f8, <i4, <i8, |u1 or |b1)");
}

/// Reads `path`; throws std::runtime_error naming the file and what was wrong.
inline npy_array read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("npy: cannot open " + path);
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error("npy: " + path + " is not a .npy file");
  std::uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  const auto field = [&](const std::string& key) {
    const auto at = header.find("'" + key + "'");
    if (at == std::string::npos) throw std::runtime_error("npy: " + path + " header lacks " + key);
    return header.substr(header.find(':', at) + 1);
  };
  npy_array a;
  {
    const std::string d = field("descr");
    const auto q0 = d.find('\''), q1 = d.find('\'', q0 + 1);
    a.descr = d.substr(q0 + 1, q1 - q0 - 1);
  }
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw std::runtime_error("npy: " + path + " is Fortran-ordered; save it in C order");
  {
    const std::string s = field("shape");
    const auto open = s.find('('), close = s.find(')');
    std::string dims = s.substr(open + 1, close - open - 1);
    for (std::size_t pos = 0; pos < dims.size();) {
      const auto comma = dims.find(',', pos);
      const std::string tok = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (tok.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(tok));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  a.bytes.resize(static_cast<std::size_t>(a.size()) * npy_item_size(a.descr));
  in.read(a.bytes.data(), static_cast<std::streamsize>(a.bytes.size()));
  if (!in) throw std::runtime_error("npy: " + path + " is shorter than its header says");
  return a;
}

}  // namespace kvcap_tools

namespace kvcap_tools {

/// Writes a C-order little-endian array: `descr` "<f4" (float) or "<f2" (Eigen::half) or
/// "<i4" (int32_t), matching T.
template <class T>
void write_npy(const std::string& path, const std::string& descr, const std::vector<std::int64_t>& shape,
               const T* data) {
  std::string dims;
  std::int64_t count = 1;
  for (auto s : shape) dims += std::to_string(s) + ", ", count *= s;
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("npy: cannot write " + path);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<std::uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
}

}  // namespace kvcap_tools
