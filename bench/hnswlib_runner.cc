#include "hnswlib_runner.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

namespace fathom::bench {
namespace {

class HnswlibRunnerImpl final : public HnswlibRunner {
 public:
  HnswlibRunnerImpl(size_t dim, Space space, size_t max_elements, size_t m, size_t ef_construction)
      : space_(space == Space::kL2
                   ? std::unique_ptr<hnswlib::SpaceInterface<float>>(new hnswlib::L2Space(dim))
                   : std::unique_ptr<hnswlib::SpaceInterface<float>>(
                         new hnswlib::InnerProductSpace(dim))),
        index_(std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), max_elements, m,
                                                                 ef_construction)),
        dim_(dim) {}

  Status Add(size_t n, const float* x, int threads) override {
    if (threads < 1) threads = 1;
    std::atomic<size_t> next{0};
    std::mutex error_mu;
    std::string error;
    // Work is handed out one point at a time: insert costs vary with the point's level, so
    // static chunks would leave one thread idle at the end.
    auto worker = [&] {
      try {
        for (size_t i = next++; i < n; i = next++) {
          index_->addPoint(x + i * dim_, static_cast<hnswlib::labeltype>(i));
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (error.empty()) error = e.what();
        next = n;
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    visited_lists_ = std::max(visited_lists_, static_cast<size_t>(threads));
    if (!error.empty()) return Status::Internal("hnswlib addPoint failed: " + error);
    return Status::OK();
  }

  void SetEf(size_t ef) override { index_->setEf(ef); }

  Status Search(const float* query, size_t k, float* distances, int64_t* labels) const override {
    try {
      auto result = index_->searchKnn(query, k);
      for (size_t j = result.size(); j < k; ++j) {
        distances[j] = std::numeric_limits<float>::infinity();
        labels[j] = -1;
      }
      // The queue pops farthest first; fill from the back.
      for (size_t j = result.size(); j-- > 0;) {
        distances[j] = result.top().first;
        labels[j] = static_cast<int64_t>(result.top().second);
        result.pop();
      }
    } catch (const std::exception& e) {
      return Status::Internal(std::string("hnswlib searchKnn failed: ") + e.what());
    }
    return Status::OK();
  }

  // Counted as Fathom's memory_bytes() counts (structures, not allocator slack): the level-0
  // block (links + vector + label per slot, allocated for max_elements), upper-level link
  // lists, the per-element pointer/level arrays, the per-element and update mutexes, the
  // label->id hash map (a node per element: next pointer + key/value pair, plus the bucket
  // array), and the visited lists the pool created (2 bytes per element each).
  size_t memory_bytes() const override {
    const auto& h = *index_;
    size_t bytes = h.max_elements_ * h.size_data_per_element_;
    for (size_t i = 0; i < h.cur_element_count; ++i) {
      if (h.element_levels_[i] > 0) bytes += h.size_links_per_element_ * h.element_levels_[i] + 1;
    }
    bytes += h.max_elements_ * (sizeof(char*) + sizeof(int));
    bytes += h.link_list_locks_.size() * sizeof(std::mutex);
    bytes += h.link_list_update_locks_.size() * sizeof(std::mutex);
    bytes += h.label_lookup_.bucket_count() * sizeof(void*) +
             h.label_lookup_.size() *
                 (sizeof(void*) + sizeof(std::pair<const hnswlib::labeltype, hnswlib::tableint>));
    bytes += visited_lists_ * h.max_elements_ * sizeof(hnswlib::vl_type);
    return bytes;
  }

 private:
  std::unique_ptr<hnswlib::SpaceInterface<float>> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
  size_t dim_;
  // The pool keeps one list per thread that ever searched at once (inserts search too);
  // hnswlib does not expose its size, so we count the threads we used (at least the one it
  // preallocates).
  size_t visited_lists_ = 1;
};

}  // namespace

Result<std::unique_ptr<HnswlibRunner>> HnswlibRunner::Create(size_t dim, Space space,
                                                             size_t max_elements, size_t m,
                                                             size_t ef_construction) {
  try {
    return std::unique_ptr<HnswlibRunner>(
        std::make_unique<HnswlibRunnerImpl>(dim, space, max_elements, m, ef_construction));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("hnswlib index creation failed: ") + e.what());
  }
}

std::string HnswlibRunner::KernelDescription() {
#if defined(USE_AVX512)
  return "AVX-512 (USE_AVX512)";
#elif defined(USE_AVX)
  return "AVX (USE_AVX; hnswlib 0.6.2 has no AVX2/FMA path)";
#elif defined(USE_SSE)
  return "SSE (USE_SSE)";
#else
  return "scalar";
#endif
}

}  // namespace fathom::bench
