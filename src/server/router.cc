#include "server/router.h"

namespace fathom::server {
namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  // "/collections/" reads as "/collections", as most clients and proxies expect.
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    out.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                     : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool IsParam(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

void Router::Add(std::string method, std::string path, Access access, int id) {
  Route route{std::move(method), std::move(path), access, id, {}};
  for (std::string_view s : Split(route.path)) route.segments.emplace_back(s);
  routes_.push_back(std::move(route));
}

RouteMatch Router::Match(std::string_view method, std::string_view path) const {
  RouteMatch match;
  std::vector<std::string_view> segments = Split(path);
  for (std::string_view s : segments) {
    if (s == "." || s == "..") {
      match.error_status = 400;
      match.error = "path segment '" + std::string(s) + "' is not allowed";
      return match;
    }
  }
  if (method == "HEAD") method = "GET";
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool same = true;
    for (size_t i = 0; i < segments.size() && same; ++i) {
      if (IsParam(route.segments[i])) {
        same = !segments[i].empty();
        params.emplace_back(segments[i]);
      } else {
        same = route.segments[i] == segments[i];
      }
    }
    if (!same) continue;
    // Literal segments win over parameters ("snapshots/recover" over "snapshots/{snapshot}")
    // because literal routes are added first; here only the method can still disagree.
    if (route.method == method) {
      match.route = &route;
      match.params = std::move(params);
      match.error_status = 0;
      match.error.clear();
      match.allow.clear();
      return match;
    }
    if (match.allow.find(route.method) == std::string::npos) {
      if (!match.allow.empty()) match.allow += ", ";
      match.allow += route.method;
    }
    match.error_status = 405;
  }
  if (match.error_status == 405) {
    match.error = "method " + std::string(method) + " is not allowed on " + std::string(path) +
                  "; allowed: " + match.allow;
  } else {
    match.error_status = 404;
    match.error = "no such endpoint: " + std::string(method) + " " + std::string(path);
  }
  return match;
}

}  // namespace fathom::server
