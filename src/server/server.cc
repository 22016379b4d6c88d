#include "server/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "server/api.h"
#include "server/auth.h"
#include "server/connection_guard.h"
#include "server/console.h"
#include "server/json_util.h"
#include "server/metrics.h"
#include "server/openapi.h"
#include "server/router.h"

#ifndef FATHOM_VERSION
#define FATHOM_VERSION "unknown"
#endif

namespace fathom {
namespace server {
namespace {

using Clock = std::chrono::steady_clock;
using Handler = std::function<Reply(const ApiRequest&)>;

constexpr const char* kUnmatchedRoute = "(unmatched)";
// The Qdrant REST API level answered in GET / (see AddRoutes).
constexpr const char* kQdrantApiVersion = "1.18.0";

std::string Envelope(const Reply& reply, double seconds) {
  std::string body;
  body.reserve(reply.result.size() + 64);
  if (reply.ok()) {
    body += "{\"result\":";
    body += reply.result.empty() ? "null" : reply.result;
    body += ",\"status\":\"ok\",\"time\":";
  } else {
    body += "{\"result\":null,\"status\":{\"error\":";
    body += Dump(Json(reply.error));
    body += "},\"time\":";
  }
  AppendNumber(&body, seconds);
  body += "}";
  return body;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    default: return "Error";
  }
}

const char* DefaultMessage(int status) {
  switch (status) {
    case 400: return "malformed HTTP request";
    case 404: return "no such endpoint";
    case 405: return "method not allowed";
    case 408: return "the request was not received in time";
    case 413: return "request body is too large";
    case 414: return "request URI is too long";
    case 416: return "range not satisfiable";
    case 431: return "request headers are too large";
    default: return status >= 500 ? "internal server error" : "bad request";
  }
}

// The HTTP front: routes a request, checks its key, runs its handler, wraps the answer in the
// {"result", "status", "time"} envelope and records metrics.
bool IsLoopback(const std::string& host);

// "host" or "host:port" or "[v6]:port" -> host (brackets kept for v6).
std::string HostOnly(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return std::string(authority.substr(0, close == std::string_view::npos ? authority.size() : close + 1));
  }
  size_t colon = authority.find(':');
  return std::string(authority.substr(0, colon));
}

class Frontend {
 public:
  Frontend(const ServerOptions& options, ApiKeys keys, Api* api, ConnectionWatch* watch,
           ServerExtension* extension)
      : options_(options), keys_(std::move(keys)), api_(api), watch_(watch), extension_(extension) {
    if (extension_ != nullptr) extra_ = extension_->Routes();
    AddRoutes();
    // The extension's routes that replace none of the Api's.
    for (ExtraRoute& r : extra_) {
      if (r.handler) Add(r.method.c_str(), r.path.c_str(), r.access, std::move(r.handler));
    }
  }

  // Keyless servers are reachable by any web page the user opens (a cross-site POST, or DNS
  // rebinding a hostile name to 127.0.0.1): they accept bodies only as application/json (which
  // a page cannot send cross-site without a CORS preflight, which is never granted), and refuse
  // foreign Origin and, when listening on loopback, non-loopback Host headers. Returns the error
  // reply, or OK.
  Reply CheckBrowserOrigin(const httplib::Request& req) const {
    if (keys_.enabled()) return Reply(Status::OK());
    const std::string host = req.get_header_value("Host");
    if (IsLoopback(options_.host) && !host.empty() && !IsLoopback(HostOnly(host))) {
      return Reply::Error(403, "Host '" + host + "' is not a loopback name: a server without an API key " +
                                   "answers only requests addressed to localhost (DNS rebinding protection)");
    }
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty() && origin != "null") {
      size_t scheme = origin.find("://");
      std::string origin_host = scheme == std::string::npos ? origin : origin.substr(scheme + 3);
      if (HostOnly(origin_host) != HostOnly(host) && !IsLoopback(HostOnly(origin_host))) {
        return Reply::Error(403, "requests from web pages of origin '" + origin + "' are refused: the " +
                                     "server has no API key (set FATHOM_API_KEY to allow other origins)");
      }
    } else if (origin == "null") {
      return Reply::Error(403, "requests from web pages of an opaque origin are refused: the server has no "
                               "API key");
    }
    const bool has_body = (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0") ||
                          req.has_header("Transfer-Encoding");
    if (has_body) {
      std::string type = req.get_header_value("Content-Type");
      type = type.substr(0, type.find(';'));
      while (!type.empty() && type.back() == ' ') type.pop_back();
      for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (type != "application/json") {
        return Reply::Error(415, "request bodies must be sent with 'Content-Type: application/json'" +
                                     std::string(type.empty() ? "" : ", got '" + type + "'") +
                                     " (required when the server has no API key, so web pages cannot "
                                     "post to it)");
      }
    }
    return Reply(Status::OK());
  }

