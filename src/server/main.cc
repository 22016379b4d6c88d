// fathom-server: the REST server as a standalone binary (`fathom serve` runs the same RunServer).
//
//   fathom-server --data DIR [server flags, as `fathom serve`: src/server/serve_flags.h]
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

#include "server/serve_flags.h"
#include "server/server.h"

int main(int argc, char** argv) {
  fathom::ServerOptions options;
  std::string durability = "fsync";
  std::string log_level = "info";
  CLI::App app("Fathom REST server: a Qdrant-like HTTP API over a Fathom database directory", "fathom-server");
  app.add_option("--data", options.data_dir, "database directory (created if missing)")
      ->required()
      ->envname("FATHOM_DATA");
  fathom::server::ServeFlagSeconds seconds;
  fathom::server::AddServeFlags(&app, &options, &seconds);
  app.add_option("--durability", durability,
                 "fsync: every acknowledged write is on disk; buffered: survives a process crash, "
                 "not a power loss, ~10x faster ingest")
      ->check(CLI::IsMember({"fsync", "buffered"}))
      ->capture_default_str();
  app.add_option("--checkpoint-every", options.database.checkpoint_every,
                 "checkpoint a collection's indexes after this many upserted or deleted points")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--checkpoint-after", options.database.checkpoint_after_seconds,
                 "also checkpoint a collection with logged writes once its last checkpoint is this many seconds old (0: by count only)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug logs every request")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  fathom::server::ApplyServeFlags(seconds, &options);
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
