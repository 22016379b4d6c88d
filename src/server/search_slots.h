// SearchSlots: a counting semaphore for CPU-bound requests that keeps the cores busy and still
// bounds how long a waiter can be overtaken.
//
// A free slot goes to whichever thread asks first, running or sleeping ("barging"), and a
// release wakes one sleeper to compete for it. Strict FIFO handoff was measured and rejected:
// under load every request then sleeps and the slot idles until the scheduler runs its new
// owner, which cost a third of search throughput on 2 cores (docs/BENCHMARKS.md, section 3).
// Plain barging lets an unlucky waiter lose for hundreds of milliseconds, so once the oldest
// waiter has waited `max_overtaken`, slots are handed to waiters in arrival order until it is
// served. (libstdc++'s std::counting_semaphore, which barges with no bound, measured no better.)
// Safe from any number of threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace fathom::server {

class SearchSlots {
 public:
  using Clock = std::chrono::steady_clock;

  explicit SearchSlots(size_t slots, Clock::duration max_overtaken = std::chrono::milliseconds(50))
      : free_(slots), max_overtaken_(max_overtaken) {}
  SearchSlots(const SearchSlots&) = delete;
  SearchSlots& operator=(const SearchSlots&) = delete;

  void Acquire() {
    std::unique_lock lock(mutex_);
    if (free_ > 0 && !Starving(Clock::now())) {
      --free_;
      return;
    }
    Waiter self(Clock::now());
    waiters_.push_back(&self);
    for (;;) {
      self.wake.wait(lock);
      if (self.granted) return;  // handed over by Release: free_ was not incremented
      if (free_ > 0 && (waiters_.front() == &self || !Starving(Clock::now()))) {
        --free_;
        waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &self));
        // Two releases may have woken only this waiter: pass the other slot on.
        if (free_ > 0 && !waiters_.empty()) waiters_.front()->wake.notify_one();
        return;
      }
    }
  }

  void Release() {
    std::lock_guard lock(mutex_);
    if (Starving(Clock::now())) {
      Waiter* oldest = waiters_.front();
      waiters_.pop_front();
      oldest->granted = true;
      oldest->wake.notify_one();  // under the lock: `oldest` cannot return and vanish before this
      return;
    }
    ++free_;
    if (!waiters_.empty()) waiters_.front()->wake.notify_one();
  }

 private:
  struct Waiter {
    explicit Waiter(Clock::time_point t) : since(t) {}
    Clock::time_point since;
    std::condition_variable wake;
    bool granted = false;
  };

  bool Starving(Clock::time_point now) const {
    return !waiters_.empty() && now - waiters_.front()->since > max_overtaken_;
  }

  std::mutex mutex_;
  size_t free_;
  const Clock::duration max_overtaken_;
  std::deque<Waiter*> waiters_;  // sleeping, oldest first
};

// Holds one slot for its scope.
class SearchSlot {
 public:
  explicit SearchSlot(SearchSlots* slots) : slots_(slots) { slots_->Acquire(); }
  ~SearchSlot() { slots_->Release(); }
  SearchSlot(const SearchSlot&) = delete;
  SearchSlot& operator=(const SearchSlot&) = delete;

 private:
  SearchSlots* slots_;
};

}  // namespace fathom::server