  // Whether the request will be refused whatever its body says (no route, no or wrong key,
  // refused origin or content type): such a body is never read.
  bool RefusedBeforeBody(const httplib::Request& req) const {
    RouteMatch match = router_.Match(req.method, req.path);
    if (match.route == nullptr) return true;
    if (Authorize(keys_, req.get_header_value("api-key"), req.get_header_value("Authorization"),
                  match.route->access)
            .status != 0) {
      return true;
    }
    return !CheckBrowserOrigin(req).ok();
  }

  // `body_error` is 0, or 413 / 400 when the body was too large or could not be read (the client
  // is asked to close the connection, which may be out of step), or 415 for a multipart body.
  void Handle(const httplib::Request& req, httplib::Response& res, std::string_view body,
              int body_error) {
    const auto start = Clock::now();
    if (watch_ != nullptr) watch_->Enter(req.remote_addr, req.remote_port, ConnectionWatch::Phase::kHandling);
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    RouteMatch match = router_.Match(req.method, req.path);
    std::string_view route = match.route != nullptr ? std::string_view(match.route->path)
                                                    : std::string_view(kUnmatchedRoute);
    Reply reply(Status::OK());
    if (body_error == 415) {
      reply = Reply::Error(415, "multipart bodies are not supported: send JSON");
    } else if (body_error != 0) {
      reply = Reply::Error(body_error, body_error == 413
                                           ? "request body is larger than the limit of " +
                                                 std::to_string(options_.max_body_bytes) + " bytes"
                                           : std::string("request body is truncated or malformed, or did not arrive "
                                                         "within the request timeout"));
      res.set_header("Connection", "close");
    } else if (match.route == nullptr) {
      reply = Reply::Error(match.error_status, match.error);
      if (match.error_status == 405) res.set_header("Allow", match.allow);
    } else if (Reply refused = CheckBrowserOrigin(req); !refused.ok()) {
      reply = std::move(refused);
    } else if (AuthResult auth = Authorize(keys_, req.get_header_value("api-key"),
                                           req.get_header_value("Authorization"), match.route->access);
               auth.status != 0) {
      reply = Reply::Error(auth.status, auth.message + " (" + req.method + " " + match.route->path + ")");
      if (auth.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    } else {
      ApiRequest api_request;
      api_request.body = body;
      api_request.read_only_key = auth.read_only;
      api_request.params = std::move(match.params);
      for (const auto& [key, value] : req.params) api_request.query.emplace_back(key, value);
      api_request.deadline = start + options_.request_timeout;
      try {
        reply = handlers_[match.route->id](api_request);
      } catch (const std::exception& e) {
        // Handlers report failures as Status; an exception here is a bug, and still only
        // this request's problem.
        reply = Reply::Error(500, std::string("internal error: ") + e.what());
      } catch (...) {
        reply = Reply::Error(500, "internal error");
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    res.status = reply.http_status;
    for (const auto& [name, value] : reply.headers) res.set_header(name, value);
    const int file = reply.ok() && !reply.file.empty() ? ::open(reply.file.c_str(), O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (file >= 0 && ::fstat(file, &st) == 0) {
      // A download: streamed a megabyte at a time (the file can be gigabytes), closed when the
      // response is done or the client goes away.
      res.set_content_provider(
          size_t(st.st_size), reply.content_type,
          [file](size_t offset, size_t length, httplib::DataSink& sink) {
            std::vector<char> buffer(std::min<size_t>(length, size_t{1} << 20));
            const ssize_t n = ::pread(file, buffer.data(), buffer.size(), off_t(offset));
            if (n <= 0) return false;
            return sink.write(buffer.data(), size_t(n));
          },
          [file](bool) { ::close(file); });
    } else if (!reply.file.empty() && reply.ok()) {
      if (file >= 0) ::close(file);
      res.status = 500;
      res.headers.erase("Content-Disposition");
      reply = Reply::Error(500, "cannot read the file to send");
      res.set_content(Envelope(reply, seconds), "application/json");
    } else if (!reply.content_type.empty()) {
      res.set_content(std::move(reply.result), reply.content_type.c_str());
    } else {
      res.set_content(Envelope(reply, seconds), "application/json");
    }
    metrics_.Record(route, req.method, reply.http_status, seconds);
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (watch_ != nullptr) watch_->Leave(req.remote_addr, req.remote_port);
    if (reply.http_status >= 500) {
      spdlog::error("{} {} -> {}: {}", req.method, req.path, reply.http_status, reply.error);
    } else {
      spdlog::debug("{} {} -> {} in {:.3f} ms{}{}", req.method, req.path, reply.http_status,
                    seconds * 1e3, reply.ok() ? "" : ": ", reply.error);
    }
  }

  // Errors the HTTP library answers before any handler runs (413, malformed requests): give
  // them the same JSON envelope. Responses from Handle already have a body and pass through.
  httplib::Server::HandlerResponse HandleLibraryError(const httplib::Request& req,
                                                      httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = DefaultMessage(res.status);
    if (res.status == 400 && (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") &&
        !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      message = "a " + req.method + " request needs a Content-Length header (Content-Length: 0 " +
                "when there is no body)";
    } else if (res.status == 413) {
      message = "request body is larger than the limit of " + std::to_string(options_.max_body_bytes) +
                " bytes";
    }
    res.set_content(Envelope(Reply::Error(res.status, message), 0), "application/json");
    metrics_.Record(kUnmatchedRoute, req.method.empty() ? "-" : req.method, res.status, 0);
    spdlog::debug("{} {} -> {}: {}", req.method, req.path, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }

  void set_stopping() { stopping_ = true; }

  std::vector<std::pair<std::string, std::string>> Routes() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const Route& r : router_.routes()) out.emplace_back(r.method, r.path);
    return out;
  }

 private:
  void Add(const char* method, const char* path, Access access, Handler handler) {
    for (ExtraRoute& r : extra_) {
      if (r.handler && r.method == method && r.path == path) {
        access = r.access;
        handler = std::move(r.handler);
        r.handler = nullptr;
      }
    }
    router_.Add(method, path, access, static_cast<int>(handlers_.size()));
    handlers_.push_back(std::move(handler));
  }

  void AddRoutes() {
    auto api = [this](Reply (Api::*fn)(const ApiRequest&)) {
      return [this, fn](const ApiRequest& r) { return (api_->*fn)(r); };
    };
    // As Qdrant answers it (a bare object, no envelope): its clients compare `version` with
    // their own and warn when the major differs or the minor is more than one apart, so it
    // names the Qdrant REST API level Fathom is tested against (tests/qdrant-js pins the
    // client); fathom_version is this server's own.
    Add("GET", "/", Access::kPublic, [](const ApiRequest&) {
      Reply r = Reply::Ok(Dump(Json{{"title", "fathom"}, {"version", kQdrantApiVersion},
                                    {"fathom_version", FATHOM_VERSION}}));
      r.content_type = "application/json";
      return r;
    });
    Add("GET", "/healthz", Access::kPublic,
        [](const ApiRequest&) { return Reply::Ok("{\"status\":\"healthy\"}"); });
    Add("GET", "/readyz", Access::kPublic, [this](const ApiRequest&) {
      if (stopping_ || !api_->ready()) return Reply::Error(503, "not ready: the server is shutting down");
      return Reply::Ok("{\"status\":\"ready\"}");
    });
    Add("GET", "/metrics", Access::kRead, [this](const ApiRequest&) { return Metrics(); });
    Add("GET", "/openapi.json", Access::kRead, [](const ApiRequest&) {
      Reply r = Reply::Ok(OpenApiJson());
      r.content_type = "application/json";
      return r;
    });
    // What the presented key may do, so a client (the web console) can hide what it may not.
    Add("GET", "/access", Access::kRead, [this](const ApiRequest& r) {
      return Reply::Ok(Dump(Json{{"access", r.read_only_key ? "read_only" : "read_write"},
                                 {"api_key_required", keys_.enabled()}}));
    });
    // The web console: static files compiled into the binary (console/, src/server/console.h).
    // Public, as a page must load before it can ask for a key; every call it makes is an API
    // call with the key the user gives it.
    Add("GET", "/console", Access::kPublic,
        [](const ApiRequest&) { return ConsoleFile("index.html"); });
    Add("GET", "/console/{file}", Access::kPublic,
        [](const ApiRequest& r) { return ConsoleFile(r.params[0]); });
    Add("GET", "/collections", Access::kRead, api(&Api::ListCollections));
    Add("POST", "/collections/aliases", Access::kWrite, api(&Api::UpdateAliases));
    Add("GET", "/aliases", Access::kRead, api(&Api::ListAliases));
    Add("GET", "/collections/{name}/aliases", Access::kRead, api(&Api::ListCollectionAliases));
    Add("GET", "/collections/{name}", Access::kRead, api(&Api::GetCollection));
    Add("PUT", "/collections/{name}", Access::kWrite, api(&Api::CreateCollection));
    Add("DELETE", "/collections/{name}", Access::kWrite, api(&Api::DeleteCollection));
    Add("PATCH", "/collections/{name}", Access::kWrite, api(&Api::UpdateCollection));
    Add("PUT", "/collections/{name}/index", Access::kWrite, api(&Api::CreateFieldIndex));
    Add("DELETE", "/collections/{name}/index/{field}", Access::kWrite, api(&Api::DeleteFieldIndex));
    Add("GET", "/collections/{name}/exists", Access::kRead, api(&Api::CollectionExists));
    Add("PUT", "/collections/{name}/points", Access::kWrite, api(&Api::UpsertPoints));
    Add("POST", "/collections/{name}/points", Access::kRead, api(&Api::GetPoints));
    Add("POST", "/collections/{name}/points/delete", Access::kWrite, api(&Api::DeletePoints));
    Add("POST", "/collections/{name}/points/payload", Access::kWrite, api(&Api::SetPayload));
    Add("PUT", "/collections/{name}/points/payload", Access::kWrite, api(&Api::OverwritePayload));
    Add("POST", "/collections/{name}/points/payload/delete", Access::kWrite, api(&Api::DeletePayload));
    Add("POST", "/collections/{name}/points/payload/clear", Access::kWrite, api(&Api::ClearPayload));
    Add("POST", "/collections/{name}/points/count", Access::kRead, api(&Api::CountPoints));
    Add("POST", "/collections/{name}/points/scroll", Access::kRead, api(&Api::ScrollPoints));
    Add("POST", "/collections/{name}/points/recommend", Access::kRead, api(&Api::Recommend));
    Add("POST", "/collections/{name}/points/query", Access::kRead, api(&Api::Query));
    Add("POST", "/collections/{name}/points/query/batch", Access::kRead, api(&Api::QueryBatch));
    Add("POST", "/collections/{name}/points/recommend/batch", Access::kRead, api(&Api::RecommendBatch));
    Add("POST", "/collections/{name}/points/search", Access::kRead, api(&Api::Search));
    Add("POST", "/collections/{name}/points/search/batch", Access::kRead, api(&Api::SearchBatch));
    Add("GET", "/collections/{name}/points/{id}", Access::kRead, api(&Api::GetPoint));
    Add("GET", "/collections/{name}/snapshots", Access::kRead, api(&Api::ListSnapshots));
    Add("POST", "/collections/{name}/snapshots", Access::kWrite, api(&Api::CreateSnapshot));
    Add("POST", "/collections/{name}/tune", Access::kWrite, api(&Api::Tune));
    Add("DELETE", "/collections/{name}/tune", Access::kWrite, api(&Api::ResetTune));
    Add("PUT", "/collections/{name}/snapshots/recover", Access::kWrite, api(&Api::RecoverSnapshot));
    Add("DELETE", "/collections/{name}/snapshots/{snapshot}", Access::kWrite, api(&Api::DeleteSnapshot));
    Add("GET", "/collections/{name}/snapshots/{snapshot}", Access::kRead, api(&Api::DownloadSnapshot));
  }

  // The process's resident pages (the second field of /proc/self/statm), or -1.
  static long ResidentPages() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1;
    long size = 0, resident = -1;
    if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    std::fclose(f);
    return resident;
  }

  static Reply ConsoleFile(std::string_view name) {
    const ConsoleAsset* asset = FindConsoleAsset(name);
    if (asset == nullptr) return Reply::Error(404, "the console has no file '" + std::string(name) + "'");
    Reply r = Reply::Ok(std::string(asset->body));
    r.content_type = std::string(asset->content_type);
    // Served from the binary, so a new build is a new console: revalidate rather than cache.
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("X-Frame-Options", "DENY");
    // Scripts and styles only from this server; calls only to this server; images also from
    // data: URLs and http(s) (a payload field may name an image by URL).
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: "
                           "http: https:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'none'");
    return r;
  }

  Reply Metrics() {
    std::string out;
    metrics_.Render(&out);
    out += "# HELP fathom_http_requests_in_flight Requests being handled now.\n";
    out += "# TYPE fathom_http_requests_in_flight gauge\n";
    out += "fathom_http_requests_in_flight " + std::to_string(in_flight_.load()) + "\n";
    if (watch_ != nullptr) {
      out += "# HELP fathom_http_connections_closed_total Connections the server cut off, by reason.\n";
      out += "# TYPE fathom_http_connections_closed_total counter\n";
      out += "fathom_http_connections_closed_total{reason=\"header_timeout\"} " +
             std::to_string(watch_->header_timeouts()) + "\n";
      out += "fathom_http_connections_closed_total{reason=\"body_timeout\"} " +
             std::to_string(watch_->body_timeouts()) + "\n";
      out += "fathom_http_connections_closed_total{reason=\"over_client_limit\"} " +
             std::to_string(watch_->over_limit()) + "\n";
    }
    out += "# HELP fathom_uptime_seconds Seconds since the server started.\n";
    out += "# TYPE fathom_uptime_seconds gauge\n";
    out += "fathom_uptime_seconds ";
    AppendNumber(&out, std::chrono::duration<double>(Clock::now() - started_).count());
    out += "\n";
    if (long pages = ResidentPages(); pages >= 0) {
      out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n";
      out += "# TYPE process_resident_memory_bytes gauge\n";
      out += "process_resident_memory_bytes " + std::to_string(pages * sysconf(_SC_PAGESIZE)) + "\n";
    }
    api_->RenderMetrics(&out);
    if (extension_ != nullptr) extension_->RenderMetrics(&out);
    Reply r = Reply::Ok(std::move(out));
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }

  const ServerOptions& options_;
  const ApiKeys keys_;
  Api* const api_;
  ConnectionWatch* const watch_;
  ServerExtension* const extension_;
  std::vector<ExtraRoute> extra_;
  Router router_;
  std::vector<Handler> handlers_;
  HttpMetrics metrics_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  const Clock::time_point started_ = Clock::now();
};

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::string EnvOr(const std::string& value, const char* name) {
  if (!value.empty()) return value;
  const char* env = std::getenv(name);
  return env != nullptr ? env : "";
}

// SIGTERM/SIGINT: a handler that only writes the signal number to a pipe (all it may safely do),
// and a thread that reads it and stops the listener. A handler rather than a blocked mask because
// threads started before RunServer (OpenBLAS starts its pool when the library loads) would still
// receive the signal and take its default action, killing the process mid-request.
int g_signal_pipe[2] = {-1, -1};

extern "C" void OnTerminationSignal(int sig) {
  const int saved_errno = errno;
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t written = write(g_signal_pipe[1], &c, 1);
  errno = saved_errno;
}

class SignalWatcher {
 public:
  explicit SignalWatcher(HttpServer* server) : server_(server) {
    if (pipe(g_signal_pipe) != 0) {
      spdlog::error("cannot create the signal pipe: {}; SIGTERM will not shut down cleanly",
                    std::strerror(errno));
      return;
    }
    fcntl(g_signal_pipe[1], F_SETFL, fcntl(g_signal_pipe[1], F_GETFL) | O_NONBLOCK);
    struct sigaction action {};
    action.sa_handler = OnTerminationSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, &old_term_);
    sigaction(SIGINT, &action, &old_int_);
    installed_ = true;
    thread_ = std::thread([this] { Run(); });
  }
  ~SignalWatcher() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    if (!installed_) return;
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  }

