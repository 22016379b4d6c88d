// fathom-server: the REST server as a standalone binary (`fathom serve` runs the same RunServer).
//
//   fathom-server --data DIR [--host 127.0.0.1] [--port 6333] [--threads N] [--search-threads N]
//                 [--insecure] [--max-body BYTES] [--max-batch N] [--max-k N] [--request-timeout S]
//                 [--durability fsync|buffered] [--checkpoint-every N] [--log-level info]
//
// API keys come from FATHOM_API_KEY and FATHOM_READ_ONLY_API_KEY. Exit status: 0 after a clean
// shutdown (SIGTERM / Ctrl-C), 1 for a usage error, 2 when the server cannot start or fails.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "server/server.h"

int main(int argc, char** argv) {
  fathom::ServerOptions options;
  std::string durability = "fsync";
  std::string log_level = "info";
  int64_t timeout_s = options.request_timeout.count();
  CLI::App app("Fathom REST server: a Qdrant-like HTTP API over a Fathom database directory", "fathom-server");
  app.add_option("--data", options.data_dir, "database directory (created if missing)")
      ->required()
      ->envname("FATHOM_DATA");
  app.add_option("--host", options.host, "address to listen on; non-loopback needs FATHOM_API_KEY or --insecure")
      ->capture_default_str();
  app.add_option("--port", options.port, "TCP port; 0 picks a free one (printed on stdout)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--threads", options.threads, "worker threads, one per open connection (0 = max(64, 4 x cores))")
      ->capture_default_str();
  app.add_option("--search-threads", options.max_concurrent_searches,
                 "searches executing at once, the rest wait (0 = one per core)")
      ->capture_default_str();
  app.add_flag("--insecure", options.insecure, "allow a non-loopback address with no API key");
  app.add_option("--max-body", options.max_body_bytes, "largest request body in bytes (413 beyond)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-batch", options.max_batch, "points per upsert, ids per get/delete, searches per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-k", options.max_k, "largest search limit (k)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--request-timeout", timeout_s, "seconds to read a request / write a response; bounds batch searches")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--durability", durability,
                 "fsync: every acknowledged write is on disk; buffered: survives a process crash, "
                 "not a power loss, ~10x faster ingest")
      ->check(CLI::IsMember({"fsync", "buffered"}))
      ->capture_default_str();
  app.add_option("--checkpoint-every", options.database.checkpoint_every,
                 "checkpoint a collection's indexes after this many upserted or deleted points")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug logs every request")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  options.request_timeout = std::chrono::seconds(timeout_s);
  options.database.durability =
      durability == "buffered" ? fathom::Durability::kBuffered : fathom::Durability::kFsync;

  // stdout carries the "listening on" line that scripts and tests parse; logs go to stderr.
  auto logger = spdlog::stderr_color_mt("fathom");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  try {
    fathom::Status s = fathom::RunServer(options);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
