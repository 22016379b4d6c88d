// `fathom cluster status`: asks one node for GET /cluster and prints it for a person.
#include <httplib.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cluster/node.h"

namespace fathom::cluster {

namespace {

// GET (body empty) or POST `path` on the node at `url`; the answer's "result".
Result<nlohmann::json> Ask(const std::string& url, const std::string& path,
                           const std::string& post_body) {
  httplib::Client client(url);
  client.set_connection_timeout(5);
  client.set_read_timeout(15);
  httplib::Headers headers;
  if (const char* key = std::getenv("FATHOM_API_KEY"); key != nullptr && *key != '\0') {
    headers.emplace("api-key", key);
  }
  auto res = post_body.empty() ? client.Get(path, headers)
                               : client.Post(path, headers, post_body, "application/json");
  if (!res)
    return Status::Unavailable("could not reach " + url + ": " + httplib::to_string(res.error()));
  nlohmann::json body = nlohmann::json::parse(res->body, nullptr, false);
  if (body.is_discarded())
    return Status::Internal(url + path + " answered " + std::to_string(res->status) +
                            " without JSON");
  if (res->status != 200) {
    std::string why = body.contains("status") && body["status"].is_object()
                          ? body["status"].value("error", "")
                          : "";
    return Status::Unavailable(url + path + " answered " + std::to_string(res->status) +
                               (why.empty() ? "" : ": " + why));
  }
  return body["result"];
}

}  // namespace

Status StartRebalance(const std::string& url, bool dry_run) {
  FATHOM_ASSIGN_OR_RETURN(nlohmann::json r, Ask(url, "/cluster/rebalance",
                                                nlohmann::json{{"dry_run", dry_run}}.dump()));
  const auto& moves = r["moves"];
  if (moves.empty()) {
    std::printf("balanced: no move needed\n");
    return Status::OK();
  }
  for (const auto& mv : moves) {
    std::printf("move %s shard %d: %s -> %s\n", mv.value("collection", "").c_str(),
                mv.value("shard", 0), mv.value("from", "").c_str(), mv.value("to", "").c_str());
  }
  if (r.value("started", false)) {
    std::printf(
        "started on %s: %zu moves, one at a time (progress: fathom cluster status --url %s)\n",
        url.c_str(), moves.size(), url.c_str());
  }
  return Status::OK();
}

Status PrintStatus(const std::string& url, bool json) {
  FATHOM_ASSIGN_OR_RETURN(nlohmann::json r, Ask(url, "/cluster", ""));
  if (json) {
    std::printf("%s\n", r.dump(2).c_str());
    return Status::OK();
  }
  std::printf("node %s asked; NATS %s\n", r.value("node_id", "?").c_str(),
              r.value("nats_connected", false) ? "connected" : "DISCONNECTED");
  std::printf("%-12s %-6s %s\n", "NODE", "ALIVE", "NOTE");
  for (const auto& n : r["nodes"]) {
    std::printf("%-12s %-6s %s\n", n.value("id", "").c_str(),
                n.value("alive", false) ? "yes" : "NO", n.value("error", "").c_str());
  }
  for (const auto& c : r["collections"]) {
    std::printf("\ncollection %s: %d shards x %d replicas\n", c.value("name", "").c_str(),
                c.value("shard_number", 0), c.value("replication_factor", 0));
    std::printf("%-6s %-22s %-10s %-6s %-10s %-10s %-8s %-8s %s\n", "SHARD", "LOG_SEQ", "NODE",
                "ALIVE", "APPLIED", "POINTS", "LAG", "LAG_S", "NOTE");
    for (const auto& s : c["shards"]) {
      std::string seq =
          s.contains("last_seq") ? std::to_string(s["last_seq"].get<uint64_t>()) : "?";
      if (s.contains("log_entries"))  // how many of them the log still keeps
        seq += " (" + std::to_string(s["log_entries"].get<uint64_t>()) + " kept)";
      for (const auto& rep : s["replicas"]) {
        auto num = [&](const char* k) {
          return rep.contains(k) ? std::to_string(rep[k].get<uint64_t>()) : std::string("-");
        };
        std::string note = rep.value("error", "");
        if (rep.value("installing_snapshot", false))
          note = "installing a snapshot from a peer " + note;
        else if (rep.value("alive", false) && !rep.value("ready", false))
          note = "replica not created yet " + note;
        if (!s.value("available", true)) note = "SHARD UNAVAILABLE " + note;
        char lag_s[32] = "-";
        if (rep.contains("lag_seconds"))
          std::snprintf(lag_s, sizeof lag_s, "%.1f", rep["lag_seconds"].get<double>());
        std::printf("%-6d %-22s %-10s %-6s %-10s %-10s %-8s %-8s %s\n", s.value("shard", 0),
                    seq.c_str(), rep.value("node", "").c_str(),
                    rep.value("alive", false) ? "yes" : "NO", num("applied").c_str(),
                    num("points").c_str(), num("lag").c_str(), lag_s, note.c_str());
      }
    }
  }
  if (r.contains("rebalance")) {
    const auto& job = r["rebalance"];
    std::printf("\nrebalance (run by this node): %s, %zu of %zu moves done %s\n",
                job.value("state", "").c_str(), job.value("done", size_t{0}), job["moves"].size(),
                job.value("error", "").c_str());
  }
  return Status::OK();
}

}  // namespace fathom::cluster