 private:
  void Run() {
    while (!done_) {
      pollfd fd{g_signal_pipe[0], POLLIN, 0};
      if (poll(&fd, 1, 100) <= 0) continue;  // timeout or EINTR: check done_ again
      char sig = 0;
      if (read(g_signal_pipe[0], &sig, 1) != 1) continue;
      spdlog::info("received {}: finishing in-flight requests, then closing the database",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server_->Stop();
      return;
    }
  }

  HttpServer* server_;
  bool installed_ = false;
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

ApiKeys KeysFor(const ServerOptions& options) {
  return ApiKeys{EnvOr(options.api_key, "FATHOM_API_KEY"),
                 EnvOr(options.read_only_api_key, "FATHOM_READ_ONLY_API_KEY")};
}

}  // namespace

struct HttpServer::Impl {
  Impl(const ServerOptions& opts, Api* api, ServerExtension* extension)
      : options(opts),
        threads(opts.threads != 0
                    ? opts.threads
                    : std::max<size_t>(64, 4 * std::max(1u, std::thread::hardware_concurrency()))),
        watch(Limits(opts)),
        frontend(options, KeysFor(options), api, &watch, extension) {}

  static ConnectionLimits Limits(const ServerOptions& o) {
    ConnectionLimits limits;
    limits.header_timeout = o.header_timeout;
    // The watch is the backstop for bodies trickled in byte by byte (each byte restarts the HTTP
    // library's read timeout). It must fire after that read timeout, never with it: a body that
    // simply stops arriving gets the library's timeout and a 400 saying so, where the watch
    // would close the connection without an answer (seen under load when both were equal).
    limits.body_timeout = o.request_timeout + std::max<std::chrono::steady_clock::duration>(
                                                  std::chrono::seconds(1), o.request_timeout / 2);
    limits.max_per_client = o.max_connections_per_client;
    return limits;
  }

