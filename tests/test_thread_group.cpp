// Policies written once for a thread group (core/thread_group.hpp): the merge reducer run by
// a team of 4 or 32 threads (real std::threads, a barrier for sync(), a shared board for
// shuffle_xor: the shape of the device's warp) leaves exactly the bytes it leaves when run
// by the host executor's single thread, on random caches with frames, ties, dropped runs,
// heads with nothing kept, and keys whose norms overflow (NaN cosines).
#include <doctest/doctest.h>

#include <kvcap.hpp>

#include <array>
#include <atomic>
#include <barrier>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {
using namespace kvcap;

/// A group of `size` threads that meet at a barrier.
struct team {
  static constexpr std::size_t merge_rows = reducers::merge::staged_rows;
  struct shared {
    std::barrier<> meet;
    std::vector<std::array<std::byte, 32>> board;
    std::atomic<index_t> staged{0};
    std::vector<float> scratch;  // stage()'s copies: room for merge::staged_rows rows of up to 16
    explicit shared(int size) : meet(size), board(static_cast<std::size_t>(size)), scratch(merge_rows * 16) {}
  };
  shared* s;
  int rank_, size_;
  int rank() const { return rank_; }
  int size() const { return size_; }
  void sync() const { s->meet.arrive_and_wait(); }
  template <class V>
  V shuffle_xor(V v, int mask) const {
    static_assert(sizeof(V) <= 32);
    std::memcpy(s->board[static_cast<std::size_t>(rank_)].data(), &v, sizeof v);
    sync();
    V other;
    std::memcpy(&other, s->board[static_cast<std::size_t>(rank_ ^ mask)].data(), sizeof other);
    sync();
    return other;
  }
  std::uint32_t ballot(bool p) const {
    std::uint32_t word = 0;
    for (int r = 0; r < size_; ++r) word |= static_cast<std::uint32_t>(shuffle_xor(p, rank_ ^ r)) << r;
    return word;
  }
  /// As a warp stages: the threads copy the rows' elements between them into memory of the
  /// team's own, then every thread reads the copies.
  void stage(vector_ref<const float>* rows, int count) const {
    const index_t len = rows[0].size;
    if (static_cast<std::size_t>(count * len) > s->scratch.size()) return;  // as a warp: rows that do not fit stay
    sync();  // everyone has finished reading the last copies
    for (index_t i = rank_; i < count * len; i += size_) s->scratch[static_cast<std::size_t>(i)] = rows[i / len][i % len];
    sync();
    for (int r = 0; r < count; ++r) rows[r].data = s->scratch.data() + r * len;
    if (rank_ == 0) ++s->staged;
  }
};

struct cache {
  std::vector<float> k, v;
  std::vector<token_meta> meta;
  layer_view<float, layouts::nhd> view{};
  cache(index_t n, index_t heads, index_t dim)
      : k(static_cast<std::size_t>(n * heads * dim)), v(k.size()), meta(static_cast<std::size_t>(n * heads)) {
    view.mapping = make_mapping<layouts::nhd>(n, heads, dim);
    view.k = k.data(), view.v = v.data(), view.meta = meta.data(), view.length = n;
  }
};

}  // namespace

TEST_CASE("merge run by a team of threads leaves the bytes merge run alone leaves") {
  std::mt19937_64 g(7);
  const auto between = [&](index_t lo, index_t hi) { return std::uniform_int_distribution<index_t>(lo, hi)(g); };
  std::normal_distribution<float> normal;
  index_t folded = 0, staged = 0;
  for (int c = 0; c < 48; ++c) {
    const structures::temporal_frames frames{.frames = 64, .rows = between(1, 4), .cols = between(1, 4)};
    const index_t heads = between(1, 3), dim = between(1, 16), n = between(1, 150);
    const int mode = static_cast<int>(between(0, 2));  // normal, small integers (ties), overflowing norms
    cache alone(n, heads, dim);
    for (index_t head = 0; head < heads; ++head) {
      index_t index = 0;
      for (index_t tok = 0; tok < n; ++tok) {
        index += between(1, 2);
        token_meta m = frames.meta(index);
        m.size = static_cast<std::int32_t>(between(1, 3));
        alone.view.meta_at(tok, head) = m;
        for (index_t d = 0; d < dim; ++d) {
          const float x = mode == 1 ? static_cast<float>(between(-1, 1)) : normal(g);
          alone.view.key(tok, head).data[d] = mode == 2 && between(0, 4) == 0 ? x * 1e30f : x;
          alone.view.value(tok, head).data[d] = normal(g);
        }
      }
    }
    std::vector<std::uint8_t> keep(static_cast<std::size_t>(n));
    const index_t p_keep = between(0, 10);  // 0: nothing kept (every token simply evicted)
    for (auto& flag : keep) flag = between(1, 10) <= p_keep;
    folded += n - std::count(keep.begin(), keep.end(), 1);

    cache alone_done(n, heads, dim);  // the single thread's result
    alone_done.k = alone.k, alone_done.v = alone.v, alone_done.meta = alone.meta;
    for (index_t head = 0; head < heads; ++head) {
      host::reduce_context<float, layouts::nhd, structures::temporal_frames> ctx{{&alone_done.view, &frames, head, n},
                                                                                 keep.data()};
      reducers::merge{}.reduce(ctx);
    }
    for (const int size : {4, 32}) {
      if (size == 32 && c % 4 != 0) continue;  // 32 threads on a 2-core CI machine: a quarter of the cases
      cache together(n, heads, dim);
      together.k = alone.k, together.v = alone.v, together.meta = alone.meta;
      for (index_t head = 0; head < heads; ++head) {
        team::shared shared(size);
        std::vector<std::thread> threads;
        for (int rank = 0; rank < size; ++rank)
          threads.emplace_back([&, rank] {
            host::reduce_context<float, layouts::nhd, structures::temporal_frames> ctx{
                {&together.view, &frames, head, n}, keep.data()};
            reducers::merge{}.reduce(ctx, team{&shared, rank, size});
          });
        for (auto& t : threads) t.join();
        staged += shared.staged;
      }
      INFO("case ", c, ", team of ", size);
      REQUIRE(std::memcmp(alone_done.k.data(), together.k.data(), alone.k.size() * sizeof(float)) == 0);
      REQUIRE(std::memcmp(alone_done.v.data(), together.v.data(), alone.v.size() * sizeof(float)) == 0);
      REQUIRE(std::memcmp(alone_done.meta.data(), together.meta.data(), alone.meta.size() * sizeof(token_meta)) == 0);
    }
  }
  CHECK(folded > 800);  // dropped tokens the teams folded
  CHECK(staged > 800);  // ... through rows the teams staged
}

TEST_CASE("merge's choice is an argmax under a total order: NaN cosines lose, ties go to the smaller slot") {
  using choice = reducers::merge::choice;
  const choice none{}, a{0.5f, 4}, b{0.5f, 2}, c{0.9f, 7}, d{-HUGE_VALF, 1};
  CHECK(choice::better(none, a).slot == 4);
  CHECK(choice::better(a, none).slot == 4);
  CHECK(choice::better(a, b).slot == 2);
  CHECK(choice::better(b, a).slot == 2);
  CHECK(choice::better(a, c).slot == 7);
  CHECK(choice::better(d, a).slot == 4);
  CHECK(all_reduce(single_thread{}, a, choice::better).slot == 4);
}
