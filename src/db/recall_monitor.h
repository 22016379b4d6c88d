// Online recall monitoring: a fraction of live searches is re-run exactly on a background
// thread and the share of the exact neighbours the live answer had is kept over a window of
// recent samples. The thread's busy time is held to a CPU share by sleeping between runs;
// samples that arrive while it is busy or asleep wait in a small queue and, when that is full,
// are dropped (counted). So a search pays one atomic increment, plus a copy of its query and
// result ids when sampled; the monitor costs at most `cpu_share` of one core and
// kMaxQueue samples of memory, whatever the query rate.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fathom/database.h"
#include "fathom/status.h"

namespace fathom {

class RecallMonitor {
 public:
  struct Sample {
    std::string vector;          // named vector searched
    std::vector<float> query;    // one query
    size_t k = 0;
    std::string filter;
    std::vector<PointId> found;  // what the live search answered
  };
  // Runs the sample's query exactly (the collection's brute force) and returns the true ids.
  using ExactSearch = std::function<Result<std::vector<PointId>>(const Sample&)>;

  static constexpr size_t kMaxQueue = 64;
  static constexpr size_t kWindow = 2000;  // samples the estimate is over

  // `sample_rate` in [0, 1]: 0 never samples, 1 samples every query (every round(1/rate)-th
  // query is sampled: deterministic, so tests know how many); `cpu_share` in (0, 1].
  RecallMonitor(double sample_rate, double cpu_share, ExactSearch exact);
  ~RecallMonitor();
  RecallMonitor(const RecallMonitor&) = delete;
  RecallMonitor& operator=(const RecallMonitor&) = delete;

  // True when this query should be sampled (one relaxed atomic increment otherwise).
  bool ShouldSample();
  // Queues a sample (starts the thread on first use); dropped when the queue is full or the
  // monitor is stopped.
  void Offer(Sample sample);
  // Stops and joins the thread; later offers are dropped. Idempotent.
  void Stop();
  // Takes samples again after Stop (a collection whose drop failed goes on serving).
  void Resume();
  // The estimate before a restart (kept in the store), shown until live samples replace it.
  void Seed(const RecallEstimate& previous);
  RecallEstimate estimate() const;

 private:
  void Run();

  const uint64_t period_;  // 0: never
  const double cpu_share_;
  const ExactSearch exact_;
  std::atomic<uint64_t> queries_{0};

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Sample> queue_;  // guarded by mutex_
  bool stop_ = false;
  std::thread thread_;
  // The window: found and expected neighbour counts of the last kWindow samples.
  std::deque<std::pair<uint32_t, uint32_t>> window_;
  uint64_t window_found_ = 0, window_total_ = 0;
  uint64_t samples_ = 0, dropped_ = 0;
  RecallEstimate seed_;
};

}  // namespace fathom
