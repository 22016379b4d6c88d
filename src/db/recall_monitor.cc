#include "db/recall_monitor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <utility>

namespace fathom {

namespace {

uint64_t PeriodOf(double rate) {
  if (!(rate > 0)) return 0;
  if (rate >= 1) return 1;
  return std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(1.0 / rate)));
}

}  // namespace

RecallMonitor::RecallMonitor(double sample_rate, double cpu_share, ExactSearch exact)
    : period_(PeriodOf(sample_rate)),
      cpu_share_(std::clamp(cpu_share, 0.001, 1.0)),
      exact_(std::move(exact)) {}

RecallMonitor::~RecallMonitor() { Stop(); }

bool RecallMonitor::ShouldSample() {
  if (period_ == 0) return false;
  return queries_.fetch_add(1, std::memory_order_relaxed) % period_ == 0;
}

void RecallMonitor::Offer(Sample sample) {
  {
    std::lock_guard lock(mutex_);
    if (stop_ || queue_.size() >= kMaxQueue) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(sample));
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  }
  cv_.notify_one();
}

void RecallMonitor::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    queue_.clear();
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

void RecallMonitor::Resume() {
  std::lock_guard lock(mutex_);
  stop_ = false;
}

void RecallMonitor::Seed(const RecallEstimate& previous) {
  std::lock_guard lock(mutex_);
  seed_ = previous;
  seed_.from_store = true;
}

RecallEstimate RecallMonitor::estimate() const {
  std::lock_guard lock(mutex_);
  RecallEstimate e;
  if (window_total_ == 0 && seed_.samples > 0) e = seed_;
  else if (window_total_ > 0) e.recall = static_cast<double>(window_found_) / static_cast<double>(window_total_);
  if (window_total_ > 0) e.samples = window_.size();
  e.total_samples = samples_;
  e.dropped = dropped_;
  return e;
}

void RecallMonitor::Run() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Sample sample = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    const auto start = Clock::now();
    Result<std::vector<PointId>> truth = exact_(sample);
    const auto busy = Clock::now() - start;
    lock.lock();
    // A failed re-run (the collection was dropped, a filter no longer parses) is no recall miss.
    if (truth.ok() && !truth->empty()) {
      std::set<PointId> found(sample.found.begin(), sample.found.end());
      uint32_t hits = 0;
      for (const PointId& id : *truth) hits += found.count(id) != 0 ? 1 : 0;
      window_.emplace_back(hits, static_cast<uint32_t>(truth->size()));
      window_found_ += hits;
      window_total_ += truth->size();
      if (window_.size() > kWindow) {
        window_found_ -= window_.front().first;
        window_total_ -= window_.front().second;
        window_.pop_front();
      }
      ++samples_;
    }
    // Hold the thread to its CPU share: after `busy`, rest busy * (1 - share) / share.
    if (cpu_share_ < 1.0) {
      const auto rest = std::chrono::duration_cast<Clock::duration>(busy * ((1.0 - cpu_share_) / cpu_share_));
      cv_.wait_for(lock, rest, [this] { return stop_; });
      if (stop_) return;
    }
  }
}

}  // namespace fathom