  const ServerOptions options;
  const size_t threads;
  ConnectionWatch watch;
  Frontend frontend;
  httplib::Server http;
  std::mutex mutex;             // orders Listen against Stop
  bool listen_called = false;
  bool stop_requested = false;
  std::atomic<bool> listen_returned{false};
};

HttpServer::HttpServer(const ServerOptions& options, Api* api, ServerExtension* extension)
    : impl_(std::make_unique<Impl>(options, api, extension)) {
  Frontend& frontend = impl_->frontend;
  httplib::Server& http = impl_->http;
  const size_t threads = impl_->threads;
  // The pool is deliberately larger than the number of cores: a keep-alive connection holds its
  // worker between requests, so the pool must exceed the open connections or new ones (an
  // upsert's) queue behind idle ones. CPU use is bounded separately, by the Api's search slots.
  const size_t max_threads = std::max(threads, options.max_threads);
  http.new_task_queue = [threads, max_threads] { return new ElasticPool(threads, max_threads); };
  // SO_REUSEADDR only (restart while old connections linger in TIME_WAIT). httplib's default
  // adds SO_REUSEPORT, which let a second server bind the same port and take half the requests.
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(options.request_timeout);
  http.set_write_timeout(options.request_timeout);
  // Load generators and client libraries reuse connections; httplib's default closes one after
  // 5 requests, which costs a TCP handshake every 5 searches.
  http.set_keep_alive_max_count(100000);
  http.set_keep_alive_timeout(5);
  http.set_tcp_nodelay(true);
  auto handle = [&frontend](const httplib::Request& req, httplib::Response& res) {
    frontend.Handle(req, res, req.body, 0);
  };
  // Bodies are read here rather than by the library because httplib 0.11 enforces its payload
  // limit only on Content-Length bodies: a chunked body would grow without bound.
  const size_t max_body = options.max_body_bytes;
  const auto timeout = options.request_timeout;
  ConnectionWatch* watch = &impl_->watch;
  auto handle_with_body = [&frontend, watch, max_body, timeout](const httplib::Request& req,
                                                         httplib::Response& res,
                                                         const httplib::ContentReader& reader) {
    std::string body;
    bool too_large = false;
    // Past the limit the rest of the body is read and dropped, so the connection stays in step
    // for its next request (httplib offers no way to close it from a handler), but only for as
    // long as the request timeout: a client streaming without end is then cut off.
    const auto drain_deadline = Clock::now() + timeout;
    // RFC 9112: a request with neither Content-Length nor Transfer-Encoding has no body (httplib
    // would call it malformed, which trips up `curl -X POST` without -d).
    const bool has_body = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
    if (has_body && frontend.RefusedBeforeBody(req)) {
      // Refused whatever the body holds (unknown route, missing key, ...): answer at once and
      // close, never buffering what an unauthenticated client sends.
      res.set_header("Connection", "close");
      frontend.Handle(req, res, "", 0);
      // httplib 0.11 keeps the connection open whatever the response says, and would read the
      // unread body as the next request line (without bound): send the answer ourselves and
      // close. httplib's own write of it then fails quietly.
      if (watch != nullptr) {
        std::string raw = "HTTP/1.1 " + std::to_string(res.status) + " " + ReasonPhrase(res.status) +
                          "\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(res.body.size()) + "\r\nConnection: close\r\n";
        if (res.has_header("WWW-Authenticate")) raw += "WWW-Authenticate: Bearer\r\n";
        if (res.has_header("Allow")) raw += "Allow: " + res.get_header_value("Allow") + "\r\n";
        raw += "\r\n" + res.body;
        watch->RespondAndClose(req.remote_addr, req.remote_port, raw);
      }
      return;
    }
    if (watch != nullptr) watch->Enter(req.remote_addr, req.remote_port, ConnectionWatch::Phase::kBody);
    if (has_body && req.is_multipart_form_data()) {
      // httplib routes multipart bodies to a separate receiver (calling an empty one otherwise);
      // drain it so the connection stays usable, and refuse the request.
      size_t drained = 0;
      reader([](const httplib::MultipartFormData&) { return true; },
             [&](const char*, size_t n) {
               drained += n;
               return drained <= max_body || Clock::now() < drain_deadline;
             });
      frontend.Handle(req, res, "", 415);
      return;
    }
    bool complete = !has_body || reader([&](const char* data, size_t n) {
      if (too_large || n > max_body - body.size()) {
        if (!too_large) std::string().swap(body);
        too_large = true;
        return Clock::now() < drain_deadline;
      }
      body.append(data, n);
      return true;
    });
    int body_error = 0;
    if (too_large || (!complete && res.status == 413)) {
      body_error = 413;
    } else if (!complete) {
      body_error = 400;
    }
    frontend.Handle(req, res, body, body_error);
  };
  const char* kAnyPath = R"([\s\S]*)";
  http.Get(kAnyPath, handle);
  http.Options(kAnyPath, handle);
  http.Post(kAnyPath, handle_with_body);
  http.Put(kAnyPath, handle_with_body);
  http.Delete(kAnyPath, handle_with_body);
  http.Patch(kAnyPath, handle_with_body);
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [&frontend](const httplib::Request& req, httplib::Response& res) {
        return frontend.HandleLibraryError(req, res);
      }));
}

