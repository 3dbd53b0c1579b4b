// gguf.hpp — a reader for GGUF v2/v3 files: metadata, tensor directory, and dequantisation
// to float of the tensor types a small llama.cpp checkpoint uses (F32, F16, BF16, Q8_0, Q4_0,
// Q4_1). Layout as documented in ggml's docs/gguf.md:
//
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count
//   kv_count × (string key, u32 type, value)              strings are u64 length + bytes
//   tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
//   padding to general.alignment (default 32), then the tensor data, offsets relative to it
//
// ne[0] is the fastest-varying dimension: a weight of ne = (in, out) is `out` rows of `in`.
// The whole file is read into memory once; everything after the constructor is a lookup.
// Errors throw std::runtime_error naming the file and what was expected.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace smollm2::gguf {

/// ggml tensor types this reader dequantises (the numbering is ggml's).
enum class tensor_type : std::uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30 };

/// IEEE binary16 to float, exact for every input (subnormals, infinities, NaN).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: mant × 2^-24, a normal float (exact)
    bits = sign | std::bit_cast<std::uint32_t>(std::ldexp(static_cast<float>(mant), -24));
  }
  return std::bit_cast<float>(bits);
}

/// One block-quantised format: elements per block, bytes per block.
struct block_format {
  std::int64_t elements;
  std::int64_t bytes;
};

inline block_format format_of(tensor_type t) {
  switch (t) {
    case tensor_type::f32: return {1, 4};
    case tensor_type::f16:
    case tensor_type::bf16: return {1, 2};
    case tensor_type::q4_0: return {32, 2 + 16};
    case tensor_type::q4_1: return {32, 2 + 2 + 16};
    case tensor_type::q8_0: return {32, 2 + 32};
  }
  throw std::runtime_error("gguf: tensor type " + std::to_string(static_cast<std::uint32_t>(t)) +
                           " is not supported (expected F32, F16, BF16, Q4_0, Q4_1 or Q8_0)");
}

inline std::string_view name_of(tensor_type t) {
  switch (t) {
    case tensor_type::f32: return "F32";
    case tensor_type::f16: return "F16";
    case tensor_type::bf16: return "BF16";
    case tensor_type::q4_0: return "Q4_0";
    case tensor_type::q4_1: return "Q4_1";
    case tensor_type::q8_0: return "Q8_0";
  }
  return "?";
}

/// Dequantises `n` elements (a multiple of the block size) from `src` into `dst`.
/// Block layouts (ggml-common.h): Q4_0 {f16 d; u8 qs[16]} x = (q - 8)·d; Q4_1 {f16 d, m; u8 qs[16]}
/// x = q·d + m; Q8_0 {f16 d; i8 qs[32]} x = q·d. The low nibbles of qs are elements 0..15, the
/// high nibbles 16..31.
inline void dequantize(tensor_type t, const std::byte* src, std::int64_t n, float* dst) {
  const auto u16 = [](const std::byte* p) {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  };
  const block_format f = format_of(t);
  if (n % f.elements != 0)
    throw std::runtime_error("gguf: " + std::to_string(n) + " elements is not a multiple of the " +
                             std::string(name_of(t)) + " block size " + std::to_string(f.elements));
  for (std::int64_t b = 0; b < n / f.elements; ++b, src += f.bytes, dst += f.elements) {
    switch (t) {
      case tensor_type::f32: std::memcpy(dst, src, 4); break;
      case tensor_type::f16: dst[0] = half_to_float(u16(src)); break;
      case tensor_type::bf16: dst[0] = std::bit_cast<float>(static_cast<std::uint32_t>(u16(src)) << 16); break;
      case tensor_type::q4_0:
      case tensor_type::q4_1: {
        const float d = half_to_float(u16(src));
        const bool offset = t == tensor_type::q4_1;
        const float m = offset ? half_to_float(u16(src + 2)) : 0.0f;
        const auto* qs = reinterpret_cast<const std::uint8_t*>(src + (offset ? 4 : 2));
        for (int j = 0; j < 16; ++j) {
          const int lo = qs[j] & 0x0f, hi = qs[j] >> 4;
          dst[j] = offset ? static_cast<float>(lo) * d + m : static_cast<float>(lo - 8) * d;
          dst[j + 16] = offset ? static_cast<float>(hi) * d + m : static_cast<float>(hi - 8) * d;
        }
        break;
      }
      case tensor_type::q8_0: {
        const float d = half_to_float(u16(src));
        const auto* qs = reinterpret_cast<const std::int8_t*>(src + 2);
        for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(qs[j]) * d;
        break;
      }
    }
  }
}

