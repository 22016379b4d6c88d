// Defences of the HTTP front against clients that hold connections without sending requests
// (slowloris), that open too many connections, and against starvation of the worker pool.
//
// cpp-httplib serves each connection on a pool thread and offers no hook between accept() and
// the end of a request's headers. ConnectionWatch therefore finds the server's connections
// itself: every `interval` it lists the process's sockets whose local port is the server's, and
// learns from the request handlers (Enter/Leave, keyed by the peer's address and port) which
// connections are inside a request. A connection that has not delivered a request's headers
// within `header_timeout` of opening (or of its previous response), that is still sending its
// body `body_timeout` after its headers, or that exceeds its address's connection allowance, is
// shut down (on a dup of its descriptor, checked to still name the same peer, so a descriptor
// reused meanwhile is never touched). ElasticPool gives each connection a thread at once, growing
// past its core size while every thread is busy, so a health check never queues behind them.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <httplib.h>

namespace fathom::server {

struct ConnectionLimits {
  std::chrono::steady_clock::duration header_timeout = std::chrono::seconds(10);
  std::chrono::steady_clock::duration body_timeout = std::chrono::seconds(30);
  size_t max_per_client = 256;
  std::chrono::steady_clock::duration interval = std::chrono::milliseconds(250);
};

class ConnectionWatch {
 public:
  explicit ConnectionWatch(ConnectionLimits limits);
  ~ConnectionWatch();
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  // Starts watching connections accepted on `port` (call once the port is known).
  void Start(int port);
  void Stop();

  enum class Phase { kBody, kHandling };
  // The request from `addr`:`port` has its headers and is now in `phase`.
  void Enter(const std::string& addr, int port, Phase phase);
  // Its response is done: the connection may wait for its next request (a header deadline).
  void Leave(const std::string& addr, int port);

  // Sends `response` (a whole HTTP response) on the connection of `addr`:`port` and shuts it
  // down: for a request refused before its body, whose unread body httplib 0.11 would
  // otherwise read as the next request line, without bound. Finds the descriptor with a scan of
  // the process's sockets; false if it is gone.
  bool RespondAndClose(const std::string& addr, int port, const std::string& response);

  // Connections cut off so far, by reason (for /metrics).
  uint64_t header_timeouts() const { return header_timeouts_.load(); }
  uint64_t body_timeouts() const { return body_timeouts_.load(); }
  uint64_t over_limit() const { return over_limit_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Activity {
    bool in_request = false;
    Phase phase = Phase::kHandling;
    Clock::time_point since;
  };
  struct Seen {
    std::string peer;
    Clock::time_point first_seen;
  };
  void Run();
  void Scan();

  const ConnectionLimits limits_;
  int port_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::unordered_map<std::string, Activity> activity_;  // peer -> what its connection is doing
  std::unordered_map<int, Seen> seen_;                  // descriptor -> connection seen there
  std::thread thread_;
  std::atomic<uint64_t> header_timeouts_{0};
  std::atomic<uint64_t> body_timeouts_{0};
  std::atomic<uint64_t> over_limit_{0};
};

// httplib 0.11 listens with a backlog of 5: a burst of connections overflows it and each
// dropped SYN costs the client a 1 s retransmit. Calling listen() again on the bound socket
// (found by its port) widens the queue. Returns whether it was found.
bool WidenListenBacklog(int port, int backlog);

// A TaskQueue for httplib: `core` threads always, more (up to `max`) while all are busy; the
// extra ones exit after idling 10 s.
class ElasticPool final : public httplib::TaskQueue {
 public:
  ElasticPool(size_t core, size_t max);
  ~ElasticPool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  void Spawn();  // mutex_ held
  void Run(std::list<std::thread>::iterator self);

  const size_t core_;
  const size_t max_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  std::list<std::thread> threads_;
  std::vector<std::list<std::thread>::iterator> finished_;
  size_t running_ = 0;
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace fathom::server
