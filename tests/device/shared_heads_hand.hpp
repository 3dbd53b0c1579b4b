#pragma once
// tests/device/shared_heads_hand.hpp — hand-checked kept sets of heads that share a budget
// (compress_batch::share_heads), for any executor of shared_heads_case.hpp's kind: the
// reference (test_device_shared_heads.cpp) and the kernels (test_device_parity.cu, on a GPU
// and on the SIMT emulator) must both keep exactly these tokens.

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "harness.hpp"

namespace kvcap_test {

/// `img`: two heads of `tokens` tokens (NHD, `dim` dims, as `arrange` draws them), each slot
/// holding logical index = slot and a first key element `key(head, slot)`; all resident.
template <class Key>
void two_heads(host_image<float, layouts::nhd>& img, rng& r, index_t tokens, index_t dim, Key key) {
  arrange(img, r, tokens, 2, dim);
  for (index_t head = 0; head < 2; ++head)
    for (index_t tok = 0; tok < tokens; ++tok) {
      img.view.meta_at(tok, head).index = tok;
      img.view.k[img.view.mapping(tok, head)] = key(head, tok);
    }
  img.view.length = tokens;
}

/// Two heads of six slots (NHD, key_norm: the smaller |k| is kept), the keys chosen for ties
/// across heads; each slot holds logical index = slot. `lengths`: each head's resident
/// tokens (empty: all six). Returns each head's kept logical indices.
template <class Executor>
std::vector<std::vector<std::int64_t>> shared_hand_case(const Executor& exec, double fraction, index_t budget,
                                                        std::vector<index_t> lengths = {}) {
  using T = float;
  std::vector<host_image<T, layouts::nhd>> images(1);
  host_image<T, layouts::nhd>& img = images[0];
  rng r(1);
  const float k[2][6] = {{5, 1, 6, 2, 7, 3}, {5, 5, 4, 9, 4, 9}};
  two_heads(img, r, 6, 1, [&](index_t head, index_t tok) { return k[head][tok]; });
  const std::vector<layer_view<T, layouts::nhd>> views{img.view};
  const std::vector<index_t> budgets{budget};
  device::compress_batch<T, layouts::nhd> batch{views, budgets};
  batch.head_lengths = lengths;
  batch.share_heads = device::head_sharing{fraction};
  const std::vector<index_t> out = exec(images, batch, device::compress_policies<scorers::key_norm>{});
  std::vector<std::vector<std::int64_t>> kept(2);
  for (index_t head = 0; head < 2; ++head)
    for (index_t tok = 0; tok < out[head]; ++tok) kept[head].push_back(img.view.meta_at(tok, head).index);
  return kept;
}

template <class Executor>
void check_shared_hand_cases(const Executor& exec) {
  using kept = std::vector<std::vector<std::int64_t>>;
  // Budget 3 a head, 6 in all. Floor ⌊3 · 0.34⌋ = 1: head 0 keeps token 1 (|k| 1), head 1
  // token 2 (|k| 4, tied with token 4: the smaller index). The other 4 go to the best of the
  // rest: head 0's tokens 3 and 5 (|k| 2, 3), head 1's token 4 (|k| 4), then three at |k| 5:
  // head 0's and head 1's token 0 (the same index: the smaller head) before head 1's token 1.
  CHECK(shared_hand_case(exec, 0.34, 3) == kept{{0, 1, 3, 5}, {2, 4}});
  // No floor: the 6 best overall, the same set here.
  CHECK(shared_hand_case(exec, 0.0, 3) == kept{{0, 1, 3, 5}, {2, 4}});
  // A floor of the whole budget is a uniform budget: 3 each (head 1: |k| 4, 4, then token 0).
  CHECK(shared_hand_case(exec, 1.0, 3) == kept{{1, 3, 5}, {0, 2, 4}});
  // Budget 1, floor 0: the two best, both in head 0.
  CHECK(shared_hand_case(exec, 0.5, 1) == kept{{1, 3}, {}});
  // A budget that holds every token keeps all.
  CHECK(shared_hand_case(exec, 0.25, 6) == kept{{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}});
  // A head below its floor: head 0 holds 2 tokens, head 1 six (8 > 6: the view compresses).
  // Floor 3: head 0 keeps its 2 and has nothing to drop; its unused floor goes to head 1,
  // which keeps 6 − 2 = 4: |k| 4, 4 (tokens 2, 4), then 5, 5 (tokens 0, 1).
  CHECK(shared_hand_case(exec, 1.0, 3, {2, 6}) == kept{{0, 1}, {0, 1, 2, 4}});
  // The same view at floor 1: each head keeps its best (head 0: token 1; head 1: token 2),
  // the other 4 by |k| across heads: head 1's token 4 (4), then head 0's token 0 and head 1's
  // tokens 0, 1 (5; at index 0 the smaller head first).
  CHECK(shared_hand_case(exec, 0.5, 3, {2, 6}) == kept{{0, 1}, {0, 1, 2, 4}});
  // A view within its budget (5 ≤ 6) keeps everything, heads of any lengths.
  CHECK(shared_hand_case(exec, 1.0, 3, {5, 0}) == kept{{0, 1, 2, 3, 4}, {}});
}

}  // namespace kvcap_test