HttpServer::~HttpServer() = default;

size_t HttpServer::threads() const { return impl_->threads; }

Result<int> HttpServer::Bind() {
  const ServerOptions& options = impl_->options;
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("port must be between 0 and 65535, got " + std::to_string(options.port));
  }
  errno = 0;
  int port = options.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(options.host);
  } else if (!impl_->http.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return Status::IOError("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                           (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()) +
                           (errno == EADDRINUSE ? " (is another server running on this port?)" : ""));
  }
  if (!WidenListenBacklog(port, SOMAXCONN)) {
    spdlog::warn("could not widen the listen backlog of port {}: bursts of connections may wait 1 s", port);
  }
  impl_->watch.Start(port);
  return port;
}

bool HttpServer::Listen() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stop_requested) return true;
    impl_->listen_called = true;
  }
  const bool ok = impl_->http.listen_after_bind();
  impl_->listen_returned = true;
  return ok;
}

void HttpServer::Stop() {
  impl_->frontend.set_stopping();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop_requested = true;
    if (!impl_->listen_called) return;
  }
  // stop() is a no-op until the listener runs; a Stop that early must not be lost.
  while (!impl_->http.is_running() && !impl_->listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  impl_->http.stop();
}

std::vector<std::pair<std::string, std::string>> HttpServer::Routes() const {
  return impl_->frontend.Routes();
}

}  // namespace server

