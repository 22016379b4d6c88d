#include "server/search_slots.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace fathom::server {
namespace {

using std::chrono::milliseconds;

TEST(SearchSlotsTest, NeverAdmitsMoreThanItsSlots) {
  SearchSlots slots(3, milliseconds(1));
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        SearchSlot slot(&slots);
        int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
}

// Two releases in a row with two sleepers: both must get in (no lost wake-up).
TEST(SearchSlotsTest, EverySleeperGetsAFreedSlot) {
  SearchSlots slots(2);
  slots.Acquire();
  slots.Acquire();
  std::atomic<int> entered{0};
  std::thread a([&] { SearchSlot s(&slots); ++entered; });
  std::thread b([&] { SearchSlot s(&slots); ++entered; });
  // Whenever the sleepers get this far, neither may be inside while both slots are held.
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(entered.load(), 0);
  slots.Release();
  slots.Release();
  a.join();
  b.join();
  EXPECT_EQ(entered.load(), 2);
}

// A waiter overtaken for longer than the bound is served before newcomers: with two threads
// barging for the slot without pause, the waiter still gets in (without the bound it could wait
// forever, and the test's ctest TIMEOUT would fail it). No wall-clock assertion.
TEST(SearchSlotsTest, BoundsHowLongAWaiterIsOvertaken) {
  SearchSlots slots(1, milliseconds(20));
  std::atomic<bool> stop{false};
  // Two threads taking and releasing the slot back to back, as barging newcomers would.
  std::vector<std::thread> hogs;
  for (int t = 0; t < 2; ++t) {
    hogs.emplace_back([&] {
      while (!stop) {
        SearchSlot s(&slots);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(10));
  bool served = false;
  {
    SearchSlot s(&slots);
    served = !stop.load();  // got the slot while the hogs were still barging
  }
  stop = true;
  for (auto& t : hogs) t.join();
  EXPECT_TRUE(served);
}

}  // namespace
}  // namespace fathom::server
