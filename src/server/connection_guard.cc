#include "server/connection_guard.h"

#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

namespace fathom::server {
namespace {

// "ADDR|PORT" as httplib reports a request's peer (numeric host, as getnameinfo writes it).
std::string PeerKey(const std::string& addr, int port) { return addr + "|" + std::to_string(port); }

bool SockaddrKey(const sockaddr_storage& sa, socklen_t len, std::string* addr, int* port) {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&sa), len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  *addr = host;
  *port = std::atoi(serv);
  return true;
}

// The peer of a connected TCP socket whose local port is `local_port`, or "" for anything else.
std::string ConnectionPeer(int fd, int local_port) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return "";
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  std::string addr;
  int port = 0;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || !SockaddrKey(sa, len, &addr, &port) ||
      port != local_port) {
    return "";
  }
  len = sizeof sa;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || !SockaddrKey(sa, len, &addr, &port)) {
    return "";  // the listening socket, or a connection already gone
  }
  return PeerKey(addr, port);
}

// Calls fn(fd) for every open descriptor of this process until fn returns false.
template <class Fn>
void ForEachDescriptor(Fn&& fn) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd == dirfd(dir)) continue;
    if (!fn(fd)) break;
  }
  closedir(dir);
}

}  // namespace

bool WidenListenBacklog(int port, int backlog) {
  bool done = false;
  ForEachDescriptor([&](int fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) return true;
    sockaddr_storage sa{};
    socklen_t sa_len = sizeof sa;
    std::string addr;
    int local_port = 0;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sa_len) == 0 && SockaddrKey(sa, sa_len, &addr, &local_port) &&
        local_port == port) {
      done = ::listen(fd, backlog) == 0;
    }
    return !done;
  });
  return done;
}

ConnectionWatch::ConnectionWatch(ConnectionLimits limits) : limits_(limits) {}

ConnectionWatch::~ConnectionWatch() { Stop(); }

void ConnectionWatch::Start(int port) {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  port_ = port;
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
}

void ConnectionWatch::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionWatch::Enter(const std::string& addr, int port, Phase phase) {
  std::lock_guard lock(mutex_);
  Activity& a = activity_[PeerKey(addr, port)];
  a.in_request = true;
  a.phase = phase;
  a.since = Clock::now();
}

void ConnectionWatch::Leave(const std::string& addr, int port) {
  std::lock_guard lock(mutex_);
  Activity& a = activity_[PeerKey(addr, port)];
  a.in_request = false;
  a.since = Clock::now();
}

bool ConnectionWatch::RespondAndClose(const std::string& addr, int port, const std::string& response) {
  const std::string peer = PeerKey(addr, port);
  bool done = false;
  ForEachDescriptor([&](int fd) {
    const int handle = dup(fd);
    if (handle < 0) return true;
    if (ConnectionPeer(handle, port_) == peer) {
      size_t sent = 0;
      while (sent < response.size()) {
        ssize_t n = send(handle, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += size_t(n);
      }
      shutdown(handle, SHUT_RDWR);
      done = true;
    }
    close(handle);
    return !done;
  });
  return done;
}

void ConnectionWatch::Run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, limits_.interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    Scan();
    lock.lock();
  }
}