Status RunServer(const ServerOptions& options) {
  using namespace server;
  if (options.data_dir.empty()) return Status::InvalidArgument("the data directory is required (--data DIR)");
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("port must be between 0 and 65535, got " + std::to_string(options.port));
  }
  const ApiKeys keys = KeysFor(options);
  if (!keys.enabled() && !IsLoopback(options.host) && !options.insecure) {
    return Status::FailedPrecondition(
        "refusing to listen on '" + options.host +
        "' with no API key: anyone who can reach it could read and change every collection. Set "
        "FATHOM_API_KEY (and optionally FATHOM_READ_ONLY_API_KEY), listen on 127.0.0.1, or pass "
        "--insecure");
  }

  auto db = Database::Open(options.data_dir, options.database);
  if (!db.ok()) return db.status();
  ApiLimits limits;
  limits.max_batch = options.max_batch;
  limits.max_k = options.max_k;
  limits.max_filter_depth = options.max_filter_depth;
  limits.max_json_depth = std::max<size_t>(64, options.max_filter_depth + 16);
  limits.max_concurrent_searches = options.max_concurrent_searches;
  Api api(options.data_dir, std::move(db).value(), limits);
  std::unique_ptr<ServerExtension> extension;
  if (options.extension) {
    auto made = options.extension(&api);
    if (!made.ok()) {
      (void)api.Close();
      return made.status();
    }
    extension = std::move(made).value();
  }
  HttpServer http(options, &api, extension.get());
  auto bound = http.Bind();
  if (!bound.ok()) {
    if (extension) extension->Stop();
    return bound.status();
  }
  const int port = *bound;
  const std::string url_host = options.host.find(':') != std::string::npos && options.host.front() != '['
                                   ? "[" + options.host + "]"
                                   : options.host;
  spdlog::info("fathom {} serving '{}' on http://{}:{} ({} threads, {})", FATHOM_VERSION,
               options.data_dir, url_host, port, http.threads(),
               keys.enabled() ? "API keys required" : "no API key");
  std::printf("fathom: listening on http://%s:%d (web console: http://%s:%d/console)\n", url_host.c_str(), port,
              url_host.c_str(), port);
  std::fflush(stdout);

  bool listened;
  {
    SignalWatcher watcher(&http);
    listened = http.Listen();
  }
  http.Stop();
  if (extension) extension->Stop();
  Status closed = api.Close();
  if (!closed.ok()) {
    spdlog::error("closing the database: {}", closed.ToString());
    return closed;
  }
  if (!listened) return Status::IOError("the listener on port " + std::to_string(port) + " failed");
  spdlog::info("fathom stopped; database '{}' closed cleanly", options.data_dir);
  return Status::OK();
}

}  // namespace fathom
