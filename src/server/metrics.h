// HttpMetrics: request counters and latency histograms per route template, method and status
// code, rendered in the Prometheus text exposition format (version 0.0.4).
//
// Labels use the route template ("/collections/{name}/points/search"), never the raw path, so the
// number of series stays bounded however many collections or bad URLs clients send.
// Thread-safety: Record and Render may be called concurrently from any number of threads.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace fathom::server {

class HttpMetrics {
 public:
  // Upper bounds (seconds) of the latency buckets: 0.5 ms to 10 s, plus +Inf.
  static constexpr std::array<double, 14> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,    0.25,  0.5,    1,     2.5,   5,     10};

  void Record(std::string_view route, std::string_view method, int status, double seconds);
  // Appends the fathom_http_requests_total and fathom_http_request_duration_seconds families.
  void Render(std::string* out) const;

 private:
  struct Series {
    uint64_t count = 0;
    double sum = 0;
    std::array<uint64_t, kBuckets.size()> buckets{};  // non-cumulative; summed when rendered
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, Series, std::less<>> series_;
};

// A Prometheus label value with \, " and newline escaped.
std::string PrometheusLabel(std::string_view value);

}  // namespace fathom::server
