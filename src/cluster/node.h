// The cluster mode (`fathom serve --cluster nats://... --node-id n1`): a Fathom node that keeps
// its shard replicas in the local database and talks to the other nodes only through NATS.
//
// - Metadata: the JetStream key-value bucket `fathom_collections` holds each collection (its
//   create body, shard count, replication factor and which nodes hold each shard);
//   `fathom_nodes` holds a heartbeat per node that expires when the node stops beating.
// - Writes: any node validates a write against its local template of the collection, routes each
//   point by ShardOf(id) and publishes one message per shard to that shard's JetStream stream
//   (replicated, the shard's write-ahead log). JetStream's acknowledgement (stored on a quorum)
//   is the write's acknowledgement; with wait (the default) the node then waits until a replica
//   of every shard it wrote has applied it.
// - Replicas: each node applies the stream of every shard it holds, in order, to a local
//   collection, storing the stream sequence in the same RocksDB batch as the data
//   (Collection::log_position), so a restart resumes exactly after the last applied entry.
// - Reads: any node asks one replica of every shard (itself first, then live nodes) over NATS
//   request/reply, fails over on timeout, and merges; a shard no replica answers for is an error
//   naming it, never silently missing.
//
// docs/distributed.md has the guarantees and how to run it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/database.h"
#include "fathom/status.h"
#include "server/server.h"

namespace fathom::cluster {

struct ClusterOptions {
  std::vector<std::string>
      nats_urls;        // every NATS server of the cluster (stream replicas <= their count)
  std::string node_id;  // letters, digits, '-', '_'; unique in the cluster
  // How long a node waits for one replica's answer before it tries the next, and for a
  // JetStream acknowledgement before it retries the publish.
  std::chrono::milliseconds request_timeout{5000};
  // How long a write with wait waits for a replica to apply it before answering "acknowledged".
  std::chrono::milliseconds wait_timeout{10000};
  // Bounded log retention (opt-in): the shards of a collection created by this node are logged
  // in a chain of streams of `log_retain` entries each (one per epoch), and the streams of
  // epochs before the previous one are deleted once every live replica has applied them (a
  // replica that comes back behind them installs a snapshot from a peer, then applies the rest).
  // Negative (the default): one stream per shard that keeps every entry.
  int64_t log_retain = -1;
  // Whether the node's writes are fsynced (--durability fsync, the default): only then do its
  // applied positions let the log be trimmed.
  bool durable_applies = true;
  // Automatic rebalancing (opt-in, --auto-rebalance SECONDS > 0). Of the live nodes started
  // with it, the one with the smallest id replaces the replicas of a node whose heartbeat has
  // been missing this long (a new replica on the live node holding the fewest, caught up, then
  // the dead one removed) and, once no replacement is due or pending, evens out how many
  // replicas each live node holds (POST /cluster/rebalance's plan: a node that joins gets its
  // share). Zero: replicas move only when asked.
  std::chrono::seconds auto_rebalance{0};
};

// "nats://a:4222,nats://b:4222" -> its URLs.
std::vector<std::string> SplitUrls(std::string_view list);
Status ValidateNodeId(std::string_view id);
// The shard a point id belongs to: a fixed hash, the same on every node and release.
uint32_t ShardOf(const PointId& id, uint32_t shards);

// `fathom cluster status`: GET /cluster of the node at `url`, printed as a table (or the JSON).
Status PrintStatus(const std::string& url, bool json);
// `fathom cluster rebalance`: POST /cluster/rebalance to the node at `url` and prints the moves
// (made by that node, one at a time; `fathom cluster status` shows the progress).
Status StartRebalance(const std::string& url, bool dry_run);

// Connects to NATS, registers the node, and starts applying the shards it holds.
Result<std::unique_ptr<server::ServerExtension>> StartNode(server::Api* api,
                                                           const ClusterOptions& options);

}  // namespace fathom::cluster
