// The server's command-line flags, shared by `fathom serve` and `fathom-server` so that both
// take one set of flags with one meaning. Header-only: both programs link CLI11, the server
// library does not.
#pragma once

#include <chrono>
#include <cstdint>

#include <CLI/CLI.hpp>

#include "server/server.h"

namespace fathom::server {

// Durations are parsed as whole seconds into these, then copied by ApplyServeFlags, as are the
// database options (the CLI sets ServerOptions::database from its common flags afterwards).
struct ServeFlagSeconds {
  int64_t request_timeout = 30;
  int64_t header_timeout = 10;
  uint64_t min_free_disk_mib = 64;
  double recall_sample_rate = 0;
  double recall_cpu_share = 0;
};

inline void AddServeFlags(CLI::App* app, ServerOptions* o, ServeFlagSeconds* s) {
  s->request_timeout = o->request_timeout.count();
  s->header_timeout = o->header_timeout.count();
  s->min_free_disk_mib = o->database.min_free_disk_bytes >> 20;
  s->recall_sample_rate = o->database.recall_sample_rate;
  s->recall_cpu_share = o->database.recall_cpu_share;
  app->add_option("--host", o->host, "address to listen on; non-loopback needs FATHOM_API_KEY or --insecure")
      ->capture_default_str();
  app->add_option("--port", o->port, "TCP port; 0 picks a free one (printed on stdout)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app->add_option("--threads", o->threads, "worker threads kept ready, one per open connection (0 = max(64, 4 x cores))")
      ->capture_default_str();
  app->add_option("--max-threads", o->max_threads,
                  "worker threads at most: more start while every one is busy (slow clients), then exit")
      ->capture_default_str();
  app->add_option("--search-threads", o->max_concurrent_searches,
                  "searches executing at once, the rest wait (0 = one per core)")
      ->capture_default_str();
  app->add_flag("--insecure", o->insecure, "allow a non-loopback address with no API key");
  app->add_option("--max-body", o->max_body_bytes, "largest request body in bytes (413 beyond)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--max-batch", o->max_batch, "points per upsert, ids per get/delete, searches per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--max-k", o->max_k, "largest search limit (k)")->check(CLI::Range(1, 10000))->capture_default_str();
  app->add_option("--request-timeout", s->request_timeout,
                  "seconds to receive a request body / write a response; bounds batch searches")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--header-timeout", s->header_timeout,
                  "seconds a connection may take to send a request's headers (slow clients are cut off)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--min-free-disk", s->min_free_disk_mib,
                  "MiB that must stay free on the data directory's disk: below it writes get 507 (reads go on) "
                  "and resume by themselves once space is freed")
      ->capture_default_str();
  app->add_option("--recall-sample-rate", s->recall_sample_rate,
                  "share of searches re-run exactly in the background to estimate recall (0 turns it off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app->add_option("--recall-cpu-share", s->recall_cpu_share,
                  "share of one core the recall monitor may use (samples beyond it are dropped)")
      ->check(CLI::Range(0.001, 1.0))
      ->capture_default_str();
  app->add_option("--max-connections-per-client", o->max_connections_per_client,
                  "open connections one client address may hold")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

// Call after o->database is final (the CLI fills it from its common flags).
inline void ApplyServeFlags(const ServeFlagSeconds& s, ServerOptions* o) {
  o->database.min_free_disk_bytes = s.min_free_disk_mib << 20;
  o->database.recall_sample_rate = s.recall_sample_rate;
  o->database.recall_cpu_share = s.recall_cpu_share;
  o->request_timeout = std::chrono::seconds(s.request_timeout);
  o->header_timeout = std::chrono::seconds(s.header_timeout);
}

}  // namespace fathom::server
