// hnswlib (Debian's 0.6.2, header-only) behind a narrow interface for ann_bench.
//
// hnswlib picks its distance kernels with #ifdef __AVX__ / __AVX512F__ at compile time, so the
// flags of the translation unit that includes it decide how fast it is. Keeping it in its own
// file (hnswlib_runner.cc) lets bench/CMakeLists.txt give that file exactly the flags Fathom's
// AVX2 kernels get (-O3 -mavx2 -mfma -mf16c): the race is between algorithms, not compilers.
//
// Not thread-safe: Add uses its own worker threads; Search and SetEf must not run concurrently
// (hnswlib keeps ef in the index, one of the reasons Fathom passes it per query instead).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fathom/status.h"

namespace fathom::bench {

class HnswlibRunner {
 public:
  // hnswlib's two float spaces. kInnerProduct reports 1 - <q, x>; for cosine, feed it
  // normalised vectors.
  enum class Space { kL2, kInnerProduct };

  // An empty index for up to max_elements vectors with hnswlib's parameters M and
  // efConstruction (and its default random seed, 100).
  static Result<std::unique_ptr<HnswlibRunner>> Create(size_t dim, Space space, size_t max_elements,
                                                       size_t m, size_t ef_construction);
  virtual ~HnswlibRunner() = default;

  // Inserts rows [0, n) of x under labels 0..n-1, with `threads` threads calling addPoint
  // concurrently (hnswlib's own recipe for a parallel build).
  virtual Status Add(size_t n, const float* x, int threads) = 0;
  // hnswlib searches with max(ef, k).
  virtual void SetEf(size_t ef) = 0;
  // Writes k results, closest first; missing ones get label -1 and distance +infinity.
  virtual Status Search(const float* query, size_t k, float* distances, int64_t* labels) const = 0;
  // Bytes of the structures hnswlib allocates (see the definition for what is counted).
  virtual size_t memory_bytes() const = 0;

  // Which kernels the hnswlib translation unit was compiled with, e.g. "AVX (USE_AVX)".
  static std::string KernelDescription();
};

}  // namespace fathom::bench