/// A tensor's entry in the directory. `dims` is ggml's ne: dims[0] varies fastest.
struct tensor_info {
  std::string name;
  std::vector<std::int64_t> dims;
  tensor_type type;
  std::uint64_t offset;  ///< from the start of the data section

  std::int64_t elements() const {
    std::int64_t n = 1;
    for (const std::int64_t d : dims) n *= d;
    return n;
  }
  std::int64_t bytes() const {
    const block_format f = format_of(type);
    return elements() / f.elements * f.bytes;
  }
};

class file {
 public:
  /// A metadata value: scalars widened to the largest type of their kind; arrays of scalars or strings.
  using value = std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<std::int64_t>,
                             std::vector<double>, std::vector<std::string>>;

  explicit file(const std::filesystem::path& path) : path_(path.string()) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail("cannot open the file");
    bytes_.resize(static_cast<std::size_t>(in.tellg()));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(bytes_.data()), static_cast<std::streamsize>(bytes_.size()));
    if (!in) fail("cannot read the file");
    parse();
  }

  const std::string& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  const std::map<std::string, value, std::less<>>& metadata() const { return kv_; }
  const std::vector<tensor_info>& tensors() const { return tensors_; }

  bool has(std::string_view key) const { return kv_.find(key) != kv_.end(); }
  bool has_tensor(std::string_view name) const { return find_tensor(name) != nullptr; }

  std::string string(std::string_view key) const { return get<std::string>(key, "a string"); }
  bool boolean(std::string_view key) const { return get<bool>(key, "a bool"); }
  std::vector<std::string> strings(std::string_view key) const {
    return get<std::vector<std::string>>(key, "an array of strings");
  }
  std::vector<std::int64_t> integers(std::string_view key) const {
    return get<std::vector<std::int64_t>>(key, "an array of integers");
  }
  /// Any integer scalar, as uint64 (negative values are an error).
  std::uint64_t integer(std::string_view key) const {
    const value& v = at(key);
    if (const auto* u = std::get_if<std::uint64_t>(&v)) return *u;
    if (const auto* i = std::get_if<std::int64_t>(&v); i && *i >= 0) return static_cast<std::uint64_t>(*i);
    fail("metadata '" + std::string(key) + "' is not a non-negative integer");
  }
  /// Any float or integer scalar, as double.
  double real(std::string_view key) const {
    const value& v = at(key);
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<double>(*u);
    if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    fail("metadata '" + std::string(key) + "' is not a number");
  }

  const tensor_info& tensor(std::string_view name) const {
    if (const tensor_info* t = find_tensor(name)) return *t;
    fail("no tensor named '" + std::string(name) + "'");
  }

  /// The tensor's raw bytes, as stored.
  std::span<const std::byte> raw(const tensor_info& t) const {
    return {bytes_.data() + data_start_ + t.offset, static_cast<std::size_t>(t.bytes())};
  }

  /// The tensor dequantised to float, in storage order (dims[0] fastest). If `expected` is
  /// given, the dims must match it exactly.
  std::vector<float> dequantize(std::string_view name, std::span<const std::int64_t> expected = {}) const {
    const tensor_info& t = tensor(name);
    if (!expected.empty() && !std::equal(expected.begin(), expected.end(), t.dims.begin(), t.dims.end()))
      fail("tensor '" + t.name + "' has dims " + dims_string(t.dims) + ", expected " +
           dims_string({expected.begin(), expected.end()}));
    std::vector<float> out(static_cast<std::size_t>(t.elements()));
    gguf::dequantize(t.type, raw(t).data(), t.elements(), out.data());
    return out;
  }

  static std::string dims_string(const std::vector<std::int64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error("gguf " + path_ + ": " + what); }

  const value& at(std::string_view key) const {
    const auto it = kv_.find(key);
    if (it == kv_.end()) fail("no metadata key '" + std::string(key) + "'");
    return it->second;
  }
  template <class V>
  const V& get(std::string_view key, const char* expected) const {
    const value& v = at(key);
    if (const auto* p = std::get_if<V>(&v)) return *p;
    fail("metadata '" + std::string(key) + "' is not " + expected);
  }
  const tensor_info* find_tensor(std::string_view name) const {
    for (const tensor_info& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }

  // ---- parsing: a cursor over bytes_, every read bounds-checked -----------------------------
  template <class U>
  U read() {
    if (pos_ + sizeof(U) > bytes_.size()) fail("truncated at byte " + std::to_string(pos_));
    U v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(U));
    pos_ += sizeof(U);
    return v;
  }
  std::string read_string() {
    const auto n = read<std::uint64_t>();
    if (n > bytes_.size() - pos_) fail("string of " + std::to_string(n) + " bytes runs past the end");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // GGUF value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
  // 9 array, 10 u64, 11 i64, 12 f64.
  enum : std::uint32_t { u8, i8, u16, i16, u32, i32, f32, boolean_t, string_t, array_t, u64, i64, f64 };

  std::variant<std::uint64_t, std::int64_t, double, bool, std::string> read_scalar(std::uint32_t type) {
    switch (type) {
      case u8: return std::uint64_t{read<std::uint8_t>()};
      case i8: return std::int64_t{read<std::int8_t>()};
      case u16: return std::uint64_t{read<std::uint16_t>()};
      case i16: return std::int64_t{read<std::int16_t>()};
      case u32: return std::uint64_t{read<std::uint32_t>()};
      case i32: return std::int64_t{read<std::int32_t>()};
      case f32: return double{read<float>()};
      case boolean_t: return read<std::uint8_t>() != 0;
      case string_t: return read_string();
      case u64: return read<std::uint64_t>();
      case i64: return read<std::int64_t>();
      case f64: return read<double>();
      default: fail("unknown metadata value type " + std::to_string(type) + " at byte " + std::to_string(pos_));
    }
  }

  value read_value(std::uint32_t type) {
    if (type != array_t)
      return std::visit([](auto&& s) -> value { return std::move(s); }, read_scalar(type));
    const auto elem = read<std::uint32_t>();
    const auto n = read<std::uint64_t>();
    if (n > bytes_.size() - pos_) fail("array of " + std::to_string(n) + " elements runs past the end");
    if (elem == string_t) {
      std::vector<std::string> out;
      out.reserve(n);
      for (std::uint64_t i = 0; i < n; ++i) out.push_back(read_string());
      return out;
    }
    if (elem == f32 || elem == f64) {
      std::vector<double> out;
      out.reserve(n);
      for (std::uint64_t i = 0; i < n; ++i) out.push_back(std::get<double>(read_scalar(elem)));
      return out;
    }
    if (elem == array_t) fail("nested metadata arrays are not supported");
    std::vector<std::int64_t> out;  // integers and bools
    out.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto s = read_scalar(elem);
      if (const auto* u = std::get_if<std::uint64_t>(&s)) out.push_back(static_cast<std::int64_t>(*u));
      else if (const auto* b = std::get_if<bool>(&s)) out.push_back(*b);
      else out.push_back(std::get<std::int64_t>(s));
    }
    return out;
  }

  void parse() {
    if (read<std::uint32_t>() != 0x46554747u) fail("not a GGUF file (magic is not 'GGUF')");
    version_ = read<std::uint32_t>();
    if (version_ != 2 && version_ != 3) fail("GGUF version " + std::to_string(version_) + ", expected 2 or 3");
    const auto n_tensors = read<std::uint64_t>();
    const auto n_kv = read<std::uint64_t>();
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::string key = read_string();
      const auto type = read<std::uint32_t>();
      kv_.insert_or_assign(std::move(key), read_value(type));
    }
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      tensor_info t;
      t.name = read_string();
      const auto n_dims = read<std::uint32_t>();
      if (n_dims == 0 || n_dims > 4) fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims, expected 1..4");
      for (std::uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(static_cast<std::int64_t>(read<std::uint64_t>()));
      t.type = static_cast<tensor_type>(read<std::uint32_t>());
      (void)format_of(t.type);  // rejects a type this reader cannot dequantise, naming it
      t.offset = read<std::uint64_t>();
      tensors_.push_back(std::move(t));
    }
    const std::uint64_t alignment = has("general.alignment") ? integer("general.alignment") : 32;
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
      fail("general.alignment " + std::to_string(alignment) + " is not a power of two");
    data_start_ = (pos_ + alignment - 1) / alignment * alignment;
    for (const tensor_info& t : tensors_)
      if (data_start_ + t.offset + static_cast<std::uint64_t>(t.bytes()) > bytes_.size())
        fail("tensor '" + t.name + "' (" + std::to_string(t.bytes()) + " bytes at offset " +
             std::to_string(t.offset) + ") runs past the end of the file");
  }

  std::string path_;
  std::vector<std::byte> bytes_;
  std::size_t pos_ = 0;
  std::size_t data_start_ = 0;
  std::uint32_t version_ = 0;
  std::map<std::string, value, std::less<>> kv_;
  std::vector<tensor_info> tensors_;
};

}  // namespace smollm2::gguf
