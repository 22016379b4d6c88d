// Thin RAII wrappers over the NATS C client (cnats 3.4) for the cluster mode: one connection
// that reconnects for ever, JetStream streams (a shard's replicated write-ahead log), key-value
// buckets (cluster metadata) and request/reply (node-to-node calls). NATS does the consensus and
// the replication; nothing here decides anything on its own.
//
// Thread-safety: a Nats connection, its JetStream context and its buckets may be used from any
// number of threads (cnats locks inside).
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/status.h"

namespace fathom::cluster {

// A cnats status as ours: timeouts, lost connections and missing responders are Unavailable
// (retry elsewhere or later), "not found" is NotFound, the rest Internal. `what` says what failed.
Status FromNats(natsStatus s, std::string_view what, jsErrCode js_error = jsErrCode(0));

struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// A message's header value, or "" when it has none.
std::string Header(natsMsg* msg, const char* key);
std::string_view Data(natsMsg* msg);

class KeyValue;

class Nats {
 public:
  // Connects to any of `urls` (retrying for ever while they are down; the first connect gives
  // up after `connect_timeout`) and opens JetStream.
  static Result<std::unique_ptr<Nats>> Connect(const std::vector<std::string>& urls,
                                               const std::string& name,
                                               std::chrono::milliseconds connect_timeout);
  ~Nats();
  Nats(const Nats&) = delete;
  Nats& operator=(const Nats&) = delete;

  natsConnection* connection() const { return nc_; }
  jsCtx* jetstream() const { return js_; }
  bool connected() const;

  // Creates the stream (file storage, `replicas` copies, 2-minute de-duplication window) unless
  // it exists already. With `max_msgs` > 0 the stream takes that many messages and then refuses
  // every publish with FailedPrecondition ("full"; JetStream's discard-new policy, enforced as
  // the replicated log is applied, so every copy ends at the same message).
  Status EnsureStream(const std::string& name, const std::string& subject, int replicas,
                      int64_t max_msgs = 0);
  Status DeleteStream(const std::string& name);
  struct StreamState {
    uint64_t first_seq = 0;
    uint64_t last_seq = 0;
    uint64_t messages = 0;
    int64_t max_msgs = 0;  // as made by EnsureStream (0: no limit)
  };
  Result<StreamState> GetStreamState(const std::string& name);
  // The names of the streams that take subjects matching `subject_filter` (wildcards allowed).
  Result<std::vector<std::string>> StreamNames(const std::string& subject_filter);
  // Message `seq` of the stream (NotFound when there is none).
  Result<MsgPtr> GetMessage(const std::string& stream, uint64_t seq);
  // When the stream stored message `seq` (nanoseconds since the epoch, UTC).
  Result<int64_t> MessageTime(const std::string& stream, uint64_t seq);

  // Publishes to a stream and waits for JetStream's acknowledgement (stored on a quorum of the
  // stream's replicas); returns the message's stream sequence. `msg_id` de-duplicates retries.
  Result<uint64_t> Publish(const std::string& subject, std::string_view data,
                           const std::map<std::string, std::string>& headers,
                           const std::string& msg_id, std::chrono::milliseconds timeout);

  // Opens the bucket, creating it (`replicas` copies; entries expire after `ttl` unless zero).
  Result<std::unique_ptr<KeyValue>> Bucket(const std::string& name, int replicas,
                                           std::chrono::seconds ttl);

  // Request/reply with headers; Unavailable on timeout or when nobody listens on `subject`.
  Result<MsgPtr> Request(const std::string& subject, std::string_view data,
                         const std::map<std::string, std::string>& headers,
                         std::chrono::milliseconds timeout);
  // Answers a request (a message with a reply subject).
  Status Respond(natsMsg* request, std::string_view data,
                 const std::map<std::string, std::string>& headers);

 private:
  Nats() = default;
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// A JetStream key-value bucket.
class KeyValue {
 public:
  KeyValue(kvStore* kv, jsCtx* js) : kv_(kv), js_(js) {}
  ~KeyValue();
  KeyValue(const KeyValue&) = delete;
  KeyValue& operator=(const KeyValue&) = delete;

  Result<std::optional<std::string>> Get(const std::string& key, uint64_t* revision = nullptr);
  // Writes only if the key is still at `revision` (FailedPrecondition otherwise): compare-and-set.
  Status Update(const std::string& key, std::string_view value, uint64_t revision);
  Status Put(const std::string& key, std::string_view value);
  // AlreadyExists when the key holds a value.
  Status Create(const std::string& key, std::string_view value);
  Status Delete(const std::string& key);
  // Every key with a value (none: empty), each once; Unavailable after `timeout`. Not nats.c's
  // kvStore_Keys: that waits for ever by default, and it ends when its watcher counts the
  // initial values as all in, a count from the server's pending numbers that can end too early
  // (a partial list) or never (entries deleted while listing: one such wait held a node's
  // metadata sync, and the requests behind it, for good). This one reads until it has seen the
  // bucket's last entry, as read after its watcher started and again once it got there.
  Result<std::vector<std::string>> Keys(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  kvStore* kv_;
  jsCtx* js_;
};

}  // namespace fathom::cluster
