// The Fathom REST server: one process with the database embedded, speaking a Qdrant-like JSON
// API over HTTP/1.1 (docs/API.md, GET /openapi.json).
//
// RunServer opens the database, listens, and serves until SIGTERM or SIGINT; then it stops
// accepting connections, lets in-flight requests finish, and closes the database (which
// checkpoints every collection). It installs SIGTERM/SIGINT handlers while it runs (restoring the
// previous ones on return), so run one at a time per process.
//
// HTTP library: cpp-httplib (Debian libcpp-httplib-dev), a thread per connection from a fixed
// pool. Chosen over Boost.Beast because a search costs far more than parsing its request, so
// an event loop buys little here, while a blocking handler on a worker thread keeps the code
// plain; the load benchmark (docs/BENCHMARKS.md) checks that the HTTP layer keeps REST search
// throughput close to in-process throughput.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fathom/database.h"
#include "fathom/status.h"

namespace fathom {

namespace server {
class Api;
struct ApiRequest;
struct Reply;
enum class Access;

// A route served by a ServerExtension: in place of the Api's route with the same method and
// path, or beside them.
struct ExtraRoute {
  std::string method;
  std::string path;
  Access access;
  std::function<Reply(const ApiRequest&)> handler;
};

// What `fathom serve --cluster` plugs into the server: its routes, its metrics, and a stop that
// runs before the local database closes. Created once the Api is open.
class ServerExtension {
 public:
  virtual ~ServerExtension() = default;
  virtual std::vector<ExtraRoute> Routes() = 0;
  virtual void RenderMetrics(std::string* out) const = 0;
  virtual void Stop() = 0;
};
}  // namespace server

struct ServerOptions {
  std::string data_dir;              // required: the database directory (created if missing)
  std::string host = "127.0.0.1";    // loopback by default; anything else needs an API key or insecure
  int port = 6333;                   // 0 picks a free port (printed on stdout)
  // Worker threads, each serving one connection at a time. 0 = max(64, 4 x cores): idle
  // keep-alive connections hold a thread, so fewer threads than concurrent clients queues them.
  size_t threads = 0;
  // Searches executing at once (the rest wait in line, holding their connection's thread but no
  // CPU). 0 = one per hardware thread. Keeps upserts from being starved of CPU by many search
  // connections; raise it only if searches block on something other than the CPU.
  size_t max_concurrent_searches = 0;
  // Allow listening on a non-loopback address with no API key configured.
  bool insecure = false;
  size_t max_body_bytes = size_t{64} << 20;  // larger bodies get 413
  size_t max_batch = 10000;                  // points per upsert, ids per get/delete, searches per batch
  size_t max_k = 10000;                      // limit + offset of one search
  size_t max_filter_depth = 32;              // nesting of a JSON filter / parentheses of a text one
  // Limit on reading a request and writing its response (slow clients), and on a batch search,
  // which stops between searches with 408. A single search is not interrupted.
  std::chrono::seconds request_timeout{30};
  // A connection must deliver a request's headers within this long of opening (or of its
  // previous response), and its body within request_timeout of the headers, or it is cut off:
  // clients that trickle bytes cannot hold workers (slowloris).
  std::chrono::seconds header_timeout{10};
  // Open connections one client address may hold; more are answered 503 and closed.
  size_t max_connections_per_client = 256;
  // Threads serving connections at most: `threads` always run, more start while all are busy
  // (so a health check is served while slow clients hold the others) and exit when idle.
  size_t max_threads = 1024;
  // API keys; empty means "read FATHOM_API_KEY / FATHOM_READ_ONLY_API_KEY from the environment".
  // With no key at all, every request is allowed (hence loopback only, unless insecure).
  std::string api_key;
  std::string read_only_api_key;
  DatabaseOptions database;  // durability and checkpoint interval
  // Set by the cluster mode: builds the extension over the open Api (an error stops the server).
  std::function<Result<std::unique_ptr<server::ServerExtension>>(server::Api*)> extension;
};

// Serves until SIGTERM/SIGINT (see above). Returns an error if the database cannot be opened, the
// address cannot be bound, or the options are refused (non-loopback host without a key); OK after
// a clean shutdown. Prints "fathom: listening on http://HOST:PORT" on stdout once accepting.
Status RunServer(const ServerOptions& options);

namespace server {

class Api;

// The HTTP side of RunServer over an Api that the caller owns and keeps open: routing, keys,
// limits, metrics and the worker pool, without opening a database or handling signals. For
// processes that also use the database directly (bench/rest_bench.cc) and for tests.
// Use: Bind, then Listen on one thread (it blocks); Stop from any other thread, any time.
class HttpServer {
 public:
  // Uses options' host, port, threads, limits and keys (from the environment when empty);
  // ignores data_dir and database. `api` must outlive the server; it may be null when the server
  // is only asked for its routes.
  HttpServer(const ServerOptions& options, Api* api, ServerExtension* extension = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds options.host:options.port (0 picks a free port) and returns the port.
  Result<int> Bind();
  // Serves until Stop, letting in-flight requests finish; false if the listener failed.
  bool Listen();
  // Makes /readyz answer 503 and Listen return. Safe before Listen starts (it then returns at once).
  void Stop();
  // Worker threads in the pool.
  size_t threads() const;
  // (method, template) of every route the server answers, e.g. ("GET", "/collections/{name}").
  std::vector<std::pair<std::string, std::string>> Routes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace server

}  // namespace fathom