void ConnectionWatch::Scan() {
  const auto now = Clock::now();
  // The server's connections, by descriptor. Each descriptor is examined through a dup of it,
  // so that what is checked and what is shut down are the same socket.
  std::unordered_map<int, Seen> current;
  ForEachDescriptor([&](int fd) {
    const int probe = dup(fd);
    if (probe < 0) return true;
    std::string peer = ConnectionPeer(probe, port_);
    close(probe);
    if (peer.empty()) return true;
    auto it = seen_.find(fd);
    current[fd] = Seen{peer, it != seen_.end() && it->second.peer == peer ? it->second.first_seen : now};
    return true;
  });
  seen_ = std::move(current);

  struct Candidate {
    int fd;
    std::string peer;
    Clock::time_point opened;
    bool idle;  // between requests or before the first one's headers
  };
  std::vector<std::pair<Candidate, int>> cut;  // with reason: 0 header, 1 body, 2 over limit
  std::unordered_map<std::string, std::vector<Candidate>> by_addr;
  {
    std::lock_guard lock(mutex_);
    std::unordered_map<std::string, Activity> live;
    for (const auto& [fd, seen] : seen_) {
      Candidate c{fd, seen.peer, seen.first_seen, true};
      auto it = activity_.find(seen.peer);
      if (it != activity_.end()) live.emplace(it->first, it->second);
      Clock::time_point start = seen.first_seen;
      Clock::duration limit = limits_.header_timeout;
      int reason = 0;
      if (it != activity_.end() && it->second.in_request) {
        c.idle = false;
        if (it->second.phase == Phase::kHandling) {
          limit = Clock::duration::max();
        } else {
          start = it->second.since;
          limit = limits_.body_timeout;
          reason = 1;
        }
      } else if (it != activity_.end()) {
        start = std::max(start, it->second.since);
      }
      if (limit != Clock::duration::max() && now - start > limit) {
        cut.emplace_back(c, reason);
        continue;
      }
      by_addr[seen.peer.substr(0, seen.peer.rfind('|'))].push_back(c);
    }
    activity_ = std::move(live);  // forget connections that are gone
  }
  for (auto& [addr, conns] : by_addr) {
    if (conns.size() <= limits_.max_per_client) continue;
    // Over the allowance: the newest connections that are not inside a request go first.
    // (Connections first seen in the same scan: the higher descriptor was accepted later.)
    std::sort(conns.begin(), conns.end(), [](const Candidate& a, const Candidate& b) {
      if (a.idle != b.idle) return a.idle;
      if (a.opened != b.opened) return a.opened > b.opened;
      return a.fd > b.fd;
    });
    size_t excess = conns.size() - limits_.max_per_client;
    for (size_t i = 0; i < conns.size() && excess > 0 && conns[i].idle; ++i, --excess) {
      cut.emplace_back(conns[i], 2);
    }
  }
  for (const auto& [c, reason] : cut) {
    const int handle = dup(c.fd);
    if (handle < 0) continue;
    if (ConnectionPeer(handle, port_) == c.peer) {
      shutdown(handle, SHUT_RDWR);
      (reason == 0 ? header_timeouts_ : reason == 1 ? body_timeouts_ : over_limit_)++;
      spdlog::warn("closed the connection from {}: {}", c.peer.substr(0, c.peer.rfind('|')),
                   reason == 0   ? "no complete request headers within the header timeout"
                   : reason == 1 ? "request body not received within the request timeout"
                                 : "too many connections from this address");
    }
    close(handle);
  }
}

ElasticPool::ElasticPool(size_t core, size_t max) : core_(std::max<size_t>(1, core)), max_(std::max(core_, max)) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < core_; ++i) Spawn();
}

ElasticPool::~ElasticPool() { shutdown(); }

void ElasticPool::Spawn() {
  for (auto it : finished_) {
    it->join();
    threads_.erase(it);
  }
  finished_.clear();
  ++running_;
  auto it = threads_.emplace(threads_.end());
  *it = std::thread([this, it] { Run(it); });
}

void ElasticPool::enqueue(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  jobs_.push_back(std::move(fn));
  if (jobs_.size() > idle_ && running_ < max_) Spawn();
  wake_.notify_one();
}

void ElasticPool::shutdown() {
  std::list<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  // Threads exit once the queue is empty; join them outside the lock.
  while (true) {
    {
      std::lock_guard lock(mutex_);
      threads.splice(threads.end(), threads_);
      finished_.clear();
    }
    if (threads.empty()) break;
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
  }
}

void ElasticPool::Run(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mutex_);
  while (true) {
    if (!jobs_.empty()) {
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
      continue;
    }
    if (stopping_) break;
    ++idle_;
    bool woken = wake_.wait_for(lock, std::chrono::seconds(10), [this] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (!woken && running_ > core_) {
      --running_;
      if (!stopping_) finished_.push_back(self);
      return;
    }
  }
  --running_;
}

}  // namespace fathom::server
