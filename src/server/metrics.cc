#include "server/metrics.h"

#include <charconv>

namespace fathom::server {
namespace {

void AppendDouble(std::string* out, double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, end);
}

}  // namespace

std::string PrometheusLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void HttpMetrics::Record(std::string_view route, std::string_view method, int status,
                         double seconds) {
  size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  std::lock_guard lock(mutex_);
  auto key = std::make_tuple(std::string(route), std::string(method), status);
  Series& s = series_[key];
  ++s.count;
  s.sum += seconds;
  if (bucket < kBuckets.size()) ++s.buckets[bucket];
}

void HttpMetrics::Render(std::string* out) const {
  std::map<std::tuple<std::string, std::string, int>, Series, std::less<>> copy;
  {
    std::lock_guard lock(mutex_);
    copy = series_;
  }
  *out += "# HELP fathom_http_requests_total HTTP requests answered, by route template, method and status code.\n";
  *out += "# TYPE fathom_http_requests_total counter\n";
  for (const auto& [key, s] : copy) {
    const auto& [route, method, code] = key;
    *out += "fathom_http_requests_total{route=\"" + PrometheusLabel(route) + "\",method=\"" +
            PrometheusLabel(method) + "\",code=\"" + std::to_string(code) + "\"} " +
            std::to_string(s.count) + "\n";
  }
  *out += "# HELP fathom_http_request_duration_seconds Time from routing a request to its response being ready.\n";
  *out += "# TYPE fathom_http_request_duration_seconds histogram\n";
  for (const auto& [key, s] : copy) {
    const auto& [route, method, code] = key;
    std::string labels = "route=\"" + PrometheusLabel(route) + "\",method=\"" +
                         PrometheusLabel(method) + "\",code=\"" + std::to_string(code) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += s.buckets[i];
      *out += "fathom_http_request_duration_seconds_bucket{" + labels + ",le=\"";
      AppendDouble(out, kBuckets[i]);
      *out += "\"} " + std::to_string(cumulative) + "\n";
    }
    *out += "fathom_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " +
            std::to_string(s.count) + "\n";
    *out += "fathom_http_request_duration_seconds_sum{" + labels + "} ";
    AppendDouble(out, s.sum);
    *out += "\nfathom_http_request_duration_seconds_count{" + labels + "} " +
            std::to_string(s.count) + "\n";
  }
}

}  // namespace fathom::server
