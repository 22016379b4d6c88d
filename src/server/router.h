// Router: maps a method and a decoded URL path to one of a fixed set of route templates
// ("/collections/{name}/points/search"), capturing the {parameters}.
//
// Our own table rather than the HTTP library's regex routes so that every request, matched or
// not, has one template to label metrics with, and so that 404 (no such path), 405 (path exists,
// other method) and 400 (path traversal: a "." or ".." segment) are told apart.
// Thread-safety: build it with Add before serving; Match is const and safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fathom::server {

// Who may call a route: anyone, any API key, or only the read-write key.
enum class Access { kPublic, kRead, kWrite };

struct Route {
  std::string method;  // "GET", "PUT", "POST", "DELETE"
  std::string path;    // the template, e.g. "/collections/{name}"
  Access access = Access::kRead;
  int id = 0;          // the caller's handler index
  std::vector<std::string> segments;
};

struct RouteMatch {
  const Route* route = nullptr;     // null when error_status is set
  std::vector<std::string> params;  // values of the {placeholders}, in order
  int error_status = 0;             // 400, 404 or 405
  std::string error;
  std::string allow;                // for 405: the methods the path accepts, "GET, PUT"
};

class Router {
 public:
  void Add(std::string method, std::string path, Access access, int id);
  // HEAD matches GET routes.
  RouteMatch Match(std::string_view method, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace fathom::server
