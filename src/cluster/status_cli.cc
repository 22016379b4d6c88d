// `fathom cluster status`: asks one node for GET /cluster and prints it for a person.
#include <httplib.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cluster/node.h"

namespace fathom::cluster {

Status PrintStatus(const std::string& url, bool json) {
  httplib::Client client(url);
  client.set_connection_timeout(5);
  client.set_read_timeout(15);
  httplib::Headers headers;
  if (const char* key = std::getenv("FATHOM_API_KEY"); key != nullptr && *key != '\0') {
    headers.emplace("api-key", key);
  }
  auto res = client.Get("/cluster", headers);
  if (!res)
    return Status::Unavailable("could not reach " + url + ": " + httplib::to_string(res.error()));
  nlohmann::json body = nlohmann::json::parse(res->body, nullptr, false);
  if (body.is_discarded())
    return Status::Internal(url + "/cluster answered " + std::to_string(res->status) +
                            " without JSON");
  if (res->status != 200) {
    std::string why = body.contains("status") && body["status"].is_object()
                          ? body["status"].value("error", "")
                          : "";
    return Status::Unavailable(url + "/cluster answered " + std::to_string(res->status) +
                               (why.empty() ? "" : ": " + why));
  }
  const nlohmann::json& r = body["result"];
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
    std::printf("%-6s %-10s %-10s %-6s %-10s %-10s %-8s %-8s %s\n", "SHARD", "LOG_SEQ", "NODE",
                "ALIVE", "APPLIED", "POINTS", "LAG", "LAG_S", "NOTE");
    for (const auto& s : c["shards"]) {
      std::string seq =
          s.contains("last_seq") ? std::to_string(s["last_seq"].get<uint64_t>()) : "?";
      for (const auto& rep : s["replicas"]) {
        auto num = [&](const char* k) {
          return rep.contains(k) ? std::to_string(rep[k].get<uint64_t>()) : std::string("-");
        };
        std::string note = rep.value("error", "");
        if (rep.value("alive", false) && !rep.value("ready", false))
          note = "replica not created yet " + note;
        if (!s.value("available", true)) note = "SHARD UNAVAILABLE " + note;
        char lag_s[32] = "-";
        if (rep.contains("lag_seconds"))
          std::snprintf(lag_s, sizeof lag_s, "%.1f", rep["lag_seconds"].get<double>());
        std::printf("%-6d %-10s %-10s %-6s %-10s %-10s %-8s %-8s %s\n", s.value("shard", 0),
                    seq.c_str(), rep.value("node", "").c_str(),
                    rep.value("alive", false) ? "yes" : "NO", num("applied").c_str(),
                    num("points").c_str(), num("lag").c_str(), lag_s, note.c_str());
      }
    }
  }
  return Status::OK();
}

}  // namespace fathom::cluster
