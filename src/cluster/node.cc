#include "cluster/node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "cluster/nats.h"
#include "server/api.h"
#include "server/json_util.h"
#include "server/router.h"
#include "server/snapshot_archive.h"
#include "util/file.h"

namespace fathom::cluster {

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using server::Access;
using server::ApiRequest;
using server::ExtraRoute;
using server::Reply;

constexpr char kCollectionsBucket[] = "fathom_collections";
constexpr char kNodesBucket[] = "fathom_nodes";
// Tombstones of dropped collections (gen -> name), kept a week: a node drops its local copies of
// a collection only on this positive evidence (or after its absence held for kGoneConfirm).
constexpr char kDroppedBucket[] = "fathom_dropped";
constexpr auto kDroppedTtl = std::chrono::hours(24 * 7);
constexpr auto kGoneConfirm = std::chrono::seconds(60);
constexpr char kAliasesKey[] =
    "_aliases";  // in kCollectionsBucket: every alias in one value, changed by CAS
constexpr auto kBeat = std::chrono::seconds(1);
constexpr auto kNodeTtl = std::chrono::seconds(5);  // a node missing this long is dead
constexpr int kRpcWorkers = 8;
constexpr size_t kMaxQueuedRpcs = 4096;
constexpr int kFetchBatch = 256;
constexpr size_t kRememberedResults = 4096;  // entries whose changed-point counts a replica keeps
// Shard snapshots sent to a peer: in pieces of this size (NATS's default max_payload is 1 MiB),
// at most this many kept at once, each removed when unread this long.
constexpr size_t kSnapshotChunk = 512 * 1024;
constexpr size_t kMaxTransfers = 4;
constexpr size_t kMaxInstalls = 2;                         // replicas this node installs at once
constexpr uint64_t kTransferReserve = uint64_t{64} << 20;  // disk left free by a transfer
constexpr auto kTransferIdle = std::chrono::minutes(2);
constexpr int kTrimEvery = 5;  // sync rounds (seconds) between log trims
// --auto-rebalance: the pause after an automatic job failed before the next one is planned.
constexpr auto kAutoRebalanceBackoff = std::chrono::seconds(60);

namespace fs = std::filesystem;

// ---- Metadata ------------------------------------------------------------------------------

// A replica's position in its shard's log. With --log-retain N the log is a chain of streams,
// one per epoch, each made to take exactly N entries (JetStream refuses the next one: the
// writer that is refused makes the next epoch's stream and publishes there), and old streams
// are deleted whole once every replica is past them: nothing is ever purged from a stream (purges
// diverged the stream's copies on nats-server 2.9.10) and no stream's settings change after it
// is made (sealing one crashed restarting 2.9.10 servers). A position is epoch << 40 | the entry's
// sequence in that epoch's stream; (e, 0) is "all of the epochs before e". Epoch 0's stream is
// the shard's first, so without rotation a position is the stream sequence.
constexpr int kEpochShift = 40;
constexpr uint64_t Pos(uint32_t epoch, uint64_t seq) {
  return uint64_t{epoch} << kEpochShift | seq;
}
constexpr uint32_t EpochOf(uint64_t pos) {
  return uint32_t(pos >> kEpochShift);
}
constexpr uint64_t SeqOf(uint64_t pos) {
  return pos & ((uint64_t{1} << kEpochShift) - 1);
}
// "epoch:sequence" (just the sequence in epoch 0), for messages.
std::string PosText(uint64_t pos) {
  return EpochOf(pos) == 0 ? std::to_string(pos)
                           : std::to_string(EpochOf(pos)) + ":" + std::to_string(SeqOf(pos));
}

// One cluster collection as the `fathom_collections` bucket holds it.
struct Meta {
  std::string name;
  std::string gen;  // 8 hex digits, new for every create: a re-created collection shares nothing
  uint32_t shards = 1;
  uint32_t replication = 1;
  std::vector<std::vector<std::string>> assignment;  // shard -> nodes holding a replica
  Json body;                                         // the create body, without the cluster fields
  uint64_t epoch_entries = 0;          // entries an epoch's stream takes (0: one stream, no limit)
  std::vector<uint32_t> epochs;        // shard -> the newest epoch a writer has started
  std::vector<uint32_t> first_epochs;  // shard -> the oldest epoch whose stream is kept
  // What POST /collections/{name}/tune chose, per vector name: {"ef"|"nprobe"|"checks": N,
  // "target_recall", "recall"} (every replica gets it through its log; templates from here).
  Json search_defaults = Json::object();

  uint32_t Epoch(uint32_t s) const { return s < epochs.size() ? epochs[s] : 0; }
  uint32_t FirstEpoch(uint32_t s) const { return s < first_epochs.size() ? first_epochs[s] : 0; }
  // The stream (and its subject) of shard s's log in epoch e; without e, the current one.
  std::string Stream(uint32_t s, uint32_t e) const {
    return "FATHOM_" + gen + "_" + std::to_string(s) + (e == 0 ? "" : "_E" + std::to_string(e));
  }
  std::string Subject(uint32_t s, uint32_t e) const {
    return "fathom.log." + gen + "." + std::to_string(s) + (e == 0 ? "" : "." + std::to_string(e));
  }
  std::string Stream(uint32_t s) const { return Stream(s, Epoch(s)); }
  std::string Subject(uint32_t s) const { return Subject(s, Epoch(s)); }
  std::string AllSubjects() const { return "fathom.log." + gen + ".>"; }
  std::string Local(uint32_t s) const { return name + "." + gen + ".s" + std::to_string(s); }
  std::string Template() const { return name + "." + gen + ".t"; }
  bool Holds(uint32_t s, const std::string& node) const {
    const auto& r = assignment[s];
    return std::find(r.begin(), r.end(), node) != r.end();
  }

  std::string Encode() const {
    Json j{{"name", name},
           {"gen", gen},
           {"shards", shards},
           {"replication_factor", replication},
           {"assignment", assignment},
           {"body", body}};
    if (epoch_entries > 0) j["epoch_entries"] = epoch_entries;
    if (!epochs.empty()) j["epochs"] = epochs;
    if (!first_epochs.empty()) j["first_epochs"] = first_epochs;
    if (!search_defaults.empty()) j["search_defaults"] = search_defaults;
    return j.dump();
  }
  static Result<Meta> Decode(std::string_view text) {
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Status::Corruption("cluster metadata is not JSON");
    try {
      Meta m;
      m.name = j.at("name").get<std::string>();
      m.gen = j.at("gen").get<std::string>();
      m.shards = j.at("shards").get<uint32_t>();
      m.replication = j.at("replication_factor").get<uint32_t>();
      m.assignment = j.at("assignment").get<std::vector<std::vector<std::string>>>();
      m.body = j.at("body");
      m.epoch_entries = j.value("epoch_entries", uint64_t{0});
      m.epochs = j.value("epochs", std::vector<uint32_t>());
      m.first_epochs = j.value("first_epochs", std::vector<uint32_t>());
      m.search_defaults = j.value("search_defaults", Json::object());
      if (m.shards == 0 || m.assignment.size() != m.shards)
        return Status::Corruption("bad shard assignment");
      m.epochs.resize(m.shards, 0);
      m.first_epochs.resize(m.shards, 0);
      return m;
    } catch (const std::exception& e) {
      return Status::Corruption(std::string("cluster metadata: ") + e.what());
    }
  }
};

// Local collection names the cluster owns: NAME.GEN.t (the template) and NAME.GEN.sK (a replica;
// `*shard` is K, or -1 for the template).
bool ParseLocalName(const std::string& local, std::string* name, std::string* gen,
                    int64_t* shard = nullptr) {
  static const std::regex re(R"(^(.+)\.([0-9a-f]{8})\.(t|s([0-9]+))$)");
  std::smatch m;
  if (!std::regex_match(local, m, re)) return false;
  *name = m[1];
  *gen = m[2];
  if (shard != nullptr) *shard = m[4].matched ? std::strtoll(m[4].str().c_str(), nullptr, 10) : -1;
  return true;
}

std::string RandomHex(int digits) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static const char* hex = "0123456789abcdef";
  std::string out;
  uint64_t bits = rng();
  for (int i = 0; i < digits; ++i) {
    if (i == 16) bits = rng();
    out.push_back(hex[bits & 15]);
    bits >>= 4;
  }
  return out;
}

Json IdJson(const PointId& id) {
  if (const auto* n = std::get_if<uint64_t>(&id)) return Json(*n);
  return Json(std::get<std::string>(id));
}

Result<PointId> IdFromJson(const Json& j) {
  if (j.is_number_unsigned()) return PointId(j.get<uint64_t>());
  if (j.is_string()) return PointId(j.get<std::string>());
  return Status::Corruption("log entry: bad point id");
}

bool WaitRequested(const ApiRequest& req) {
  for (const auto& [key, value] : req.query) {
    if (key == "wait") return value != "false";
  }
  return true;
}

// How a read treats replicas: `after` (from ?read_after=SHARD:SEQ,...: a write's `read_after`)
// makes each shard's replica wait until it has applied that entry, for read-your-writes on any
// node; `partial` (?partial=true) answers from the shards that answered, naming the others in
// the Fathom-Missing-Shards header, instead of failing.
struct ReadOptions {
  std::map<uint32_t, uint64_t> after;
  bool partial = false;
  uint64_t After(uint32_t shard) const {
    auto it = after.find(shard);
    return it == after.end() ? 0 : it->second;
  }
};

Result<ReadOptions> ParseReadOptions(const ApiRequest& req) {
  ReadOptions o;
  for (const auto& [key, value] : req.query) {
    if (key == "partial") {
      o.partial = value == "true" || value == "1";
    } else if (key == "read_after") {
      size_t start = 0;
      while (start < value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        const std::string part = value.substr(start, comma - start);
        unsigned shard = 0;
        unsigned long long seq = 0;
        char tail = 0;
        if (std::sscanf(part.c_str(), "%u:%llu%c", &shard, &seq, &tail) != 2) {
          return Status::InvalidArgument(
              "read_after must be SHARD:SEQUENCE,... as a write answered it, got '" + value + "'");
        }
        o.after[shard] = std::max<uint64_t>(o.after[shard], seq);
        start = comma + 1;
      }
    }
  }
  return o;
}

// "0:12,2:9" from shard -> sequence.
std::string ReadAfterToken(const std::map<uint32_t, uint64_t>& seqs) {
  std::string out;
  for (const auto& [s, seq] : seqs) {
    out.append(out.empty() ? "" : ",").append(std::to_string(s) + ":" + std::to_string(seq));
  }
  return out;
}

// A reply from a replica (over NATS or in-process) as a Result: its result JSON, or its error.
Result<std::string> AsResult(const Reply& r) {
  if (r.ok()) return r.result;
  switch (r.http_status) {
    case 400: return Status::InvalidArgument(r.error);
    case 404: return Status::NotFound(r.error);
    case 409: return Status::AlreadyExists(r.error);
    case 503: return Status::Unavailable(r.error);
    case 507: return Status::NoSpace(r.error);
    default: return Status::Internal(r.error);
  }
}

// Tuned search defaults as the metadata and the log carry them (null: none).
Json DefaultsJson(const SearchDefaults& d) {
  if (d.target_recall == 0) return nullptr;
  return Json{{"ef", d.ef},
              {"nprobe", d.nprobe},
              {"checks", d.checks},
              {"target_recall", d.target_recall},
              {"recall", d.recall}};
}
SearchDefaults DefaultsFromJson(const Json& j) {
  SearchDefaults d;
  if (!j.is_object()) return d;
  d.ef = j.value("ef", 0);
  d.nprobe = j.value("nprobe", 0);
  d.checks = j.value("checks", 0);
  d.target_recall = j.value("target_recall", 0.0);
  d.recall = j.value("recall", 0.0);
  return d;
}

// ---- Where a position stands in a shard's log ----------------------------------------------

// kHolds: the log holds every entry after `position` (its epoch's stream goes on from there);
// kNotYet: `position` is at the start of an epoch no writer has begun yet (wait); kEpochDone:
// `position` is the last entry of a full epoch (go on at the next epoch's start, (e + 1, 0));
// kTrimmed: entries after `position` are gone (a peer's snapshot is needed). Unavailable when
// NATS cannot tell.
enum class LogState { kHolds, kNotYet, kEpochDone, kTrimmed };
// `*last_seq` (when given) gets the last sequence of the position's epoch stream, if it exists.
Result<LogState> Locate(Nats* nats, const Meta& m, uint32_t s, uint64_t position,
                        uint64_t* last_seq = nullptr) {
  const uint32_t e = EpochOf(position);
  const uint64_t at = SeqOf(position);
  auto state = nats->GetStreamState(m.Stream(s, e));
  if (state.ok()) {
    if (last_seq != nullptr) *last_seq = state->last_seq;
    if (state->first_seq > at + 1) return LogState::kTrimmed;  // (purged before rotation)
    if (state->max_msgs > 0 && at >= uint64_t(state->max_msgs)) return LogState::kEpochDone;
    return LogState::kHolds;
  }
  if (state.status().code() != Status::Code::kNotFound) return state.status();
  // No stream for the epoch: not begun yet, or deleted (then a later one exists). The listing
  // comes from JetStream's meta leader: a stream that reads as missing while its servers fail
  // over is still listed.
  FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> streams, nats->StreamNames(m.AllSubjects()));
  if (std::find(streams.begin(), streams.end(), m.Stream(s, e)) != streams.end()) {
    return Status::Unavailable(m.Stream(s, e) + " does not answer");
  }
  const std::string prefix = m.Stream(s, 0) + "_E";
  for (const std::string& name : streams) {
    if (name.rfind(prefix, 0) == 0 &&
        std::strtoull(name.c_str() + prefix.size(), nullptr, 10) > e) {
      return LogState::kTrimmed;
    }
  }
  if (at == 0 && e > 0) return LogState::kNotYet;
  return Status::Unavailable("the log of " + m.name + " shard " + std::to_string(s) +
                             " has no stream for epoch " + std::to_string(e));
}

// ---- A replica applying its shard's stream -------------------------------------------------

class Applier {
 public:
  // `on_snapshot_needed` is called (from the applier's thread) when the stream no longer holds
  // the entries after this replica's position: the applier stops, and the node installs a
  // snapshot from a peer.
  // `set_index` makes (type given) or drops (none) a payload index of a local collection: the
  // log's "index" entries.
  using SetIndex = std::function<Status(const std::string& local, const std::string& field,
                                        const std::optional<std::string>& type)>;
  Applier(Nats* nats, std::string node_id, Meta meta, uint32_t shard,
          std::shared_ptr<Collection> local, std::function<void()> on_snapshot_needed,
          SetIndex set_index)
      : nats_(nats),
        node_id_(std::move(node_id)),
        meta_(std::move(meta)),
        shard_(shard),
        local_(std::move(local)),
        on_snapshot_needed_(std::move(on_snapshot_needed)),
        set_index_(std::move(set_index)) {
    done_ = local_->log_position();
    thread_ = std::thread([this] { Run(); });
  }
  ~Applier() { Stop(); }

  // Asks the thread to stop (it notices within a fetch: a second at most) without waiting.
  void RequestStop() {
    stop_.store(true);
    cv_.notify_all();
  }
  void Stop() {
    RequestStop();
    if (thread_.joinable()) thread_.join();
  }

  const Meta& meta() const { return meta_; }
  uint32_t shard() const { return shard_; }
  Collection* collection() const { return local_.get(); }
  uint64_t applied() const { return local_->log_position(); }
  uint64_t last_seq() const { return std::max(last_seq_.load(), applied()); }
  uint64_t apply_errors() const { return apply_errors_.load(); }
  bool needs_snapshot() const { return needs_snapshot_.load(); }
  std::string error() const {
    std::lock_guard lock(mu_);
    return error_;
  }

  // True once the replica has applied `seq`, false at the deadline. `*changed` gets the points
  // the entry changed when this replica applied it recently (else it is left alone).
  bool WaitFor(uint64_t seq, Clock::time_point deadline,
               std::optional<uint64_t>* changed = nullptr) {
    std::unique_lock lock(mu_);
    bool done = cv_.wait_until(lock, deadline, [&] { return stop_.load() || done_ >= seq; }) &&
                done_ >= seq;
    if (done && changed != nullptr) {
      if (auto it = changed_.find(seq); it != changed_.end()) *changed = it->second;
    }
    return done;
  }

 private:
  void SetError(std::string e) {
    std::lock_guard lock(mu_);
    if (!e.empty() && e != error_) spdlog::warn("cluster: {} shard {}: {}", meta_.name, shard_, e);
    error_ = std::move(e);
  }

  // A fresh consumer on the stream of this replica's epoch that starts right after what it has
  // applied (the position in RocksDB, not the consumer's, is the truth: it survives a consumer
  // lost with its server).
  natsSubscription* Subscribe() {
    const uint32_t epoch = EpochOf(applied());
    const uint64_t start = SeqOf(applied()) + 1;
    const std::string stream = meta_.Stream(shard_, epoch);
    const std::string subject = meta_.Subject(shard_, epoch);
    jsErrCode err = jsErrCode(0);
    js_DeleteConsumer(nats_->jetstream(), stream.c_str(), node_id_.c_str(), nullptr, &err);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    so.Config.AckPolicy = js_AckAll;
    // Entries handed to a pull request that expired meanwhile come again after this long.
    so.Config.AckWait = int64_t{5} * 1000 * 1000 * 1000;
    natsSubscription* sub = nullptr;
    err = jsErrCode(0);
    natsStatus s = js_PullSubscribe(&sub, nats_->jetstream(), subject.c_str(), node_id_.c_str(),
                                    nullptr, &so, &err);
    if (s != NATS_OK) {
      SetError(FromNats(s, "subscribing to " + stream, err).ToString());
      return nullptr;
    }
    return sub;
  }

  // Looks where this replica's position stands in the log (and refreshes the stream's last
  // sequence). At the end of a full epoch it records the next epoch's start (kAdvanced: subscribe
  // again, to the next stream); when the log no longer holds the entries after its position
  // (kSnapshot) the replica needs a snapshot, and the applier stops; kWait: no stream to read yet.
  enum class Look { kGoOn, kWait, kAdvanced, kSnapshot };
  Look LookAtLog() {
    const uint64_t at = applied();
    uint64_t last = 0;
    auto where = Locate(nats_, meta_, shard_, at, &last);
    last_seq_.store(std::max(last_seq_.load(), Pos(EpochOf(at), last)));
    if (!where.ok()) {
      SetError("looking at the log: " + where.status().ToString());
      return Look::kGoOn;
    }
    switch (*where) {
      case LogState::kHolds: return Look::kGoOn;
      case LogState::kNotYet: return Look::kWait;
      case LogState::kTrimmed:
        SetError("the log no longer holds the entries after " + PosText(at) +
                 ": installing a snapshot from a peer");
        needs_snapshot_.store(true);
        if (on_snapshot_needed_) on_snapshot_needed_();
        return Look::kSnapshot;
      case LogState::kEpochDone: break;
    }
    const uint64_t next = Pos(EpochOf(at) + 1, 0);
    if (Status st = local_->SkipLogPosition(next); !st.ok()) {
      SetError("starting epoch " + std::to_string(EpochOf(next)) + ": " + st.ToString());
      return Look::kGoOn;
    }
    {
      std::lock_guard lock(mu_);
      done_ = next;
    }
    cv_.notify_all();
    spdlog::debug("cluster: {} shard {}: epoch {} of the log done at entry {}", meta_.name, shard_,
                  EpochOf(at), SeqOf(at));
    return Look::kAdvanced;
  }

  void Run() {
    natsSubscription* sub = nullptr;
    uint32_t sub_epoch = 0;
    int failures = 0;
    bool idle = false;
    uint64_t applied_at_check = 0;
    auto last_check = Clock::now() - std::chrono::hours(1);
    auto resubscribe = [&] {
      natsSubscription_Destroy(sub);
      sub = nullptr;
    };
    while (!stop_.load()) {
      if (sub == nullptr) {
        const Look look = LookAtLog();
        if (look == Look::kSnapshot) {
          stop_.store(true);  // (waiters give up at once: the node installs a snapshot)
          cv_.notify_all();
          break;
        }
        if (look == Look::kAdvanced) continue;
        if (look == Look::kWait) {  // (the next epoch's stream comes with its first write)
          std::unique_lock lock(mu_);
          cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_.load(); });
          continue;
        }
        sub_epoch = EpochOf(applied());
        sub = Subscribe();
        if (sub == nullptr) {
          std::unique_lock lock(mu_);
          cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_.load(); });
          continue;
        }
      }
      natsMsgList list{nullptr, 0};
      jsErrCode err = jsErrCode(0);
      // A fetch of many returns at once only with what is already there; waiting for new
      // entries, it would hold them until the batch fills or the time is up. So: many while
      // behind, one (answered the moment it arrives) while idle.
      natsStatus s =
          natsSubscription_Fetch(&list, sub, idle ? 1 : kFetchBatch, idle ? 1000 : 500, &err);
      idle = s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0);
      if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
        if (s == NATS_OK) natsMsgList_Destroy(&list);
        // Idle: refresh the lag, move on at the end of a full epoch, and make sure the consumer
        // still exists (a NATS server that died may have taken it).
        if (Clock::now() - last_check > std::chrono::seconds(5)) {
          last_check = Clock::now();
          const Look look = LookAtLog();
          if (look == Look::kSnapshot) {
            stop_.store(true);
            cv_.notify_all();
            break;
          }
          if (look == Look::kAdvanced) {
            resubscribe();
            continue;
          }
          // Behind, idle, and no progress since the last look: whatever holds the entries back
          // (ones handed to an expired pull, a consumer a failed-over server lost track of),
          // a fresh consumer from this replica's own position gets them.
          const uint64_t at = applied();
          const bool stalled = at < last_seq_.load() && at == applied_at_check;
          applied_at_check = at;
          if (stalled) {
            SetError("no progress at entry " + PosText(at) + " of " + PosText(last_seq_.load()) +
                     ": subscribing again");
            resubscribe();
            continue;
          }
          jsConsumerInfo* ci = nullptr;
          jsErrCode cerr = jsErrCode(0);
          natsStatus cs =
              js_GetConsumerInfo(&ci, nats_->jetstream(), meta_.Stream(shard_, sub_epoch).c_str(),
                                 node_id_.c_str(), nullptr, &cerr);
          if (cs == NATS_OK) {
            jsConsumerInfo_Destroy(ci);
            if (applied() >= last_seq_.load()) SetError("");
          } else if (cs == NATS_NOT_FOUND || cerr == JSConsumerNotFoundErr) {
            resubscribe();
          }
        }
        continue;
      }
      if (s != NATS_OK) {
        SetError(FromNats(s, "reading the log", err).ToString());
        if (++failures >= 10) {
          resubscribe();
          failures = 0;
        }
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_.load(); });
        continue;
      }
      failures = 0;
      natsMsg* last_done = nullptr;
      bool restart = false;
      for (int i = 0; i < list.Count && !stop_.load(); ++i) {
        natsMsg* msg = list.Msgs[i];
        jsMsgMetaData* md = nullptr;
        if (natsMsg_GetMetaData(&md, msg) != NATS_OK) continue;
        const uint64_t seq = md->Sequence.Stream;  // (in this epoch's stream)
        const uint64_t pending = md->NumPending;
        jsMsgMetaData_Destroy(md);
        const uint64_t position = applied();
        if (EpochOf(position) != sub_epoch) {  // (cannot happen: a full epoch ends the batch)
          restart = true;
          break;
        }
        const uint64_t at = SeqOf(position);
        if (seq <= at) {  // applied before a restart: never twice
          last_done = msg;
          continue;
        }
        if (seq != at + 1) {  // a gap: trimmed entries (a snapshot is needed), or a consumer
          restart = true;     // that skipped (start over right after `at`)
          if (LookAtLog() == Look::kSnapshot) {
            stop_.store(true);
            cv_.notify_all();
          }
          break;
        }
        Status applied_status = Apply(msg, Pos(sub_epoch, seq));
        if (!applied_status.ok()) {  // retryable (disk full, closing): try this entry again
          SetError("applying entry " + PosText(Pos(sub_epoch, seq)) + ": " +
                   applied_status.ToString());
          restart = true;
          break;
        }
        last_done = msg;
        last_seq_.store(std::max(last_seq_.load(), Pos(sub_epoch, seq + pending)));
        cv_.notify_all();
        if (meta_.epoch_entries > 0 && seq >= meta_.epoch_entries) {
          restart = true;  // the epoch is full: on to the next one's stream (LookAtLog)
          break;
        }
      }
      if (last_done != nullptr) natsMsg_Ack(last_done, nullptr);
      natsMsgList_Destroy(&list);
      if (restart) {
        resubscribe();
        if (meta_.epoch_entries > 0 && SeqOf(applied()) >= meta_.epoch_entries) continue;
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_.load(); });
      }
    }
    if (sub != nullptr) natsSubscription_Destroy(sub);
  }

  // Applies one log entry at `seq`. An entry every replica rejects the same way (it was
  // validated before it was published, so only a bug gets here) is recorded as applied with an
  // error logged; anything else (disk full, closing) is returned to be retried.
  Status Apply(natsMsg* msg, uint64_t seq) {
    Result<uint64_t> changed = ApplyEntry(Data(msg), seq);
    Status s = changed.status();
    if (s.ok()) {
      std::lock_guard lock(mu_);
      changed_[seq] = *changed;
      if (changed_.size() > kRememberedResults) changed_.erase(changed_.begin());
      done_ = seq;
      return s;
    }
    const Status::Code c = s.code();
    if (c == Status::Code::kInvalidArgument || c == Status::Code::kNotFound ||
        c == Status::Code::kAlreadyExists || c == Status::Code::kCorruption) {
      apply_errors_.fetch_add(1);
      spdlog::error("cluster: {} shard {}: log entry {} rejected, skipped: {}", meta_.name, shard_,
                    PosText(seq), s.ToString());
      FATHOM_RETURN_IF_ERROR(local_->SkipLogPosition(seq));
      std::lock_guard lock(mu_);
      done_ = seq;
      return Status::OK();
    }
    return s;
  }

  // The points the entry changed.
  Result<uint64_t> ApplyEntry(std::string_view data, uint64_t seq) {
    Json e = Json::parse(data, nullptr, false);
    if (e.is_discarded() || !e.is_object()) return Status::Corruption("log entry is not JSON");
    const std::string op = e.value("op", "");
    if (op == "upsert") {
      std::vector<Record> records;
      for (const Json& p : e.at("points")) {
        Record r;
        FATHOM_ASSIGN_OR_RETURN(r.id, IdFromJson(p.at("id")));
        for (const auto& [name, b64] : p.at("v").items()) {
          FATHOM_RETURN_IF_ERROR(
              server::DecodeBase64Floats(b64.get<std::string>(), "log entry", &r.vectors[name]));
        }
        r.payload = p.at("p").get<std::string>();
        records.push_back(std::move(r));
      }
      FATHOM_RETURN_IF_ERROR(local_->Upsert(records, seq));
      return uint64_t(records.size());
    }
    if (op == "delete") {
      if (e.contains("filter")) return local_->DeleteByFilter(e["filter"].get<std::string>(), seq);
      std::vector<PointId> ids;
      for (const Json& id : e.at("ids")) {
        FATHOM_ASSIGN_OR_RETURN(PointId pid, IdFromJson(id));
        ids.push_back(std::move(pid));
      }
      return local_->Delete(ids, seq);
    }
    if (op == "payload") {
      PayloadUpdate u;
      u.op = static_cast<PayloadUpdate::Op>(e.at("kind").get<int>());
      u.payload = e.value("payload", "");
      u.keys = e.value("keys", std::vector<std::string>());
      u.filter = e.value("filter", "");
      if (e.contains("ids")) {
        for (const Json& id : e["ids"]) {
          FATHOM_ASSIGN_OR_RETURN(PointId pid, IdFromJson(id));
          u.ids.push_back(std::move(pid));
        }
      }
      return local_->UpdatePayload(u, seq);
    }
    if (op == "index") {  // a payload index made or dropped: every replica, in log order
      std::optional<std::string> type;
      if (e.contains("type")) type = e["type"].get<std::string>();
      FATHOM_RETURN_IF_ERROR(
          set_index_(meta_.Local(shard_), e.at("field").get<std::string>(), type));
      // (Not one write with the index: a replay after a crash between them makes it again,
      // which changes nothing.)
      FATHOM_RETURN_IF_ERROR(local_->SkipLogPosition(seq));
      return uint64_t{0};
    }
    if (op == "defaults") {  // tuned search defaults (POST /collections/{name}/tune): every replica
      FATHOM_RETURN_IF_ERROR(local_->StoreSearchDefaults(
          e.value("vector", ""), DefaultsFromJson(e.value("defaults", Json()))));
      FATHOM_RETURN_IF_ERROR(local_->SkipLogPosition(seq));
      return uint64_t{0};
    }
    return Status::Corruption("log entry has unknown op '" + op + "'");
  }

  Nats* const nats_;
  const std::string node_id_;
  const Meta meta_;
  const uint32_t shard_;
  const std::shared_ptr<Collection> local_;
  const std::function<void()> on_snapshot_needed_;
  const SetIndex set_index_;
  std::atomic<bool> needs_snapshot_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> last_seq_{0};
  std::atomic<uint64_t> apply_errors_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string error_;  // guarded by mu_
  std::map<uint64_t, uint64_t>
      changed_;  // entry -> points it changed, the last few; guarded by mu_
  // The last entry applied and accounted (changed_ holds its count): what WaitFor waits for, as
  // the collection's position moves a moment before. Guarded by mu_.
  uint64_t done_ = 0;
  std::thread thread_;
};

// ---- The node ------------------------------------------------------------------------------

class Node final : public server::ServerExtension {
 public:
  Node(server::Api* api, ClusterOptions options) : api_(api), o_(std::move(options)) {}
  ~Node() override { Stop(); }

  Status Start() {
    FATHOM_ASSIGN_OR_RETURN(
        nats_, Nats::Connect(o_.nats_urls, "fathom-" + o_.node_id, std::chrono::seconds(30)));
    const int replicas = int(std::min<size_t>(3, o_.nats_urls.size()));
    // The buckets need a JetStream meta leader: right after the NATS servers start, retry a while.
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    for (;;) {
      auto c = nats_->Bucket(kCollectionsBucket, replicas, std::chrono::seconds(0));
      auto n = c.ok() ? nats_->Bucket(kNodesBucket, replicas, kNodeTtl) : c.status();
      auto d = n.ok() ? nats_->Bucket(kDroppedBucket, replicas,
                                      std::chrono::duration_cast<std::chrono::seconds>(kDroppedTtl))
                      : n.status();
      if (c.ok() && n.ok() && d.ok()) {
        collections_kv_ = std::move(c).value();
        nodes_kv_ = std::move(n).value();
        dropped_kv_ = std::move(d).value();
        // (A bucket just made has no stream leader for a moment: its first write may fail.)
        Status beat = Beat();
        if (beat.ok()) break;
        if (Clock::now() > deadline) return beat;
      } else if (Clock::now() > deadline) {
        return !c.ok() ? c.status() : !n.ok() ? n.status() : d.status();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    {  // what a transfer cut short by a stop left behind
      std::error_code ec;
      fs::remove_all(TransferDir(), ec);
      fs::remove_all(IncomingDir(), ec);
    }
    natsStatus s = natsConnection_Subscribe(&rpc_sub_, nats_->connection(),
                                            RpcSubject(o_.node_id).c_str(), &Node::OnRpc, this);
    FATHOM_RETURN_IF_ERROR(FromNats(s, "subscribing to node requests"));
    for (int i = 0; i < kRpcWorkers; ++i) workers_.emplace_back([this] { RpcWorker(); });
    if (Status r = Reconcile(); !r.ok()) spdlog::warn("cluster: first sync: {}", r.ToString());
    sync_thread_ = std::thread([this] { SyncLoop(); });
    beat_thread_ = std::thread([this] { BeatLoop(); });
    spdlog::info("cluster: node '{}' joined through {}", o_.node_id, o_.nats_urls.front());
    return Status::OK();
  }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(sync_mu_);
      sync_cv_.notify_all();
    }
    if (sync_thread_.joinable()) sync_thread_.join();
    if (beat_thread_.joinable()) beat_thread_.join();
    std::thread rebalance;
    {
      std::lock_guard lock(rebalance_mu_);
      rebalance.swap(rebalance_thread_);
    }
    if (rebalance.joinable()) rebalance.join();  // gives up once stopped_ is set
    if (rpc_sub_ != nullptr) {
      natsSubscription_Unsubscribe(rpc_sub_);
      natsSubscription_Destroy(rpc_sub_);
      rpc_sub_ = nullptr;
    }
    {
      std::lock_guard lock(rpc_mu_);
      rpc_cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
    std::map<std::string, std::future<void>> installs;
    {
      std::lock_guard lock(mu_);
      installs.swap(installs_);
    }
    installs.clear();  // waits for each (they give up once stopped_ is set)
    std::vector<std::future<void>> makers;
    {
      std::lock_guard lock(transfers_mu_);
      makers.swap(makers_);
    }
    makers.clear();  // waits for each
    std::map<std::string, std::shared_ptr<Applier>> appliers;
    {
      std::lock_guard lock(mu_);
      appliers.swap(appliers_);
    }
    for (auto& [local, a] : appliers) a->RequestStop();
    for (auto& [local, a] : appliers) a->Stop();  // joins its thread
    if (nodes_kv_) (void)nodes_kv_->Delete(o_.node_id);
  }

  std::vector<ExtraRoute> Routes() override {
    auto h = [this](Reply (Node::*fn)(const ApiRequest&)) {
      return [this, fn](const ApiRequest& r) { return (this->*fn)(r); };
    };
    std::vector<ExtraRoute> r = {
        {"GET", "/collections", Access::kRead, h(&Node::ListCollections)},
        {"PUT", "/collections/{name}", Access::kWrite, h(&Node::CreateCollection)},
        {"GET", "/collections/{name}", Access::kRead, h(&Node::GetCollection)},
        {"DELETE", "/collections/{name}", Access::kWrite, h(&Node::DropCollection)},
        {"GET", "/collections/{name}/exists", Access::kRead, h(&Node::CollectionExists)},
        {"PUT", "/collections/{name}/points", Access::kWrite, h(&Node::Upsert)},
        {"POST", "/collections/{name}/points", Access::kRead, h(&Node::GetPoints)},
        {"GET", "/collections/{name}/points/{id}", Access::kRead, h(&Node::GetPoint)},
        {"POST", "/collections/{name}/points/delete", Access::kWrite, h(&Node::Delete)},
        {"POST", "/collections/{name}/points/payload", Access::kWrite, h(&Node::SetPayload)},
        {"PUT", "/collections/{name}/points/payload", Access::kWrite, h(&Node::OverwritePayload)},
        {"POST", "/collections/{name}/points/payload/delete", Access::kWrite,
         h(&Node::DeletePayload)},
        {"POST", "/collections/{name}/points/payload/clear", Access::kWrite,
         h(&Node::ClearPayload)},
        {"POST", "/collections/{name}/points/count", Access::kRead, h(&Node::Count)},
        {"POST", "/collections/aliases", Access::kWrite, h(&Node::UpdateAliases)},
        {"GET", "/aliases", Access::kRead, h(&Node::ListAliases)},
        {"GET", "/collections/{name}/aliases", Access::kRead, h(&Node::ListCollectionAliases)},
        {"POST", "/collections/{name}/points/search", Access::kRead, h(&Node::Search)},
        {"POST", "/collections/{name}/points/scroll", Access::kRead, h(&Node::Scroll)},
        {"POST", "/collections/{name}/points/recommend", Access::kRead, h(&Node::Recommend)},
        {"POST", "/collections/{name}/points/recommend/batch", Access::kRead,
         h(&Node::RecommendBatch)},
        {"POST", "/collections/{name}/points/query", Access::kRead, h(&Node::Query)},
        {"POST", "/collections/{name}/points/query/batch", Access::kRead, h(&Node::QueryBatch)},
        {"POST", "/collections/{name}/points/search/batch", Access::kRead, h(&Node::SearchBatch)},
        {"GET", "/cluster", Access::kRead, h(&Node::ClusterStatus)},
        {"POST", "/cluster/collections/{name}/shards/{shard}/replicas", Access::kWrite,
         h(&Node::ChangeReplicas)},
        {"GET", "/cluster/local", Access::kRead, h(&Node::LocalStatus)},
        {"POST", "/cluster/rebalance", Access::kWrite, h(&Node::Rebalance)},
        {"POST", "/cluster/local/{name}/scroll", Access::kRead, h(&Node::LocalScroll)},
        {"POST", "/cluster/local/{name}/points", Access::kRead, h(&Node::LocalPoints)},
        {"PUT", "/collections/{name}/index", Access::kWrite, h(&Node::CreateFieldIndex)},
        {"PATCH", "/collections/{name}", Access::kWrite, h(&Node::UpdateCollection)},
        {"DELETE", "/collections/{name}/index/{field}", Access::kWrite, h(&Node::DeleteFieldIndex)},
        {"POST", "/collections/{name}/tune", Access::kWrite, h(&Node::Tune)},
        {"DELETE", "/collections/{name}/tune", Access::kWrite, h(&Node::ResetTune)},
    };
    // Snapshots: made across the shards; kept, listed, downloaded and deleted on the node that
    // made them, as on a single node.
    r.push_back(
        {"POST", "/collections/{name}/snapshots", Access::kWrite, h(&Node::CreateSnapshot)});
    r.push_back({"GET", "/collections/{name}/snapshots", Access::kRead,
                 [this](const ApiRequest& q) { return api_->ListSnapshots(q); }});
    r.push_back({"PUT", "/collections/{name}/snapshots/recover", Access::kWrite,
                 h(&Node::RecoverSnapshot)});
    r.push_back({"DELETE", "/collections/{name}/snapshots/{snapshot}", Access::kWrite,
                 [this](const ApiRequest& q) { return api_->DeleteSnapshot(q); }});
    r.push_back({"GET", "/collections/{name}/snapshots/{snapshot}", Access::kRead,
                 [this](const ApiRequest& q) { return api_->DownloadSnapshot(q); }});
    return r;
  }

  void RenderMetrics(std::string* out) const override {
    std::lock_guard lock(mu_);
    *out += "# HELP fathom_cluster_nats_connected 1 while the node's NATS connection is up.\n";
    *out += "# TYPE fathom_cluster_nats_connected gauge\n";
    *out += "fathom_cluster_nats_connected " + std::to_string(nats_ && nats_->connected() ? 1 : 0) +
            "\n";
    *out +=
        "# HELP fathom_cluster_live_nodes Nodes with a fresh heartbeat, as this node last saw.\n";
    *out += "# TYPE fathom_cluster_live_nodes gauge\n";
    *out += "fathom_cluster_live_nodes " + std::to_string(live_.size()) + "\n";
    *out += "# HELP fathom_cluster_replica_applied_sequence Last log entry this replica applied.\n";
    *out += "# TYPE fathom_cluster_replica_applied_sequence gauge\n";
    auto labels = [](const Applier& a) {
      return "{collection=\"" + a.meta().name + "\",shard=\"" + std::to_string(a.shard()) + "\"}";
    };
    for (const auto& [local, a] : appliers_) {
      *out += "fathom_cluster_replica_applied_sequence" + labels(*a) + " " +
              std::to_string(a->applied()) + "\n";
    }
    *out +=
        "# HELP fathom_cluster_replica_lag_messages Log entries stored but not yet applied here.\n";
    *out += "# TYPE fathom_cluster_replica_lag_messages gauge\n";
    for (const auto& [local, a] : appliers_) {
      *out += "fathom_cluster_replica_lag_messages" + labels(*a) + " " +
              std::to_string(a->last_seq() - a->applied()) + "\n";
    }
    *out += "# HELP fathom_cluster_replica_points Points in this replica.\n";
    *out += "# TYPE fathom_cluster_replica_points gauge\n";
    for (const auto& [local, a] : appliers_) {
      *out += "fathom_cluster_replica_points" + labels(*a) + " " +
              std::to_string(a->collection()->Count()) + "\n";
    }
    *out +=
        "# HELP fathom_cluster_replica_healthy 0 while the replica reports an error (see GET "
        "/cluster).\n";
    *out += "# TYPE fathom_cluster_replica_healthy gauge\n";
    for (const auto& [local, a] : appliers_) {
      *out += "fathom_cluster_replica_healthy" + labels(*a) + " " +
              std::to_string(a->error().empty() ? 1 : 0) + "\n";
    }
    *out +=
        "# HELP fathom_cluster_snapshots_installed_total Replicas this node installed from a "
        "peer's snapshot (their log was trimmed past them).\n";
    *out += "# TYPE fathom_cluster_snapshots_installed_total counter\n";
    *out += "fathom_cluster_snapshots_installed_total " +
            std::to_string(snapshots_installed_.load()) + "\n";
    *out += "# HELP fathom_cluster_snapshots_sent_total Shard snapshots this node sent to peers.\n";
    *out += "# TYPE fathom_cluster_snapshots_sent_total counter\n";
    *out += "fathom_cluster_snapshots_sent_total " + std::to_string(snapshots_sent_.load()) + "\n";
    *out +=
        "# HELP fathom_cluster_log_entries_trimmed_total Log entries this node removed from "
        "shard streams (applied by every live replica, older than --log-retain).\n";
    *out += "# TYPE fathom_cluster_log_entries_trimmed_total counter\n";
    *out += "fathom_cluster_log_entries_trimmed_total " + std::to_string(entries_trimmed_.load()) +
            "\n";
    *out +=
        "# HELP fathom_cluster_shards_unavailable Shards of which no replica answered this node's "
        "last status round.\n";
    *out += "# TYPE fathom_cluster_shards_unavailable gauge\n";
    *out +=
        "fathom_cluster_shards_unavailable " + std::to_string(unavailable_shards_.load()) + "\n";
  }

 private:
  static std::string RpcSubject(const std::string& node) { return "fathom.rpc." + node; }

  // ---- Background: heartbeat and reconciliation ----

  // Writes this node's heartbeat; with `members`, also reads who else beats.
  Status Beat(bool members = true) {
    Json beat{{"id", o_.node_id},
              {"time", std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count()}};
    if (o_.auto_rebalance.count() > 0) beat["auto_rebalance"] = o_.auto_rebalance.count();
    FATHOM_RETURN_IF_ERROR(nodes_kv_->Put(o_.node_id, beat.dump()));
    if (!members) return Status::OK();
    // (Listing keys costs NATS a temporary consumer: hence not every beat.)
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> keys, nodes_kv_->Keys());
    std::lock_guard lock(mu_);
    live_ = std::set<std::string>(keys.begin(), keys.end());
    return Status::OK();
  }

  void SyncLoop() {
    int round = 0;
    auto next_beat = Clock::now();
    while (!stopped_.load()) {
      bool now = false;
      {
        std::unique_lock lock(sync_mu_);
        sync_cv_.wait_until(lock, next_beat, [&] { return stopped_.load() || reconcile_now_; });
        now = reconcile_now_;
        reconcile_now_ = false;
      }
      if (stopped_.load()) break;
      if (now) {  // another node changed the metadata and said so
        if (Status s = Reconcile(); !s.ok()) spdlog::debug("cluster: sync: {}", s.ToString());
        continue;
      }
      next_beat = Clock::now() + kBeat;
      ++round;
      if (round % 2 == 0) {
        if (Status s = Reconcile(); !s.ok()) spdlog::debug("cluster: sync: {}", s.ToString());
      }
      if (round % kTrimEvery == 0) {  // one status round for both (kTrimEvery: every 5 s)
        const auto statuses = AskStatuses();
        CountUnavailable(statuses);
        TrimLogs(statuses);
        if (o_.auto_rebalance.count() > 0) AutoRebalance();
      }
      if (round % 5 == 0) {
        std::lock_guard lock(transfers_mu_);
        ExpireTransfers();
      }
    }
  }

  // The heartbeat, on a thread of its own: the sync loop's rounds can take seconds (peers that
  // do not answer), and a late beat makes the others think this node is dead.
  void BeatLoop() {
    int round = 0;
    while (!stopped_.load()) {
      {
        std::unique_lock lock(sync_mu_);
        sync_cv_.wait_for(lock, kBeat, [&] { return stopped_.load(); });
      }
      if (stopped_.load()) break;
      ++round;
      if (Status s = Beat(round % 3 == 0); !s.ok())
        spdlog::debug("cluster: heartbeat: {}", s.ToString());
    }
  }

  // Bounded log retention: each shard's log of a collection made with --log-retain N is a chain
  // of streams of N entries (see Pos). For each such shard whose first live replica (in
  // assignment order) is this node, deletes the streams of epochs before the previous one once
  // every live replica has applied them durably (a node whose writes are not fsynced,
  // --durability buffered, says so in its status and stops the deletions of its shards). So
  // the log keeps the last N to 2N entries plus whatever a live replica still needs. A replica
  // that is away meanwhile and comes back to a deleted epoch installs a peer's snapshot. A live
  // replica that does not answer, or holds no applying copy yet, stops the deletions.
  void TrimLogs(const std::map<std::string, std::optional<Json>>& statuses) {
    std::map<std::string, Meta> metas;
    std::set<std::string> live;
    {
      std::lock_guard lock(mu_);
      metas = metas_;
      live = live_;
    }
    auto applied_on = [&](const std::string& node,
                          const std::string& local) -> std::optional<uint64_t> {
      if (node == o_.node_id) {
        if (!o_.durable_applies) return std::nullopt;
        std::lock_guard lock(mu_);
        auto it = appliers_.find(local);
        if (it == appliers_.end() || it->second->needs_snapshot()) return std::nullopt;
        return it->second->applied();
      }
      auto it = statuses.find(node);  // (a node not asked this round: as one that did not answer)
      if (it == statuses.end() || !it->second || !it->second->value("durable", false))
        return std::nullopt;
      for (const Json& sh : (*it->second)["shards"]) {
        if (sh.value("local_name", "") == local && !sh.value("needs_snapshot", false))
          return sh.value("applied", uint64_t{0});
      }
      return std::nullopt;
    };
    for (const auto& [name, m] : metas) {
      if (m.epoch_entries == 0) continue;
      for (uint32_t s = 0; s < m.shards && !stopped_.load(); ++s) {
        const auto& nodes = m.assignment[s];
        auto first_live = std::find_if(nodes.begin(), nodes.end(),
                                       [&](const std::string& n) { return live.count(n) > 0; });
        if (first_live == nodes.end() || *first_live != o_.node_id) continue;
        const uint32_t epoch = m.Epoch(s);
        if (m.FirstEpoch(s) + 1 >= epoch) continue;  // nothing before the previous epoch
        std::optional<uint64_t> least;
        bool all = true;
        for (const std::string& node : nodes) {
          if (!live.count(node)) continue;
          auto applied = applied_on(node, m.Local(s));
          if (!applied) {
            all = false;
            break;
          }
          least = std::min(least.value_or(*applied), *applied);
        }
        if (!all || !least) continue;
        for (uint32_t old = m.FirstEpoch(s); old + 1 < epoch && *least >= Pos(old + 1, 0); ++old) {
          auto gone = nats_->GetStreamState(m.Stream(s, old));
          if (Status st = nats_->DeleteStream(m.Stream(s, old)); !st.ok()) {
            spdlog::debug("cluster: {}", st.ToString());
            break;
          }
          Status recorded = ChangeMeta(m, [&](Meta& now) {
            if (now.first_epochs[s] > old) return false;
            now.first_epochs[s] = old + 1;
            return true;
          });
          if (!recorded.ok()) break;
          if (gone.ok()) entries_trimmed_.fetch_add(gone->messages);
          spdlog::info(
              "cluster: deleted epoch {} of the log of {} shard {} (live replicas applied "
              ">= {})",
              old, name, s, PosText(*least));
        }
      }
    }
  }

  // The epoch after `epoch` of shard s's log, for a writer the full stream of `epoch` refused:
  // makes its stream (if no other writer has yet) and records it in the metadata.
  Result<uint32_t> NextEpoch(const Meta& m, uint32_t s, uint32_t epoch) {
    const uint32_t next = epoch + 1;
    const int stream_replicas = int(std::min<size_t>(m.replication, o_.nats_urls.size()));
    FATHOM_RETURN_IF_ERROR(nats_->EnsureStream(m.Stream(s, next), m.Subject(s, next),
                                               stream_replicas, int64_t(m.epoch_entries)));
    FATHOM_RETURN_IF_ERROR(ChangeMeta(m, [&](Meta& now) {
      if (now.epochs[s] >= next) return false;
      now.epochs[s] = next;
      return true;
    }));
    return next;
  }

  // Compare-and-set of a collection's metadata: `change` edits the current one (false: nothing
  // to change). NotFound when the collection was dropped.
  Status ChangeMeta(const Meta& m, const std::function<bool(Meta&)>& change) {
    for (int attempt = 0;; ++attempt) {
      uint64_t revision = 0;
      FATHOM_ASSIGN_OR_RETURN(auto current, collections_kv_->Get(m.name, &revision));
      if (!current) return Status::NotFound("collection '" + m.name + "' does not exist");
      FATHOM_ASSIGN_OR_RETURN(Meta now, Meta::Decode(*current));
      if (now.gen != m.gen) return Status::NotFound("collection '" + m.name + "' was dropped");
      if (!change(now)) return Status::OK();
      Status written = collections_kv_->Update(m.name, now.Encode(), revision);
      if (written.ok()) break;
      if (written.code() != Status::Code::kFailedPrecondition || attempt == 9) return written;
    }
    Announce(m.name);
    return Status::OK();
  }

  // Makes the local database match the bucket: templates of every collection, replicas of the
  // shards this node holds (each with its applier), nothing of dropped collections.
  Status Reconcile() {
    std::lock_guard reconcile(reconcile_mu_);
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> keys, collections_kv_->Keys());
    std::map<std::string, Meta> fresh;
    for (const std::string& key : keys) {
      FATHOM_ASSIGN_OR_RETURN(auto value, collections_kv_->Get(key));
      if (!value) continue;
      if (key == kAliasesKey) {
        auto aliases = DecodeAliases(*value);
        std::lock_guard lock(mu_);
        aliases_ = std::move(aliases);
        continue;
      }
      auto meta = Meta::Decode(*value);
      if (!meta.ok()) {
        spdlog::error("cluster: collection '{}': {}", key, meta.status().ToString());
        continue;
      }
      fresh.emplace(key, std::move(meta).value());
    }
    std::set<std::string> gens;
    for (const auto& [name, m] : fresh) gens.insert(m.gen);
    {
      std::lock_guard lock(mu_);
      if (std::find(keys.begin(), keys.end(), kAliasesKey) == keys.end()) aliases_.clear();
      metas_ = fresh;  // requests see a drop at once; FindMeta makes a missing template itself
      stale_.clear();
    }
    // Appliers of dropped collections stop first; so do those of replicas moved off this node,
    // whose local copies then go (the metadata names the nodes that keep the shard).
    std::vector<std::shared_ptr<Applier>> stopping;
    std::vector<std::string> moved_off;
    {
      std::lock_guard lock(mu_);
      for (auto it = appliers_.begin(); it != appliers_.end();) {
        const Meta& m = it->second->meta();
        auto now = fresh.find(m.name);
        if (!gens.count(m.gen)) {
          stopping.push_back(std::move(it->second));
          it = appliers_.erase(it);
        } else if (now != fresh.end() && now->second.gen == m.gen &&
                   !now->second.Holds(it->second->shard(), o_.node_id)) {
          moved_off.push_back(it->first);
          stopping.push_back(std::move(it->second));
          it = appliers_.erase(it);
        } else if (it->second->needs_snapshot()) {  // its log was trimmed: installed below
          stopping.push_back(std::move(it->second));
          it = appliers_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& a : stopping) a->RequestStop();  // all at once, then wait for each
    for (auto& a : stopping) a->Stop();         // (a request still holding one finds it stopped)
    stopping.clear();
    for (const std::string& local : moved_off) {
      ApiRequest drop;
      drop.params = {local};
      Reply r = api_->DeleteCollection(drop);
      spdlog::info("cluster: replica '{}' moved off this node, dropped: {}", local,
                   r.ok() ? "ok" : r.error);
    }
    // Local collections of dropped (or never committed) collections go.
    std::erase_if(gone_since_, [&](const auto& g) { return gens.count(g.first) > 0; });
    Reply listed = api_->ListCollections(ApiRequest{});
    if (listed.ok()) {
      Json j = Json::parse(listed.result, nullptr, false);
      if (!j.is_discarded()) {
        for (const Json& c : j["collections"]) {
          std::string local = c.value("name", ""), name, gen;
          int64_t shard = -1;
          if (!ParseLocalName(local, &name, &gen, &shard)) continue;
          if (gens.count(gen)) {
            // A replica of a live collection whose shard this node no longer holds, left by an
            // install that finished after the move, or by a stop between the metadata change
            // and the drop: it goes once nothing applies or installs it.
            auto it = fresh.find(name);
            if (it == fresh.end() || it->second.gen != gen || shard < 0) continue;  // (a template)
            if (shard < int64_t(it->second.shards) && it->second.Holds(uint32_t(shard), o_.node_id))
              continue;
            {
              std::lock_guard lock(mu_);
              if (appliers_.count(local) || installs_.count(local)) continue;
            }
            ApiRequest drop;
            drop.params = {local};
            Reply r = api_->DeleteCollection(drop);
            spdlog::info("cluster: dropped local '{}' (this node no longer holds the shard): {}",
                         local, r.ok() ? "ok" : r.error);
            continue;
          }
          {
            std::lock_guard lock(mu_);
            if (pending_gens_.count(gen)) continue;
          }
          // Only on positive evidence: the drop's tombstone. A listing that merely missed the
          // collection while its log's stream also read as missing (NATS failing over: both
          // happen) must never delete data, as the copy may be the last one of a trimmed log;
          // without a tombstone (a create that never committed, a tombstone expired) that state
          // must hold for kGoneConfirm first.
          auto tombstone = dropped_kv_->Get(gen);
          if (!tombstone.ok()) continue;
          if (!tombstone->has_value()) {
            Meta gone;
            gone.name = name;
            gone.gen = gen;
            auto streams = nats_->StreamNames(gone.AllSubjects());
            if (!streams.ok() || !streams->empty()) {
              gone_since_.erase(gen);
              continue;
            }
            auto since = gone_since_.emplace(gen, Clock::now()).first->second;
            if (Clock::now() - since < kGoneConfirm) continue;
          }
          gone_since_.erase(gen);
          ApiRequest drop;
          drop.params = {local};
          Reply r = api_->DeleteCollection(drop);
          spdlog::info("cluster: dropped local '{}' (its collection is gone): {}", local,
                       r.ok() ? "ok" : r.error);
        }
      }
    }
    // Templates and held replicas.
    for (const auto& [name, m] : fresh) {
      if (Status s = EnsureLocal(m, m.Template()); !s.ok()) {
        spdlog::warn("cluster: template of '{}': {}", name, s.ToString());
        continue;
      }
      if (Status s = SyncTemplate(m); !s.ok()) {
        spdlog::warn("cluster: the template of '{}': {}", name, s.ToString());
      }
      for (uint32_t s = 0; s < m.shards; ++s) {
        if (!m.Holds(s, o_.node_id)) continue;
        const std::string local = m.Local(s);
        {
          std::lock_guard lock(mu_);
          if (appliers_.count(local)) continue;
          if (auto it = installs_.find(local); it != installs_.end()) {
            if (it->second.wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
            installs_.erase(it);  // finished (or failed: tried again now)
          }
        }
        // Behind the start of the trimmed log (a new replica, or one that was away too long):
        // a snapshot from a peer first, on its own thread; the applier starts once it is in.
        const auto existing = api_->LocalCollection(local);
        const uint64_t position = existing.ok() ? (*existing)->log_position() : 0;
        if (auto where = Locate(nats_.get(), m, s, position);
            where.ok() && *where == LogState::kTrimmed) {
          std::lock_guard lock(mu_);
          if (stopped_.load()) break;
          if (auto retry = install_retry_.find(local);
              retry != install_retry_.end() && Clock::now() < retry->second) {
            continue;
          }
          size_t running = 0;
          for (const auto& [other, f] : installs_) {
            running += f.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
          }
          if (running >= kMaxInstalls) continue;  // the next round starts it
          spdlog::info(
              "cluster: replica '{}' is at entry {}{}, before the start of the log: "
              "installing a peer's snapshot",
              local, PosText(position), existing.ok() ? "" : " (no local copy)");
          installs_.emplace(local, std::async(std::launch::async, [this, m, s] {
                              Status st;
                              try {
                                st = InstallSnapshot(m, s);
                              } catch (const std::exception& e) {  // (a peer's odd answer)
                                st = Status::Internal(std::string("installing: ") + e.what());
                              }
                              {
                                std::lock_guard lock(mu_);
                                if (st.ok()) {
                                  install_retry_.erase(m.Local(s));
                                } else {  // after a pause: the peers may be busy or away
                                  install_retry_[m.Local(s)] =
                                      Clock::now() + std::chrono::seconds(3);
                                }
                              }
                              if (!st.ok()) {
                                spdlog::warn("cluster: installing a snapshot of '{}': {}",
                                             m.Local(s), st.ToString());
                              }
                              Poke();  // reconcile now: start the applier
                            }));
          continue;
        }
        if (Status st = EnsureLocal(m, local); !st.ok()) {
          spdlog::warn("cluster: replica '{}': {}", local, st.ToString());
          continue;
        }
        auto c = api_->LocalCollection(local);
        if (!c.ok()) continue;
        auto applier = std::make_shared<Applier>(
            nats_.get(), o_.node_id, m, s, std::move(c).value(), [this] { Poke(); },
            [this](const std::string& local, const std::string& field,
                   const std::optional<std::string>& type) {
              return SetLocalIndex(local, field, type);
            });
        std::lock_guard lock(mu_);
        appliers_.emplace(local, std::move(applier));
      }
    }

    return Status::OK();
  }

  // Makes (type given) or drops a payload index of local collection `local`; the same index
  // again, or dropping one that is not there, changes nothing.
  Status SetLocalIndex(const std::string& local, const std::string& field,
                       const std::optional<std::string>& type) {
    ApiRequest r;
    std::string body;
    if (type) {
      body = Json{{"field_name", field}, {"field_schema", *type}}.dump();
      r.body = body;
      r.params = {local};
      return AsResult(api_->CreateFieldIndex(r)).status();
    }
    r.params = {local, field};
    Reply dropped = api_->DeleteFieldIndex(r);
    if (dropped.http_status == 404 && api_->LocalCollection(local).ok()) return Status::OK();
    return AsResult(dropped).status();
  }

  // The collection's payload indexes as its metadata names them (field -> type name).
  static std::map<std::string, std::string> MetaIndexes(const Meta& m) {
    std::map<std::string, std::string> out;
    auto it = m.body.find("indexed_fields");
    if (it == m.body.end() || !it->is_object()) return out;
    for (const auto& [field, type] : it->items()) {
      if (type.is_string()) out[field] = type.get<std::string>();
    }
    return out;
  }

  // The template (what GET /collections shows, and what checks writes) gets the payload
  // indexes and the user metadata the collection's metadata entry names; the replicas get their
  // indexes from the log (and need no user metadata).
  Status SyncTemplate(const Meta& m) {
    FATHOM_ASSIGN_OR_RETURN(auto t, api_->LocalCollection(m.Template()));
    Json wanted = m.body.value("metadata", Json::object());
    if (!wanted.is_object()) wanted = Json::object();
    if (const std::string text = t->metadata(); text != wanted.dump()) {
      Json patch = wanted;  // Qdrant's merge, with a null for each key to remove
      Json have = Json::parse(text, nullptr, false);
      if (have.is_object()) {
        for (const auto& [key, value] : have.items()) {
          if (!wanted.contains(key)) patch[key] = nullptr;
        }
      }
      ApiRequest r;
      const std::string body = Json{{"metadata", patch}}.dump();
      r.body = body;
      r.params = {m.Template()};
      FATHOM_RETURN_IF_ERROR(AsResult(api_->UpdateCollection(r)).status());
    }
    for (const VectorSpec& v : t->spec().vectors) {
      const Json want = m.search_defaults.value(v.name, Json());
      if (DefaultsJson(t->search_defaults(v.name)) != DefaultsJson(DefaultsFromJson(want)))
        FATHOM_RETURN_IF_ERROR(t->StoreSearchDefaults(v.name, DefaultsFromJson(want)));
    }
    const auto want = MetaIndexes(m);
    const auto have = t->spec().indexed_fields;
    for (const auto& [field, type] : want) {
      auto it = have.find(field);
      if (it == have.end() || type != FieldTypeName(it->second))
        FATHOM_RETURN_IF_ERROR(SetLocalIndex(m.Template(), field, type));
    }
    for (const auto& [field, type] : have) {
      if (!want.count(field))
        FATHOM_RETURN_IF_ERROR(SetLocalIndex(m.Template(), field, std::nullopt));
    }
    return Status::OK();
  }

  Status EnsureLocal(const Meta& m, const std::string& local) {
    if (api_->LocalCollection(local).ok()) return Status::OK();
    ApiRequest create;
    create.body = "";
    std::string body = m.body.dump();
    create.body = body;
    create.params = {local};
    Reply r = api_->CreateCollection(create);
    if (r.ok() || r.http_status == 409) return Status::OK();
    return AsResult(r).status();
  }

  // The status of each of `nodes`, asked all at once (2 s to answer).
  std::map<std::string, Result<Json>> AskNodes(const std::set<std::string>& nodes) {
    std::map<std::string, std::future<Result<Json>>> asked;
    for (const std::string& n : nodes) {
      asked.emplace(n, std::async(std::launch::async,
                                  [this, n] { return NodeStatus(n, std::chrono::seconds(2)); }));
    }
    std::map<std::string, Result<Json>> out;
    for (auto& [n, f] : asked) out.emplace(n, f.get());
    return out;
  }

  // The status of every other node that holds a replica (nullopt: no answer): one round serves
  // the metrics and the log trim.
  std::map<std::string, std::optional<Json>> AskStatuses() {
    std::set<std::string> nodes;
    {
      std::lock_guard lock(mu_);
      for (const auto& [name, m] : metas_) {
        for (const auto& replicas : m.assignment) nodes.insert(replicas.begin(), replicas.end());
      }
    }
    nodes.erase(o_.node_id);
    std::map<std::string, std::optional<Json>> out;
    for (auto& [n, st] : AskNodes(nodes)) {
      out.emplace(n, st.ok() ? std::optional<Json>(std::move(st).value()) : std::nullopt);
    }
    return out;
  }

  // Counts shards with no replica answering (for /metrics).
  void CountUnavailable(const std::map<std::string, std::optional<Json>>& statuses) {
    std::map<std::string, Meta> metas;
    {
      std::lock_guard lock(mu_);
      metas = metas_;
    }
    size_t unavailable = 0;
    for (const auto& [name, m] : metas) {
      for (uint32_t s = 0; s < m.shards; ++s) {
        bool any = false;
        for (const std::string& node : m.assignment[s]) {
          auto it = statuses.find(node);
          any = any || node == o_.node_id || (it != statuses.end() && it->second.has_value());
        }
        if (!any) ++unavailable;
      }
    }
    unavailable_shards_.store(unavailable);
  }

  // ---- Node-to-node requests ----

  static void OnRpc(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<Node*>(closure);
    std::unique_lock lock(self->rpc_mu_);
    if (self->rpc_queue_.size() >= kMaxQueuedRpcs) {
      lock.unlock();
      (void)self->nats_->Respond(msg, "too many requests queued", {{"Fathom-Status", "503"}});
      natsMsg_Destroy(msg);
      return;
    }
    self->rpc_queue_.emplace_back(msg);
    self->rpc_cv_.notify_one();
  }

  void RpcWorker() {
    for (;;) {
      MsgPtr msg;
      {
        std::unique_lock lock(rpc_mu_);
        rpc_cv_.wait(lock, [&] { return stopped_.load() || !rpc_queue_.empty(); });
        if (rpc_queue_.empty()) return;
        msg = std::move(rpc_queue_.front());
        rpc_queue_.pop_front();
      }
      const std::string op = Header(msg.get(), "Fathom-Op");
      const std::string local = Header(msg.get(), "Fathom-Local");
      const std::string extra = Header(msg.get(), "Fathom-Arg");
      const uint64_t after = std::strtoull(Header(msg.get(), "Fathom-After").c_str(), nullptr, 10);
      Reply r = RunLocal(op, local, std::string(Data(msg.get())), extra, after);
      const std::string& data = r.ok() ? r.result : r.error;
      (void)nats_->Respond(msg.get(), data, {{"Fathom-Status", std::to_string(r.http_status)}});
    }
  }

  // One operation on a replica this node holds (asked over NATS or by this node itself).
  // `after` > 0: answer only once this replica has applied that entry (a 503 after the request
  // timeout, so the caller tries another replica).
  Reply RunLocal(const std::string& op, const std::string& local, const std::string& body,
                 const std::string& arg, uint64_t after = 0) {
    if (op == "status") return Reply::Ok(StatusJson(false).dump());
    if (op == "forget") {  // `local` is a collection whose metadata changed: re-read it now
      if (local ==
          kAliasesKey) {  // (the aliases at once: a switch is seen by every node when it answers)
        if (auto aliases = ReadAliases(); aliases.ok()) {
          std::lock_guard lock(mu_);
          aliases_ = std::move(aliases).value();
        }
      }
      Forget(local);
      return Reply::Ok("true");
    }
    if (op == "snapshot_info" || op == "snapshot_read" || op == "snapshot_done") {
      return ServeTransfer(op, arg);
    }
    std::shared_ptr<Applier> a;
    {
      std::lock_guard lock(mu_);
      auto it = appliers_.find(local);
      if (it != appliers_.end()) a = it->second;
    }
    if (a == nullptr)
      return Reply::Error(503, "node '" + o_.node_id + "' holds no replica '" + local + "' (yet)");
    if (a->needs_snapshot()) {
      return Reply::Error(503, "node '" + o_.node_id + "' is behind the log of '" + local +
                                   "' and installs a snapshot");
    }
    if (op == "snapshot_make") return MakeTransfer(a);
    if (op == "wait") {
      const uint64_t seq = std::strtoull(arg.c_str(), nullptr, 10);
      const auto deadline =
          Clock::now() + std::chrono::milliseconds(std::strtoull(body.c_str(), nullptr, 10));
      std::optional<uint64_t> changed;
      if (a->WaitFor(seq, deadline, &changed)) {
        Json answer{{"applied", a->applied()}};
        if (changed) answer["changed"] = *changed;
        return Reply::Ok(answer.dump());
      }
      return Reply::Error(
          503, "replica '" + local + "' has not applied entry " + std::to_string(seq) + " yet");
    }
    if (after > 0 && !a->WaitFor(after, Clock::now() + o_.request_timeout / 2)) {
      return Reply::Error(
          503, "replica '" + local + "' has not applied entry " + std::to_string(after) + " yet");
    }
    ApiRequest req;
    req.body = body;
    req.params = {local};
    if (op == "search") return api_->Search(req);
    if (op == "search_batch") return api_->SearchBatch(req);
    if (op == "count") return api_->CountPoints(req);
    if (op == "scroll") return api_->ScrollPoints(req);
    if (op == "recommend") return api_->Recommend(req);
    if (op == "query") return api_->Query(req);
    if (op == "get") return api_->GetPoints(req);
    if (op == "tune") return api_->Tune(req);  // (the caller sends "store": false)
    if (op == "point") {
      req.params.push_back(arg);
      return api_->GetPoint(req);
    }
    return Reply::Error(400, "unknown node request '" + op + "'");
  }

  // ---- Shard snapshots: sending one to a peer ----
  //
  // A peer installing a replica asks: snapshot_make (answers an id at once; the snapshot and
  // its archive are made on a thread), snapshot_info until it is ready (size, CRC-32, the log
  // position it holds), snapshot_read for each piece, snapshot_done. An archive nobody reads for
  // kTransferIdle is removed.

  std::string TransferDir() const { return api_->data_dir() + "/cluster-transfers"; }
  std::string IncomingDir() const { return api_->data_dir() + "/cluster-incoming"; }

  void ExpireTransfers() {  // caller holds transfers_mu_
    std::error_code ec;
    for (auto it = transfers_.begin(); it != transfers_.end();) {
      if (it->second.ready || !it->second.error.empty()) {
        if (Clock::now() - it->second.touched > kTransferIdle) {
          fs::remove(it->second.path, ec);
          it = transfers_.erase(it);
          continue;
        }
      }
      ++it;
    }
    std::erase_if(makers_, [](std::future<void>& f) {
      return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    });
  }

  Reply MakeTransfer(const std::shared_ptr<Applier>& a) {
    const std::string local = a->meta().Local(a->shard());
    std::lock_guard lock(transfers_mu_);
    ExpireTransfers();
    if (transfers_.size() >= kMaxTransfers) {
      return Reply::Error(503, "node '" + o_.node_id + "' is sending " +
                                   std::to_string(transfers_.size()) + " snapshots already");
    }
    const std::string id = local + "." + RandomHex(8);
    Transfer& t = transfers_[id];
    t.local = local;
    t.path = TransferDir() + "/" + id + ".tar";
    t.touched = Clock::now();
    makers_.push_back(std::async(std::launch::async, [this, a, id] {
      const std::string dir = TransferDir() + "/" + id;
      const std::string archive = TransferDir() + "/" + id + ".tar";
      std::error_code ec;
      fs::create_directories(TransferDir(), ec);
      Status st = a->collection()->Snapshot(dir);
      uint64_t position = 0;
      if (st.ok()) {
        auto text = ReadFile(dir + "/log_position");
        position = text.ok() ? std::strtoull(text->c_str(), nullptr, 10) : 0;
        st = server::WriteSnapshotArchive(dir, archive);
      }
      fs::remove_all(dir, ec);
      uint64_t size = 0;
      uint32_t crc = 0;
      if (st.ok()) {
        std::ifstream in(archive, std::ios::binary);
        std::string buffer(kSnapshotChunk, '\0');
        while (in) {
          in.read(buffer.data(), std::streamsize(buffer.size()));
          const size_t n = size_t(in.gcount());
          crc = Crc32Update(crc, buffer.data(), n);
          size += n;
        }
        if (!in.eof()) st = Status::IOError("cannot read '" + archive + "'");
      }
      std::lock_guard lock(transfers_mu_);
      auto it = transfers_.find(id);
      if (it == transfers_.end() || it->second.cancelled) {  // the peer gave up meanwhile
        fs::remove(archive, ec);
        if (it != transfers_.end()) transfers_.erase(it);
        return;
      }
      it->second.touched = Clock::now();
      if (!st.ok()) {
        it->second.error = st.ToString();
        fs::remove(archive, ec);
        return;
      }
      it->second.ready = true;
      it->second.size = size;
      it->second.crc = crc;
      it->second.log_position = position;
      spdlog::info("cluster: snapshot of '{}' at entry {} made for a peer ({} bytes)",
                   it->second.local, position, size);
    }));
    return Reply::Ok(id);
  }

  Reply ServeTransfer(const std::string& op, const std::string& arg) {
    // arg: "ID" or, for snapshot_read, "ID OFFSET".
    const size_t space = arg.find(' ');
    const std::string id = arg.substr(0, space);
    std::lock_guard lock(transfers_mu_);
    auto it = transfers_.find(id);
    if (it == transfers_.end())
      return Reply::Error(404, "node '" + o_.node_id + "' has no snapshot transfer '" + id + "'");
    Transfer& t = it->second;
    t.touched = Clock::now();
    if (op == "snapshot_done") {
      if (!t.ready && t.error.empty()) {  // still being made: its maker removes it
        t.cancelled = true;
        return Reply::Ok("true");
      }
      std::error_code ec;
      fs::remove(t.path, ec);
      if (t.ready) snapshots_sent_.fetch_add(1);
      transfers_.erase(it);
      return Reply::Ok("true");
    }
    if (op == "snapshot_info") {
      Json j{{"ready", t.ready}};
      if (!t.error.empty()) j["error"] = t.error;
      if (t.ready) {
        j["size"] = t.size;
        j["crc32"] = t.crc;
        j["log_position"] = t.log_position;
      }
      return Reply::Ok(j.dump());
    }
    if (!t.ready || t.cancelled)
      return Reply::Error(409, "snapshot transfer '" + id + "' is not ready");
    const uint64_t offset =
        space == std::string::npos ? 0 : std::strtoull(arg.c_str() + space + 1, nullptr, 10);
    if (offset > t.size) return Reply::Error(400, "offset past the end of the snapshot");
    std::ifstream in(t.path, std::ios::binary);
    std::string piece(std::min<uint64_t>(kSnapshotChunk, t.size - offset), '\0');
    in.seekg(std::streamoff(offset));
    in.read(piece.data(), std::streamsize(piece.size()));
    if (!in) return Reply::Error(500, "cannot read snapshot '" + t.path + "'");
    return Reply::Ok(std::move(piece));
  }

  // ---- Shard snapshots: installing one from a peer ----

  // Replaces this node's copy of shard `s` (stale, or none) with a snapshot from a replica that
  // holds the entries the trimmed log no longer has; the applier then goes on from the
  // snapshot's position. Tries the replicas in read order.
  Status InstallSnapshot(const Meta& m, uint32_t s) {
    std::string tried;
    for (const std::string& peer : ReplicaOrder(m, s)) {
      if (peer == o_.node_id) continue;
      if (stopped_.load()) return Status::Unavailable("the node is stopping");
      Status st = InstallFrom(peer, m, s);
      if (st.ok()) return st;
      tried.append(tried.empty() ? "" : "; ").append(peer + ": " + st.message());
    }
    return Status::Unavailable("no replica of shard " + std::to_string(s) + " of '" + m.name +
                               "' sent a usable snapshot (" +
                               (tried.empty() ? "there is no other replica" : tried) + ")");
  }

  Status InstallFrom(const std::string& peer, const Meta& m, uint32_t s) {
    const std::string local = m.Local(s);
    const std::string unpacked = IncomingDir() + "/" + local;
    RemoveOnExit cleanup({unpacked});
    std::error_code ec;
    fs::remove_all(unpacked, ec);
    uint64_t size = 0;
    // (the archive, what it unpacks to and the imported copy are on disk at once)
    FATHOM_ASSIGN_OR_RETURN(
        const uint64_t position,
        FetchShard(peer, m, s, unpacked, 3, &size, [&](uint64_t position) -> Status {
          FATHOM_ASSIGN_OR_RETURN(LogState where, Locate(nats_.get(), m, s, position));
          if (where == LogState::kTrimmed) {
            return Status::Unavailable("its replica is at entry " + PosText(position) +
                                       ", before the start of the log");
          }
          return Status::OK();
        }));
    // The stale copy goes, the snapshot takes its name. (Between the two the node holds no copy
    // of the shard; reads go to the other replicas, as they do while nothing applies here.)
    if (api_->LocalCollection(local).ok()) {
      ApiRequest drop;
      drop.params = {local};
      Reply r = api_->DeleteCollection(drop);
      if (!r.ok() && r.http_status != 404) return AsResult(r).status();
    }
    FATHOM_RETURN_IF_ERROR(api_->RestoreLocal(unpacked, local));
    snapshots_installed_.fetch_add(1);
    spdlog::info("cluster: replica '{}' installed from {}'s snapshot at entry {} ({} bytes)", local,
                 peer, PosText(position), size);
    return Status::OK();
  }

  // Has `peer` make a snapshot of its replica of shard s, fetches it in pieces (CRC-32 checked)
  // and unpacks it into `dir` (which must not exist); returns the log position it holds.
  // `accept` sees the position before the transfer and may refuse it; `room` is how many times
  // the archive's size must be free on disk (`*size` gets that size).
  Result<uint64_t> FetchShard(const std::string& peer, const Meta& m, uint32_t s,
                              const std::string& dir, int room, uint64_t* size,
                              const std::function<Status(uint64_t)>& accept) {
    const std::string local = m.Local(s);
    FATHOM_ASSIGN_OR_RETURN(const std::string id,
                            Call(peer, "snapshot_make", local, "", "", std::chrono::seconds(2)));
    struct Done {  // tells the peer to drop its archive, however this ends
      Node* node;
      std::string peer, local, id;
      ~Done() { (void)node->Call(peer, "snapshot_done", local, "", id, std::chrono::seconds(1)); }
    } done{this, peer, local, id};
    // Wait until it is made (a node that stops answering is given up after a few tries).
    Json info;
    int misses = 0;
    const auto deadline = Clock::now() + std::chrono::minutes(30);
    for (;;) {
      if (stopped_.load()) return Status::Unavailable("the node is stopping");
      auto r = Call(peer, "snapshot_info", local, "", id, std::chrono::seconds(2));
      if (!r.ok()) {
        if (r.status().code() != Status::Code::kUnavailable || ++misses >= 5) return r.status();
      } else {
        misses = 0;
        info = Json::parse(*r, nullptr, false);
        if (!info.is_object()) return Status::Internal("snapshot info is not JSON");
        if (info.contains("error")) return Status::Internal(info["error"].get<std::string>());
        if (info.value("ready", false)) break;
      }
      if (Clock::now() > deadline) return Status::Unavailable("the snapshot took too long");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    const uint64_t position = info.at("log_position").get<uint64_t>();
    *size = info.at("size").get<uint64_t>();
    const uint32_t crc = info.at("crc32").get<uint32_t>();
    FATHOM_RETURN_IF_ERROR(accept(position));
    std::error_code ec;
    fs::create_directories(IncomingDir(), ec);
    static std::atomic<uint64_t> counter{0};
    const std::string archive =
        IncomingDir() + "/" + local + "-" + std::to_string(counter.fetch_add(1)) + ".tar";
    RemoveOnExit cleanup({archive});
    FATHOM_RETURN_IF_ERROR(CheckFreeSpace(IncomingDir(), room * *size, kTransferReserve));
    {
      std::ofstream out(archive, std::ios::binary | std::ios::trunc);
      uint32_t got = 0;
      uint64_t offset = 0;
      misses = 0;
      while (offset < *size) {
        if (stopped_.load()) return Status::Unavailable("the node is stopping");
        auto piece = Call(peer, "snapshot_read", local, "", id + " " + std::to_string(offset),
                          std::chrono::seconds(5));
        if (!piece.ok()) {
          if (piece.status().code() != Status::Code::kUnavailable || ++misses >= 3)
            return piece.status();
          continue;
        }
        misses = 0;
        if (piece->empty())
          return Status::Internal("empty snapshot piece at " + std::to_string(offset));
        got = Crc32Update(got, piece->data(), piece->size());
        out.write(piece->data(), std::streamsize(piece->size()));
        offset += piece->size();
      }
      out.close();
      if (!out) return Status::IOError("cannot write '" + archive + "' (disk full?)");
      if (got != crc) return Status::Corruption("the snapshot's checksum does not match");
    }
    FATHOM_RETURN_IF_ERROR(server::ExtractSnapshotArchive(archive, dir));
    return position;
  }

  // Makes the sync run now.
  void Poke() {
    std::lock_guard lock(sync_mu_);
    reconcile_now_ = true;
    sync_cv_.notify_all();
  }

  // Drops the synced copy of collection `name` (the next request reads the bucket) and makes the
  // sync run now.
  void Forget(const std::string& name) {
    {
      std::lock_guard lock(mu_);
      // Requests read it from the bucket until the sync refreshes it (it stays listed: GET
      // /cluster must not drop a collection whose metadata just changed, e.g. a new log epoch).
      stale_.insert(name);
    }
    std::lock_guard lock(sync_mu_);
    reconcile_now_ = true;
    sync_cv_.notify_all();
  }

  // Tells every live node that collection `name`'s metadata changed, and waits (up to a second)
  // for each to forget its copy: a request any node answers after a drop sees the drop.
  void Announce(const std::string& name) {
    std::set<std::string> live;
    {
      std::lock_guard lock(mu_);
      live = live_;
    }
    std::vector<std::future<Result<std::string>>> asked;
    for (const std::string& node : live) {
      asked.push_back(std::async(std::launch::async, [this, node, name] {
        return Call(node, "forget", name, "", "", std::chrono::seconds(1));
      }));
    }
    for (auto& f : asked) (void)f.get();
  }

  // `op` on `node` (in-process when it is this node).
  Result<std::string> Call(const std::string& node, const std::string& op, const std::string& local,
                           const std::string& body, const std::string& arg,
                           std::chrono::milliseconds timeout, uint64_t after = 0) {
    if (node == o_.node_id) return AsResult(RunLocal(op, local, body, arg, after));
    FATHOM_ASSIGN_OR_RETURN(
        MsgPtr reply, nats_->Request(RpcSubject(node), body,
                                     {{"Fathom-Op", op},
                                      {"Fathom-Local", local},
                                      {"Fathom-Arg", arg},
                                      {"Fathom-After", after > 0 ? std::to_string(after) : ""}},
                                     timeout));
    Reply r = Reply::Ok(std::string(Data(reply.get())));
    const std::string status = Header(reply.get(), "Fathom-Status");
    if (status.empty())
      return Status::Unavailable("node '" + node + "' sent an answer without a status");
    r.http_status = std::atoi(status.c_str());
    if (!r.ok()) r.error = std::move(r.result);
    return AsResult(r);
  }

  Result<Json> NodeStatus(const std::string& node, std::chrono::milliseconds timeout) {
    FATHOM_ASSIGN_OR_RETURN(std::string text, Call(node, "status", "", "", "", timeout));
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded())
      return Status::Internal("node '" + node + "' sent a status that is not JSON");
    return j;
  }

  // The replicas of shard `s` in the order to ask them: this node, then live ones (rotating,
  // to spread the load), then the rest (their heartbeat may just be late).
  std::vector<std::string> ReplicaOrder(const Meta& m, uint32_t s) {
    std::vector<std::string> self, live, rest;
    std::lock_guard lock(mu_);
    for (const std::string& node : m.assignment[s]) {
      if (node == o_.node_id) {
        if (appliers_.count(m.Local(s)))
          self.push_back(node);
        else
          rest.push_back(node);
      } else if (live_.count(node)) {
        live.push_back(node);
      } else {
        rest.push_back(node);
      }
    }
    if (!live.empty())
      std::rotate(live.begin(), live.begin() + (rotation_++ % live.size()), live.end());
    self.insert(self.end(), live.begin(), live.end());
    self.insert(self.end(), rest.begin(), rest.end());
    return self;
  }

  // `op` on one replica of shard `s`: the first that answers; errors that are the request's own
  // (400, 404 of a point) come back at once, unavailable replicas are skipped.
  Result<std::string> AskShard(const Meta& m, uint32_t s, const std::string& op,
                               const std::string& body, const std::string& arg = "",
                               const ReadOptions& read = {},
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    std::string tried;
    for (const std::string& node : ReplicaOrder(m, s)) {
      auto r = Call(node, op, m.Local(s), body, arg, timeout.value_or(o_.request_timeout),
                    read.After(s));
      if (r.ok() || r.status().code() != Status::Code::kUnavailable) return r;
      tried.append(tried.empty() ? "" : "; ").append(node + ": " + r.status().message());
    }
    return Status::Unavailable("shard " + std::to_string(s) + " of collection '" + m.name +
                               "' has no replica answering (" + tried + ")");
  }

  // `op` on every shard at once; the answers in shard order.
  // Shards this node holds are asked in this thread, one after another (concurrent requests
  // already keep the cores busy: threads per request would only add their cost); the others on
  // their own threads, so that their network waits overlap.
  // With read.partial, shards no replica answers for are left out and named in `*missing`.
  Result<std::vector<std::string>> AskAll(const Meta& m, const std::string& op,
                                          const std::string& body, const ReadOptions& read = {},
                                          std::vector<uint32_t>* missing = nullptr) {
    std::vector<std::optional<Result<std::string>>> answers(m.shards);
    std::vector<std::pair<uint32_t, std::future<Result<std::string>>>> remote;
    std::vector<uint32_t> local;
    {
      std::lock_guard lock(mu_);
      for (uint32_t s = 0; s < m.shards; ++s) {
        if (appliers_.count(m.Local(s))) local.push_back(s);
      }
    }
    for (uint32_t s = 0; s < m.shards; ++s) {
      if (std::find(local.begin(), local.end(), s) == local.end()) {
        remote.emplace_back(s, std::async(std::launch::async,
                                          [&, s] { return AskShard(m, s, op, body, "", read); }));
      }
    }
    for (uint32_t s : local) answers[s] = AskShard(m, s, op, body, "", read);
    for (auto& [s, f] : remote) answers[s] = f.get();
    std::vector<std::string> out;
    Status first_error;
    for (uint32_t s = 0; s < m.shards; ++s) {
      Result<std::string> r = std::move(*answers[s]);
      if (!r.ok()) {
        if (read.partial && missing != nullptr && r.status().code() == Status::Code::kUnavailable) {
          missing->push_back(s);
        } else if (first_error.ok()) {
          first_error = r.status();
        }
        continue;
      }
      out.push_back(std::move(r).value());
    }
    if (!first_error.ok()) return first_error;
    return out;
  }

  // ---- Metadata access ----

  // From the copy the sync keeps (at most a second old), else from the bucket; `name` may be
  // an alias.
  Result<Meta> FindMeta(const std::string& name_or_alias) {
    std::optional<Meta> cached;
    std::string name = name_or_alias;
    {
      std::lock_guard lock(mu_);
      if (auto a = aliases_.find(name); a != aliases_.end()) name = a->second;
      if (auto it = metas_.find(name); it != metas_.end() && !stale_.count(name))
        cached = it->second;
    }
    if (cached) {
      FATHOM_RETURN_IF_ERROR(EnsureLocal(*cached, cached->Template()));
      FATHOM_RETURN_IF_ERROR(SyncTemplate(*cached));  // (mostly nothing to do: two compares)
      return std::move(*cached);
    }
    FATHOM_RETURN_IF_ERROR(server::ValidateName(name, "collection name"));
    FATHOM_ASSIGN_OR_RETURN(auto value, collections_kv_->Get(name));
    if (!value) return Status::NotFound("collection '" + name + "' does not exist");
    FATHOM_ASSIGN_OR_RETURN(Meta m, Meta::Decode(*value));
    // The template validates writes: make sure this node has it (a collection made a moment
    // ago on another node may not have reached this node's sync yet).
    FATHOM_RETURN_IF_ERROR(EnsureLocal(m, m.Template()));
    FATHOM_RETURN_IF_ERROR(SyncTemplate(m));  // (a payload index made a moment ago, say)
    return m;
  }

  // The metric of the vector a search names (its score order: higher is better for ip/cosine).
  Result<bool> HigherIsBetter(const Meta& m, const Json& search) {
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> t, api_->LocalCollection(m.Template()));
    const CollectionSpec& spec = t->spec();
    std::string name;
    if (auto v = search.find("vector");
        v != search.end() && v->is_object() && v->contains("name")) {
      name = (*v)["name"].is_string() ? (*v)["name"].get<std::string>() : "";
    } else if (spec.vectors.size() == 1) {
      name = spec.vectors[0].name;
    }
    auto higher = [](Metric metric) {
      return metric != Metric::kL2 && metric != Metric::kL1;
    };  // (distances)
    for (const VectorSpec& vs : spec.vectors) {
      if (vs.name == name) return higher(vs.metric);
    }
    return higher(spec.vectors.front().metric);
  }

  // ---- Handlers: collections ----

  Reply ListCollections(const ApiRequest&) {
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> keys, collections_kv_->Keys());
    std::sort(keys.begin(), keys.end());
    Json list = Json::array();
    for (const std::string& k : keys) {
      if (k != kAliasesKey) list.push_back(Json{{"name", k}});
    }
    return Reply::Ok(Json{{"collections", list}}.dump());
  }

  Reply CreateCollection(const ApiRequest& req) {
    const std::string& name = req.params.at(0);
    FATHOM_RETURN_IF_ERROR(server::ValidateName(name, "collection name"));
    if (name == kAliasesKey)
      return Status::InvalidArgument("'" + name + "' is reserved in cluster mode");
    {
      std::lock_guard lock(mu_);
      if (aliases_.count(name))
        return Status::AlreadyExists("'" + name + "' is an alias; delete it first");
    }
    if (name.size() > 48) {
      return Status::InvalidArgument("collection name '" + name +
                                     "' is longer than 48 characters (the cluster's limit)");
    }
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    if (!body.is_object())
      return Status::InvalidArgument("the create-collection request must be a JSON object");
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> live,
                            nodes_kv_->Keys());  // fresh, not the cached set
    if (live.empty()) return Status::Unavailable("no live node is registered yet");
    auto take = [&](const char* field, uint64_t fallback) -> Result<uint64_t> {
      auto it = body.find(field);
      if (it == body.end() || it->is_null()) return fallback;
      if (!it->is_number_unsigned() || *it == 0 || *it > 1024) {
        return Status::InvalidArgument(std::string("field '") + field +
                                       "' must be an integer from 1 to 1024");
      }
      uint64_t v = it->get<uint64_t>();
      body.erase(it);
      return v;
    };
    FATHOM_ASSIGN_OR_RETURN(uint64_t shards, take("shard_number", live.size()));
    FATHOM_ASSIGN_OR_RETURN(uint64_t replication,
                            take("replication_factor", std::min<size_t>(3, live.size())));
    body.erase("write_consistency_factor");
    if (replication > live.size()) {
      std::string names;
      for (const auto& n : live) names.append(names.empty() ? "" : ", ").append(n);
      return Status::InvalidArgument("replication_factor " + std::to_string(replication) +
                                     " needs " + std::to_string(replication) + " live nodes; " +
                                     std::to_string(live.size()) + " are up (" + names + ")");
    }
    if (auto existing = collections_kv_->Get(name); existing.ok() && existing->has_value()) {
      return Status::AlreadyExists("collection '" + name + "' already exists");
    }
    Meta m;
    m.name = name;
    m.gen = RandomHex(8);
    m.shards = uint32_t(shards);
    m.replication = uint32_t(replication);
    // (fixed for the collection's life: every epoch's stream takes this many entries)
    if (o_.log_retain >= 0) m.epoch_entries = uint64_t(std::max<int64_t>(o_.log_retain, 1));
    m.body = body;
    std::sort(live.begin(), live.end());
    for (uint32_t s = 0; s < m.shards; ++s) {
      std::vector<std::string> nodes;
      for (uint32_t i = 0; i < m.replication; ++i) nodes.push_back(live[(s + i) % live.size()]);
      m.assignment.push_back(std::move(nodes));
    }
    {
      std::lock_guard lock(mu_);
      pending_gens_.insert(m.gen);
    }
    struct Unpend {
      Node* n;
      std::string gen;
      ~Unpend() {
        std::lock_guard lock(n->mu_);
        n->pending_gens_.erase(gen);
      }
    } unpend{this, m.gen};
    // The template checks the body as a single-node create would (a precise 400 before anything
    // is shared).
    ApiRequest local;
    const std::string body_text = body.dump();
    local.body = body_text;
    local.params = {m.Template()};
    Reply made = api_->CreateCollection(local);
    if (!made.ok()) return made;
    auto undo_template = [&] {
      ApiRequest drop;
      drop.params = {m.Template()};
      (void)api_->DeleteCollection(drop);
    };
    const int stream_replicas = int(std::min<size_t>(m.replication, o_.nats_urls.size()));
    for (uint32_t s = 0; s < m.shards; ++s) {
      if (Status st = nats_->EnsureStream(m.Stream(s), m.Subject(s), stream_replicas,
                                          int64_t(m.epoch_entries));
          !st.ok()) {
        for (uint32_t d = 0; d <= s; ++d) (void)nats_->DeleteStream(m.Stream(d));
        undo_template();
        return st;
      }
    }
    if (Status st = collections_kv_->Create(name, m.Encode()); !st.ok()) {
      for (uint32_t s = 0; s < m.shards; ++s) (void)nats_->DeleteStream(m.Stream(s));
      undo_template();
      if (st.code() == Status::Code::kAlreadyExists)
        return Status::AlreadyExists("collection '" + name + "' already exists");
      return st;
    }
    Announce(name);  // every node makes its replicas now rather than at its next sync
    (void)Reconcile();
    // Answer once every shard has a replica that serves it (the others follow within a sync).
    const auto deadline = Clock::now() + o_.wait_timeout;
    for (uint32_t s = 0; s < m.shards; ++s) {
      while (!AskShard(m, s, "count", "{}").ok() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    spdlog::info("cluster: created '{}' ({} shards x {} replicas)", name, m.shards, m.replication);
    return Reply::Ok("true");
  }

  // Every stream of the collection's logs (each shard's epochs; by name where NATS does not say).
  void DeleteStreams(const Meta& m) {
    std::set<std::string> names;
    for (uint32_t s = 0; s < m.shards; ++s) {
      for (uint32_t e = m.FirstEpoch(s); e <= m.Epoch(s) + 1; ++e) names.insert(m.Stream(s, e));
    }
    if (auto listed = nats_->StreamNames(m.AllSubjects()); listed.ok())
      names.insert(listed->begin(), listed->end());
    for (const std::string& name : names) (void)nats_->DeleteStream(name);
  }

  Reply DropCollection(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    // The tombstone first: it is what lets the nodes delete their copies.
    FATHOM_RETURN_IF_ERROR(dropped_kv_->Put(m.gen, m.name));
    FATHOM_RETURN_IF_ERROR(collections_kv_->Delete(m.name));
    DeleteStreams(m);
    // Its aliases go with it (as on a single node).
    for (int attempt = 0; attempt < 5; ++attempt) {
      uint64_t revision = 0;
      auto current = collections_kv_->Get(kAliasesKey, &revision);
      if (!current.ok() || !current->has_value()) break;
      auto aliases = DecodeAliases(**current);
      if (std::erase_if(aliases, [&](const auto& a) { return a.second == m.name; }) == 0) break;
      if (collections_kv_->Update(kAliasesKey, EncodeAliases(aliases), revision).ok()) break;
    }
    Announce(m.name);
    (void)Reconcile();
    return Reply::Ok("true");
  }

  Reply CollectionExists(const ApiRequest& req) {
    FATHOM_RETURN_IF_ERROR(server::ValidateName(req.params.at(0), "collection name"));
    FATHOM_ASSIGN_OR_RETURN(auto value, collections_kv_->Get(req.params.at(0)));
    return Reply::Ok(Json{{"exists", value.has_value()}}.dump());
  }

  Reply GetCollection(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local;
    local.params = {m.Template()};
    Reply t = api_->GetCollection(local);
    if (!t.ok()) return t;
    Json info = Json::parse(t.result);
    info["name"] = m.name;
    info["config"]["params"]["shard_number"] = m.shards;
    info["config"]["params"]["replication_factor"] = m.replication;
    auto counts = AskAll(m, "count", "{\"exact\":true}");
    if (counts.ok()) {
      uint64_t total = 0;
      for (const std::string& c : *counts) total += Json::parse(c).value("count", uint64_t{0});
      info["points_count"] = total;
      info["vectors_count"] = total * info["config"].value("vectors", Json::object()).size();
      info["indexed_vectors_count"] = info["vectors_count"];
    } else {
      info["status"] = "red";
      info["points_count"] = nullptr;
      info["error"] = counts.status().message();
    }
    info.erase("memory_bytes");
    info.erase("storage");
    info["shards"] = m.assignment;
    return Reply::Ok(info.dump());
  }

  // Adds a replica of a shard on a node ({"add": "n4"}) or removes one ({"remove": "n1"}). A new
  // replica applies the shard's log while writes go on (after a peer's snapshot when the log was
  // trimmed past its start); add the new one, watch its lag reach 0 in GET /cluster, then remove
  // the old one to move a shard (POST /cluster/rebalance does both).
  Reply ChangeReplicas(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    const std::string& shard_text = req.params.at(1);
    char* end = nullptr;
    const unsigned long shard = std::strtoul(shard_text.c_str(), &end, 10);
    if (shard_text.empty() || *end != '\0' || shard >= m.shards) {
      return Status::NotFound("collection '" + m.name + "' has shards 0.." +
                              std::to_string(m.shards - 1) + ", not '" + shard_text + "'");
    }
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 8));
    FATHOM_RETURN_IF_ERROR(server::CheckFields(body, "replicas request", {"add", "remove"}));
    if (body.size() != 1 || !body.begin()->is_string()) {
      return Status::InvalidArgument("send {\"add\": \"NODE\"} or {\"remove\": \"NODE\"}");
    }
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> replicas,
                            ChangeReplica(m.name, uint32_t(shard), body.begin()->get<std::string>(),
                                          body.contains("add")));
    return Reply::Ok(Json{{"shard", shard}, {"replicas", replicas}}.dump());
  }

  // Adds (or removes) `node` as a replica of shard `shard` of collection `name` with a
  // compare-and-set of its metadata, tells every node, and returns the shard's replicas now.
  Result<std::vector<std::string>> ChangeReplica(const std::string& name, uint32_t shard,
                                                 const std::string& node, bool add) {
    FATHOM_RETURN_IF_ERROR(ValidateNodeId(node));
    FATHOM_ASSIGN_OR_RETURN(auto current, collections_kv_->Get(name));
    if (!current) return Status::NotFound("collection '" + name + "' does not exist");
    FATHOM_ASSIGN_OR_RETURN(Meta m, Meta::Decode(*current));
    std::vector<std::string> live;
    if (add) {
      FATHOM_ASSIGN_OR_RETURN(live, nodes_kv_->Keys());
    }
    const std::string shard_text = std::to_string(shard);
    Status refused;
    std::vector<std::string> result;
    // (compare-and-set, retried: log epochs change the same metadata while writes go on)
    FATHOM_RETURN_IF_ERROR(ChangeMeta(m, [&](Meta& now) {
      refused = Status::OK();
      if (shard >= now.shards) {
        refused = Status::NotFound("collection '" + name + "' has no shard " + shard_text);
        return false;
      }
      std::vector<std::string>& replicas = now.assignment[shard];
      const bool holds = std::find(replicas.begin(), replicas.end(), node) != replicas.end();
      if (add) {
        if (holds) {
          refused = Status::AlreadyExists("node '" + node + "' already holds shard " + shard_text);
        } else if (std::find(live.begin(), live.end(), node) == live.end()) {
          refused =
              Status::InvalidArgument("node '" + node + "' is not a live member of the cluster");
        } else {
          replicas.push_back(node);
        }
      } else if (!holds) {
        refused = Status::NotFound("node '" + node + "' holds no replica of shard " + shard_text);
      } else if (replicas.size() == 1) {
        refused = Status::InvalidArgument("the last replica of a shard cannot be removed");
      } else {
        replicas.erase(std::find(replicas.begin(), replicas.end(), node));
      }
      result = replicas;
      return refused.ok();
    }));
    FATHOM_RETURN_IF_ERROR(refused);
    (void)Reconcile();
    return result;
  }

  // ---- Rebalancing ----
  //
  // POST /cluster/rebalance: plans moves that even out how many shard replicas each live node
  // holds (until no two differ by more than one), then makes them one at a time on a thread of
  // this node: add the replica on the emptier node, wait until it has applied what the source
  // had (after installing a peer's snapshot if the log was trimmed), remove the source's. Writes
  // and reads go on throughout. Replicas on nodes without a heartbeat are neither counted nor
  // moved (a node that is restarting would otherwise lose its shards); moving off a dead node
  // for good is the replicas call above, or --auto-rebalance (AutoRebalance below).
  // {"dry_run": true} answers the plan alone.

  struct Move {
    std::string collection;
    uint32_t shard = 0;
    std::string from, to;
    Json ToJson() const {
      return Json{{"collection", collection}, {"shard", shard}, {"from", from}, {"to", to}};
    }
  };

  // Every collection's metadata as the bucket holds it now.
  Result<std::map<std::string, Meta>> LoadMetas() {
    std::map<std::string, Meta> metas;
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> keys, collections_kv_->Keys());
    for (const std::string& key : keys) {
      if (key == kAliasesKey) continue;
      FATHOM_ASSIGN_OR_RETURN(auto value, collections_kv_->Get(key));
      if (!value) continue;
      auto m = Meta::Decode(*value);
      if (m.ok()) metas.emplace(key, std::move(m).value());
    }
    return metas;
  }

  Result<std::vector<Move>> PlanRebalance() {
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> live_list, nodes_kv_->Keys());
    FATHOM_ASSIGN_OR_RETURN(auto metas, LoadMetas());
    return PlanEvenOut(std::move(metas), std::set<std::string>(live_list.begin(), live_list.end()));
  }

  // How many shard replicas each live node holds (0 for one that holds none).
  static std::map<std::string, size_t> ReplicasPerLiveNode(const std::map<std::string, Meta>& metas,
                                                           const std::set<std::string>& live) {
    std::map<std::string, size_t> count;
    for (const std::string& n : live) count[n] = 0;
    for (const auto& [name, m] : metas) {
      for (const auto& r : m.assignment) {
        for (const std::string& n : r) {
          if (live.count(n)) ++count[n];
        }
      }
    }
    return count;
  }

  // Moves from the live node holding the most replicas to the one holding the fewest that does
  // not hold that shard yet, until no two differ by more than one.
  static std::vector<Move> PlanEvenOut(std::map<std::string, Meta> metas,
                                       const std::set<std::string>& live) {
    std::map<std::string, size_t> count = ReplicasPerLiveNode(metas, live);
    std::vector<Move> moves;
    while (count.size() >= 2) {
      auto [lo, hi] =
          std::minmax_element(count.begin(), count.end(),
                              [](const auto& a, const auto& b) { return a.second < b.second; });
      if (hi->second - lo->second <= 1) break;
      bool moved = false;
      for (auto& [name, m] : metas) {
        for (uint32_t s = 0; s < m.shards && !moved; ++s) {
          auto& r = m.assignment[s];
          if (m.Holds(s, hi->first) && !m.Holds(s, lo->first)) {
            moves.push_back(Move{name, s, hi->first, lo->first});
            std::replace(r.begin(), r.end(), hi->first, lo->first);
            --hi->second;
            ++lo->second;
            moved = true;
          }
        }
        if (moved) break;
      }
      if (!moved) break;  // every replica of the fullest node is on the emptiest one too
    }
    return moves;
  }

  Reply Rebalance(const ApiRequest& req) {
    Json body = Json::object();
    if (!req.body.empty()) {
      FATHOM_ASSIGN_OR_RETURN(body, server::ParseBody(req.body, 8));
      FATHOM_RETURN_IF_ERROR(server::CheckFields(body, "rebalance request", {"dry_run"}));
    }
    const bool dry_run = body.value("dry_run", false);
    auto running = [&]() -> std::optional<Reply> {  // (rebalance_mu_ held)
      if (rebalance_.state != "running") return std::nullopt;
      return Reply::Error(409, std::string("a") + (rebalance_.automatic ? "n automatic" : "") +
                                   " rebalance is running on this node (" +
                                   std::to_string(rebalance_.done) + " of " +
                                   std::to_string(rebalance_.moves.size()) + " moves done)");
    };
    {
      std::lock_guard lock(rebalance_mu_);
      if (auto busy = running()) return *busy;
    }
    // (planned without the lock: it asks NATS, and the sync thread takes the lock too)
    FATHOM_ASSIGN_OR_RETURN(std::vector<Move> moves, PlanRebalance());
    std::lock_guard lock(rebalance_mu_);
    if (auto busy = running()) return *busy;
    Json plan = Json::array();
    for (const Move& mv : moves) plan.push_back(mv.ToJson());
    if (!dry_run && !moves.empty()) StartMovesLocked(moves, false);
    return Reply::Ok(
        Json{{"moves", std::move(plan)}, {"started", !dry_run && !moves.empty()}}.dump());
  }

  // The nodes with a heartbeat, as the last members round saw them.
  std::set<std::string> LiveNodes() {
    std::lock_guard lock(mu_);
    return live_;
  }

  // Starts a job that makes `moves` one at a time; rebalance_mu_ held, no job running.
  void StartMovesLocked(std::vector<Move> moves, bool automatic) {
    if (rebalance_thread_.joinable()) rebalance_thread_.join();  // (the last one, finished)
    rebalance_ = RebalanceJob{};
    rebalance_.state = "running";
    rebalance_.moves = std::move(moves);
    rebalance_.automatic = automatic;
    rebalance_thread_ = std::thread([this] { RunRebalance(); });
  }

  // Whether this node decides the automatic rebalancing: it has a heartbeat and no live node
  // with a smaller id says in its heartbeat that it rebalances by itself (false when unsure).
  bool DecidesAutoRebalance(const std::set<std::string>& live) {
    if (o_.auto_rebalance.count() <= 0 || live.count(o_.node_id) == 0) return false;
    for (const std::string& n : live) {
      if (n >= o_.node_id) break;
      auto beat = nodes_kv_->Get(n);
      if (!beat.ok()) return false;
      if (!*beat) continue;
      Json j = Json::parse(**beat, nullptr, false);
      if (j.is_object() && j.value("auto_rebalance", int64_t{0}) > 0) return false;
    }
    return true;
  }

  // --auto-rebalance, every few seconds on the sync thread. Of the live nodes whose heartbeat
  // says they rebalance by themselves, the one with the smallest id decides (the others do
  // nothing, so two nodes do not plan against the same layout; should they for a moment, as
  // when membership changes, each add and remove is a compare-and-set and a move that lost
  // fails cleanly). It notes when each node that holds a replica was first seen without a
  // heartbeat; once one has been missing for --auto-rebalance seconds, its replicas are
  // replaced: for each, a new replica on the live node holding the fewest that lacks the shard,
  // which catches up (a peer's snapshot if the log was trimmed) before the dead one is removed.
  // A shard with no live replica left, or held by every live node already, keeps its dead
  // replica. Once no replacement is due and no missing node is within its grace period, the
  // replica counts of the live nodes are evened out as POST /cluster/rebalance does, so a node
  // that joins (or comes back emptied) gets its share. A failed automatic move removes the
  // replica it added, and the next plan waits kAutoRebalanceBackoff; an automatic job stops
  // between moves once this node no longer decides.
  void AutoRebalance() {
    const std::set<std::string> live = LiveNodes();
    if (!DecidesAutoRebalance(live)) {
      missing_since_.clear();
      return;
    }
    auto loaded = LoadMetas();
    if (!loaded.ok()) return;
    const std::map<std::string, Meta>& metas = *loaded;
    const auto now = Clock::now();
    std::set<std::string> missing;
    for (const auto& [name, m] : metas) {
      for (const auto& replicas : m.assignment) {
        for (const std::string& n : replicas) {
          if (!live.count(n)) missing.insert(n);
        }
      }
    }
    std::erase_if(missing_since_, [&](const auto& e) { return !missing.count(e.first); });
    for (const std::string& n : missing) missing_since_.try_emplace(n, now);
    {
      std::lock_guard lock(rebalance_mu_);
      if (rebalance_.state == "running") return;
      // After an automatic job failed (a replica that did not catch up), a pause before the next
      // plan, rather than a retry every round.
      if (rebalance_.automatic && rebalance_.state == "failed" &&
          now - rebalance_.finished < kAutoRebalanceBackoff)
        return;
    }
    // Replacements first; evening out once no missing node is still within its grace period
    // (one that stays missing with replicas nothing can replace does not block it).
    std::vector<Move> moves = PlanReplacements(metas, live, now);
    const bool waiting = std::any_of(missing_since_.begin(), missing_since_.end(), [&](const auto& e) {
      return now - e.second < o_.auto_rebalance;
    });
    const bool replacing = !moves.empty();
    if (!replacing && !waiting) moves = PlanEvenOut(metas, live);
    if (moves.empty()) return;
    std::lock_guard lock(rebalance_mu_);
    if (rebalance_.state == "running") return;  // (a request started one meanwhile)
    spdlog::info("cluster: auto-rebalance: {} {}", moves.size(),
                 replacing ? "replicas of nodes without a heartbeat to replace"
                           : "moves to even out the replicas");
    StartMovesLocked(std::move(moves), true);
  }

  // The replacements for replicas on nodes missing for --auto-rebalance seconds or longer.
  std::vector<Move> PlanReplacements(std::map<std::string, Meta> metas,
                                     const std::set<std::string>& live, Clock::time_point now) {
    std::map<std::string, size_t> count = ReplicasPerLiveNode(metas, live);
    std::vector<Move> moves;
    for (auto& [name, m] : metas) {
      for (uint32_t s = 0; s < m.shards; ++s) {
        std::vector<std::string>& r = m.assignment[s];
        if (std::none_of(r.begin(), r.end(), [&](const std::string& n) { return live.count(n); }))
          continue;  // nothing live to copy from
        for (std::string& n : r) {
          auto since = missing_since_.find(n);
          if (live.count(n) || since == missing_since_.end() ||
              now - since->second < o_.auto_rebalance)
            continue;
          std::string to;
          for (const auto& [candidate, c] : count) {
            if (std::find(r.begin(), r.end(), candidate) == r.end() &&
                (to.empty() || c < count[to]))
              to = candidate;
          }
          if (to.empty()) continue;  // every live node holds the shard already
          moves.push_back(Move{name, s, n, to});
          n = to;
          ++count[to];
        }
      }
    }
    return moves;
  }

  void RunRebalance() {
    std::vector<Move> moves;
    bool automatic = false;
    {
      std::lock_guard lock(rebalance_mu_);
      moves = rebalance_.moves;
      automatic = rebalance_.automatic;
    }
    Status failed;
    for (const Move& mv : moves) {
      if (stopped_.load()) {
        failed = Status::Unavailable("the node stopped");
        break;
      }
      if (automatic && !DecidesAutoRebalance(LiveNodes())) {
        failed = Status::FailedPrecondition("another node decides the automatic rebalancing now");
        break;
      }
      spdlog::info("cluster: rebalance: moving {} shard {} from {} to {}", mv.collection, mv.shard,
                   mv.from, mv.to);
      failed = MoveReplica(mv, automatic);
      if (!failed.ok()) break;
      std::lock_guard lock(rebalance_mu_);
      ++rebalance_.done;
    }
    std::lock_guard lock(rebalance_mu_);
    rebalance_.state = failed.ok() ? "done" : "failed";
    rebalance_.finished = Clock::now();
    if (!failed.ok()) {
      rebalance_.error = failed.ToString();
      spdlog::warn("cluster: rebalance stopped: {}", rebalance_.error);
    }
  }

  // Adds mv.to, waits until its replica has applied what mv.from's had when it was added (up to
  // 30 minutes: a large shard's snapshot), then removes mv.from. With `undo`, a replica it added
  // that did not catch up is removed again (automatic moves: the next plan would otherwise add
  // yet another on the next node); without, it is left in place for the operator.
  Status MoveReplica(const Move& mv, bool undo = false) {
    auto added = ChangeReplica(mv.collection, mv.shard, mv.to, true);
    if (!added.ok() && added.status().code() != Status::Code::kAlreadyExists) return added.status();
    Status moved = AwaitAndRemove(mv);
    if (!moved.ok() && !undo) {
      return Status(moved.code(), moved.message() + " (its new replica is left in place)");
    }
    if (!moved.ok() && added.ok()) {
      auto undone = ChangeReplica(mv.collection, mv.shard, mv.to, false);
      spdlog::warn("cluster: auto-rebalance: {} shard {}: {}; its new replica on {} {}", mv.collection,
                   mv.shard, moved.ToString(), mv.to,
                   undone.ok() ? "removed again" : "not removed: " + undone.status().ToString());
    }
    return moved;
  }

  Status AwaitAndRemove(const Move& mv) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(mv.collection));
    FATHOM_ASSIGN_OR_RETURN(Nats::StreamState stream, nats_->GetStreamState(m.Stream(mv.shard)));
    const uint64_t target = Pos(m.Epoch(mv.shard), stream.last_seq);
    const auto deadline = Clock::now() + std::chrono::minutes(30);
    for (;;) {
      if (stopped_.load()) return Status::Unavailable("the node stopped");
      auto st = NodeStatus(mv.to, std::chrono::seconds(2));
      if (!st.ok()) {
        std::lock_guard lock(mu_);
        if (!live_.count(mv.to)) {
          return Status::Unavailable(
              "node " + mv.to + " lost its heartbeat while its new replica of " + mv.collection +
              " shard " + std::to_string(mv.shard) + " caught up");
        }
      }
      if (st.ok()) {
        for (const Json& sh : (*st)["shards"]) {
          if (sh.value("local_name", "") == m.Local(mv.shard) &&
              !sh.value("needs_snapshot", false) && sh.value("applied", uint64_t{0}) >= target) {
            FATHOM_ASSIGN_OR_RETURN(auto removed,
                                    ChangeReplica(mv.collection, mv.shard, mv.from, false));
            (void)removed;
            return Status::OK();
          }
        }
      }
      if (Clock::now() > deadline) {
        return Status::Unavailable("the new replica of " + mv.collection + " shard " +
                                   std::to_string(mv.shard) + " on " + mv.to +
                                   " did not catch up within 30 minutes");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }

  Json RebalanceJson() {
    std::lock_guard lock(rebalance_mu_);
    if (rebalance_.state.empty()) return nullptr;
    Json moves = Json::array();
    for (const Move& mv : rebalance_.moves) moves.push_back(mv.ToJson());
    Json j{{"state", rebalance_.state},
           {"moves", std::move(moves)},
           {"done", rebalance_.done},
           {"automatic", rebalance_.automatic}};
    if (!rebalance_.error.empty()) j["error"] = rebalance_.error;
    return j;
  }

  static std::map<std::string, std::string> DecodeAliases(std::string_view text) {
    Json j = Json::parse(text, nullptr, false);
    std::map<std::string, std::string> out;
    if (j.is_object()) {
      for (const auto& [alias, target] : j.items()) {
        if (target.is_string()) out[alias] = target.get<std::string>();
      }
    }
    return out;
  }
  static std::string EncodeAliases(const std::map<std::string, std::string>& aliases) {
    return Json(aliases).dump();
  }

  // Qdrant's alias actions, applied in order, all or none: one compare-and-set of the one value
  // that holds every alias, so a [delete_alias, create_alias] switch is seen whole or not at all.
  Reply UpdateAliases(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(std::vector<AliasOperation> ops, api_->ParseAliasActions(req));
    for (int attempt = 0;; ++attempt) {
      uint64_t revision = 0;
      FATHOM_ASSIGN_OR_RETURN(auto current, collections_kv_->Get(kAliasesKey, &revision));
      std::map<std::string, std::string> next =
          current ? DecodeAliases(*current) : std::map<std::string, std::string>();
      FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> keys, collections_kv_->Keys());
      std::set<std::string> collections(keys.begin(), keys.end());
      collections.erase(kAliasesKey);
      FATHOM_RETURN_IF_ERROR(ApplyAliasOperations(
          ops, [&](const std::string& n) { return collections.count(n) != 0; }, &next));
      Status written = current ? collections_kv_->Update(kAliasesKey, EncodeAliases(next), revision)
                               : collections_kv_->Create(kAliasesKey, EncodeAliases(next));
      if (written.ok()) break;
      const bool raced = written.code() == Status::Code::kFailedPrecondition ||
                         written.code() == Status::Code::kAlreadyExists;
      if (!raced || attempt == 4) return written;
    }
    Announce(kAliasesKey);
    (void)Reconcile();
    return Reply::Ok("true");
  }

  Result<std::map<std::string, std::string>> ReadAliases() {
    FATHOM_ASSIGN_OR_RETURN(auto current, collections_kv_->Get(kAliasesKey));
    return current ? DecodeAliases(*current) : std::map<std::string, std::string>();
  }

  static std::string AliasList(const std::map<std::string, std::string>& aliases,
                               const std::string* collection) {
    Json list = Json::array();
    for (const auto& [alias, target] : aliases) {
      if (collection == nullptr || target == *collection) {
        list.push_back(Json{{"alias_name", alias}, {"collection_name", target}});
      }
    }
    return Json{{"aliases", std::move(list)}}.dump();
  }

  Reply ListAliases(const ApiRequest&) {
    FATHOM_ASSIGN_OR_RETURN(auto aliases, ReadAliases());
    return Reply::Ok(AliasList(aliases, nullptr));
  }

  Reply ListCollectionAliases(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(auto aliases, ReadAliases());
    return Reply::Ok(AliasList(aliases, &m.name));
  }

  // ---- Handlers: writes ----

  // Publishes one entry per shard, then (with wait) waits for a replica of each to apply it.
  // `count_field` ("deleted", "updated"), when given, is set to the points the write changed,
  // summed over its shards, when every shard's replica reports it.
  Reply Publish(const Meta& m, const std::map<uint32_t, std::string>& entries,
                const ApiRequest& req, Json answer, const char* count_field = nullptr) {
    const std::string request_id = o_.node_id + "-" + RandomHex(16);
    std::vector<std::future<Result<uint64_t>>> futures;
    for (const auto& [s, entry] : entries) {
      futures.push_back(
          std::async(std::launch::async, [&, s = s, entry = &entry]() -> Result<uint64_t> {
            const auto deadline = Clock::now() + o_.request_timeout;
            uint32_t epoch = m.Epoch(s);
            Status last;
            for (int attempt = 0; attempt < 3;) {  // the same message id: JetStream keeps one
              auto seq = nats_->Publish(m.Subject(s, epoch), *entry, {},
                                        request_id + "-" + std::to_string(s), o_.request_timeout);
              if (seq.ok()) return Pos(epoch, *seq);
              if (seq.status().code() == Status::Code::kFailedPrecondition && m.epoch_entries > 0 &&
                  Clock::now() < deadline) {
                // The epoch's stream is full (the entry is not in it): the next epoch's.
                FATHOM_ASSIGN_OR_RETURN(epoch, NextEpoch(m, s, epoch));
                continue;
              }
              if (seq.status().code() != Status::Code::kUnavailable) return seq.status();
              last = seq.status();
              ++attempt;
              // (a metadata cache two epochs behind names a stream that is gone)
              if (m.epoch_entries > 0) {
                if (auto value = collections_kv_->Get(m.name); value.ok() && *value) {
                  if (auto now = Meta::Decode(**value); now.ok() && now->gen == m.gen)
                    epoch = std::max(epoch, now->Epoch(s));
                }
              }
            }
            return last;
          }));
    }
    std::map<uint32_t, uint64_t> seqs;
    std::string failed;
    size_t i = 0;
    for (const auto& [s, entry] : entries) {
      auto seq = futures[i++].get();
      if (seq.ok()) {
        seqs[s] = *seq;
      } else {
        failed.append(failed.empty() ? "" : "; ")
            .append("shard " + std::to_string(s) + ": " + seq.status().message());
      }
    }
    if (!failed.empty()) {
      // Shards that stored their part keep it (each shard's part is atomic; a retry is safe).
      return Reply::Error(503, "the write was not stored on every shard (" + failed + "); " +
                                   std::to_string(seqs.size()) + " of " +
                                   std::to_string(entries.size()) +
                                   " shards stored their part: retry the request");
    }
    uint64_t operation = 0;
    for (const auto& [s, seq] : seqs) operation = std::max(operation, seq);
    answer["operation_id"] = operation;
    answer["status"] = "acknowledged";
    answer["read_after"] =
        ReadAfterToken(seqs);  // pass back as ?read_after= to read this write anywhere
    if (WaitRequested(req)) {
      const auto deadline = Clock::now() + o_.wait_timeout;
      bool all = true;
      std::optional<uint64_t> total = 0;
      for (const auto& [s, seq] : seqs) {
        std::optional<uint64_t> changed;
        all = WaitApplied(m, s, seq, deadline, &changed) && all;
        total = changed && total ? std::optional<uint64_t>(*total + *changed) : std::nullopt;
      }
      if (all) answer["status"] = "completed";
      if (all && total && count_field != nullptr) answer[count_field] = *total;
    }
    return Reply::Ok(answer.dump());
  }

  bool WaitApplied(const Meta& written, uint32_t s, uint64_t seq, Clock::time_point deadline,
                   std::optional<uint64_t>* changed) {
    Meta m = written;
    while (Clock::now() < deadline) {
      for (const std::string& node : ReplicaOrder(m, s)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return false;
        auto slice = std::min(left, std::chrono::milliseconds(2000));
        auto r = Call(node, "wait", m.Local(s), std::to_string(slice.count()), std::to_string(seq),
                      slice + std::chrono::milliseconds(500));
        if (r.ok()) {
          Json j = Json::parse(*r, nullptr, false);
          if (j.is_object() && j.contains("changed")) *changed = j["changed"].get<uint64_t>();
          // Applied and searchable. Give the other live replicas a moment too, so that reads
          // through any node usually see the write; a slow or paused one costs at most a second.
          std::vector<std::future<Result<std::string>>> others;
          for (const std::string& other : ReplicaOrder(m, s)) {
            if (other == node) continue;
            {
              std::lock_guard lock(mu_);
              if (!live_.count(other)) continue;
            }
            others.push_back(std::async(std::launch::async, [this, other, &m, s, seq] {
              return Call(other, "wait", m.Local(s), "1000", std::to_string(seq),
                          std::chrono::milliseconds(1200));
            }));
          }
          for (auto& f : others) (void)f.get();
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      // The shard's replicas may have moved meanwhile (a rebalance): ask the current ones.
      if (auto now = FindMeta(m.name); now.ok() && now->gen == m.gen) m = std::move(now).value();
    }
    return false;
  }

  Reply Upsert(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;
    local.params = {m.Template()};
    FATHOM_ASSIGN_OR_RETURN(std::vector<Record> records, api_->ParseUpsert(local));
    std::map<uint32_t, Json> points;
    for (const Record& r : records) {
      Json v = Json::object();
      for (const auto& [name, values] : r.vectors)
        v[name] = server::EncodeBase64Floats(values.data(), values.size());
      Json& list = points[ShardOf(r.id, m.shards)];
      if (list.is_null()) list = Json::array();
      list.push_back(Json{{"id", IdJson(r.id)}, {"v", std::move(v)}, {"p", r.payload}});
    }
    std::map<uint32_t, std::string> entries;
    for (auto& [s, list] : points)
      entries[s] = Json{{"op", "upsert"}, {"points", std::move(list)}}.dump();
    return Publish(m, entries, req, Json{{"upserted", records.size()}});
  }

  // Entries for a points selector: ids go to their shards, a filter to every shard.
  template <typename MakeEntry>
  std::map<uint32_t, std::string> Route(const Meta& m, const std::vector<PointId>& ids,
                                        const std::string& filter, MakeEntry make) {
    std::map<uint32_t, std::string> entries;
    if (!filter.empty()) {
      for (uint32_t s = 0; s < m.shards; ++s) entries[s] = make(Json{{"filter", filter}}).dump();
      return entries;
    }
    std::map<uint32_t, Json> by_shard;
    for (const PointId& id : ids) by_shard[ShardOf(id, m.shards)].push_back(IdJson(id));
    for (auto& [s, list] : by_shard) entries[s] = make(Json{{"ids", std::move(list)}}).dump();
    return entries;
  }

  Reply Delete(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;
    local.params = {m.Template()};
    std::vector<PointId> ids;
    std::string filter;
    FATHOM_RETURN_IF_ERROR(api_->ParseDelete(local, &ids, &filter));
    auto entries = Route(m, ids, filter, [](Json selector) {
      selector["op"] = "delete";
      return selector;
    });
    if (entries.empty())
      return Reply::Ok(Json{{"operation_id", 0}, {"status", "completed"}, {"deleted", 0}}.dump());
    return Publish(m, entries, req, Json::object(), "deleted");
  }

  Reply UpdatePayload(const ApiRequest& req, PayloadUpdate::Op op) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;
    local.params = {m.Template()};
    FATHOM_ASSIGN_OR_RETURN(PayloadUpdate u, api_->ParsePayloadUpdate(local, op));
    auto entries = Route(m, u.ids, u.filter, [&](Json selector) {
      selector["op"] = "payload";
      selector["kind"] = int(u.op);
      if (!u.payload.empty()) selector["payload"] = u.payload;
      if (!u.keys.empty()) selector["keys"] = u.keys;
      return selector;
    });
    return Publish(m, entries, req, Json::object(), "updated");
  }
  // PUT /collections/{name}/index and DELETE /collections/{name}/index/{field}: the metadata
  // names the index (so templates and replicas made later have it), and an entry in every
  // shard's log makes or drops it on each replica in order with the writes around it.
  Reply CreateFieldIndex(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;
    local.params = {m.Template()};
    Reply made = api_->CreateFieldIndex(local);  // checks the request (precise 400s)
    if (!made.ok()) return made;
    const std::string field = Json::parse(req.body).value("field_name", "");
    FATHOM_ASSIGN_OR_RETURN(auto t, api_->LocalCollection(m.Template()));
    auto it = t->spec().indexed_fields.find(field);
    if (it == t->spec().indexed_fields.end())
      return Status::Internal("the template lost the index on '" + field + "'");
    return ChangeFieldIndex(m, field, std::string(FieldTypeName(it->second)), req);
  }

  Reply DeleteFieldIndex(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    const std::string& field = req.params.at(1);
    if (!MetaIndexes(m).count(field)) {
      return Status::NotFound("collection '" + m.name + "' has no payload index on '" + field +
                              "'");
    }
    FATHOM_RETURN_IF_ERROR(SetLocalIndex(m.Template(), field, std::nullopt));
    return ChangeFieldIndex(m, field, std::nullopt, req);
  }

  // Changes member `key` of collection m's create body (an object: `change` edits it) with a
  // compare-and-set of its metadata entry, retried when another change came first, then tells
  // every node. NotFound when the collection was dropped (or dropped and made again) meanwhile.
  Status ChangeBody(const Meta& m, const char* key, const std::function<void(Json&)>& change) {
    return ChangeMeta(m, [&](Meta& now) {
      Json& member = now.body[key];
      if (!member.is_object()) member = Json::object();
      change(member);
      return true;
    });
  }

  Reply ChangeFieldIndex(const Meta& m, const std::string& field,
                         const std::optional<std::string>& type, const ApiRequest& req) {
    FATHOM_RETURN_IF_ERROR(ChangeBody(m, "indexed_fields", [&](Json& fields) {
      if (type) {
        fields[field] = *type;
      } else {
        fields.erase(field);
      }
    }));
    Json entry{{"op", "index"}, {"field", field}};
    if (type) entry["type"] = *type;
    std::map<uint32_t, std::string> entries;
    for (uint32_t s = 0; s < m.shards; ++s) entries[s] = entry.dump();
    return Publish(m, entries, req, Json::object());
  }

  // POST /collections/{name}/tune: tunes every shard on one of its replicas (at once, each
  // measuring recall against exact search on its own points, nothing stored there), and takes
  // the largest setting any shard needed: a shard's part of the merged top k is within its own
  // top k, so the setting that meets the target on every shard meets it on the merge. With
  // "store" (the default) the setting goes into the collection's metadata (templates: GET
  // shows it) and, through each shard's log, to every replica, present and future.
  Reply Tune(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    Json body = Json::parse(req.body.empty() ? std::string("{}") : req.body, nullptr, false);
    if (!body.is_object()) return Reply::Error(400, "tune request: the body must be a JSON object");
    const bool store = !body.contains("store") || body["store"] != false;
    body["store"] = false;
    const std::string shard_body = body.dump();
    std::vector<std::future<Result<std::string>>> asks;
    for (uint32_t s = 0; s < m.shards; ++s) {
      asks.push_back(std::async(std::launch::async, [&, s] {  // exact search: minutes at scale
        return AskShard(m, s, "tune", shard_body, "", {}, std::chrono::minutes(30));
      }));
    }
    Json shards = Json::array();
    Json answer{{"knob", ""},      {"value", 0},   {"recall", 1.0},
                {"reached", true}, {"queries", 0}, {"tried", Json::array()}};
    for (uint32_t s = 0; s < m.shards; ++s) {
      FATHOM_ASSIGN_OR_RETURN(std::string text, asks[s].get());
      Json one = Json::parse(text, nullptr, false);
      if (!one.is_object()) return Reply::Error(500, "shard " + std::to_string(s) + ": bad answer");
      answer["knob"] = one.value("knob", "");
      answer["value"] = std::max(answer["value"].get<int>(), one.value("value", 0));
      answer["reached"] = answer["reached"].get<bool>() && one.value("reached", true);
      answer["queries"] = answer["queries"].get<uint64_t>() + one.value("queries", uint64_t{0});
      one["shard"] = s;
      shards.push_back(std::move(one));
    }
    // The recall each shard measured at the chosen setting (or the nearest it tried below it).
    for (const Json& one : shards) {
      double at = one.value("recall", 1.0);
      for (const Json& t : one.value("tried", Json::array())) {
        if (t.value("value", 0) <= answer["value"].get<int>()) at = t.value("recall", at);
      }
      answer["recall"] = std::min(answer["recall"].get<double>(), at);
    }
    if (!shards.empty()) answer["tried"] = shards[0].value("tried", Json::array());
    answer["shards"] = std::move(shards);
    const std::string knob = answer["knob"];
    if (!store || knob.empty()) return Reply::Ok(answer.dump());
    const std::string vector = body.value("using", Json("")).is_string()
                                   ? body.value("using", Json("")).get<std::string>()
                                   : std::string();
    SearchDefaults d;
    (knob == "ef" ? d.ef : knob == "nprobe" ? d.nprobe : d.checks) = answer["value"].get<int>();
    d.target_recall = body.value("target_recall", 0.0);
    d.recall = answer["recall"];
    return SetDefaults(m, vector, d, req, std::move(answer));
  }

  // DELETE /collections/{name}/tune[?using=VECTOR]: every replica forgets the tuned setting.
  Reply ResetTune(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;  // the template checks the request (and forgets it at once)
    local.params = {m.Template()};
    Reply checked = api_->ResetTune(local);
    if (!checked.ok()) return checked;
    std::string vector;
    for (const auto& [key, value] : req.query) {
      if (key == "using") vector = value;
    }
    const bool had = m.search_defaults.contains(vector);
    if (!had) return Reply::Ok(Json{{"reset", false}}.dump());
    return SetDefaults(m, vector, SearchDefaults{}, req, Json{{"reset", true}});
  }

  // Records tuned defaults in the metadata and sends them to every replica through the logs.
  Reply SetDefaults(const Meta& m, const std::string& vector, const SearchDefaults& d,
                    const ApiRequest& req, Json answer) {
    FATHOM_RETURN_IF_ERROR(ChangeMeta(m, [&](Meta& now) {
      if (d.target_recall == 0) {
        now.search_defaults.erase(vector);
      } else {
        now.search_defaults[vector] = DefaultsJson(d);
      }
      return true;
    }));
    const std::string entry =
        Json{{"op", "defaults"}, {"vector", vector}, {"defaults", DefaultsJson(d)}}.dump();
    std::map<uint32_t, std::string> entries;
    for (uint32_t s = 0; s < m.shards; ++s) entries[s] = entry;
    Reply published = Publish(m, entries, req, Json::object());
    if (!published.ok()) return published;
    return Reply::Ok(answer.dump());
  }

  // PATCH /collections/{name}: as on one node (user metadata merged key by key, a null removing
  // its key; settings a live collection cannot change refused with the same 400s). The metadata
  // is kept in the collection's metadata entry (a compare-and-set of the patch, so patches
  // through different nodes all apply); every node's template follows.
  Reply UpdateCollection(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    ApiRequest local = req;
    local.params = {m.Template()};
    Reply checked = api_->UpdateCollection(local);  // checks the request; the template at once
    if (!checked.ok()) return checked;
    const Json body = Json::parse(req.body, nullptr, false);
    auto patch = body.find("metadata");
    if (patch == body.end() || !patch->is_object()) return checked;
    FATHOM_RETURN_IF_ERROR(ChangeBody(m, "metadata", [&](Json& metadata) {
      for (const auto& [key, value] : patch->items()) {
        if (value.is_null()) {
          metadata.erase(key);
        } else {
          metadata[key] = value;
        }
      }
    }));
    return checked;
  }

  Reply SetPayload(const ApiRequest& req) { return UpdatePayload(req, PayloadUpdate::Op::kSet); }
  Reply OverwritePayload(const ApiRequest& req) {
    return UpdatePayload(req, PayloadUpdate::Op::kOverwrite);
  }
  Reply DeletePayload(const ApiRequest& req) {
    return UpdatePayload(req, PayloadUpdate::Op::kDeleteKeys);
  }
  Reply ClearPayload(const ApiRequest& req) {
    return UpdatePayload(req, PayloadUpdate::Op::kClear);
  }

  // ---- Handlers: reads ----

  Reply Count(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    std::vector<uint32_t> missing;
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> counts,
                            AskAll(m, "count", std::string(req.body), read, &missing));
    uint64_t total = 0;
    for (const std::string& c : counts) total += Json::parse(c).value("count", uint64_t{0});
    Reply r = Reply::Ok(Json{{"count", total}}.dump());
    NameMissing(missing, &r);
    return r;
  }

  // One search body as each shard gets it: the first offset + limit hits, no offset.
  static Result<Json> ShardSearch(Json search, size_t* limit, size_t* offset) {
    if (!search.is_object()) return Status::InvalidArgument("a search must be a JSON object");
    *limit = 10;
    *offset = 0;
    if (auto l = search.find("limit"); l != search.end() && l->is_number_unsigned())
      *limit = l->get<size_t>();
    if (auto o = search.find("offset"); o != search.end() && o->is_number_unsigned())
      *offset = o->get<size_t>();
    search["limit"] = *limit + *offset;
    search.erase("offset");
    return search;
  }

  static void NameMissing(const std::vector<uint32_t>& missing, Reply* r) {
    if (missing.empty()) return;
    std::string list;
    for (uint32_t s : missing) list.append(list.empty() ? "" : ",").append(std::to_string(s));
    r->headers.emplace_back("Fathom-Missing-Shards", list);
  }

  // Merges the shards' hit lists by score and cuts [offset, offset + limit).
  // `skip`: ids left out (recommend's examples).
  static Json MergeHits(const std::vector<Json>& lists, bool higher_better, size_t limit,
                        size_t offset, const std::set<std::string>& skip = {}) {
    std::vector<Json> all;
    for (const Json& l : lists) {
      for (const Json& hit : l) {
        if (!skip.empty() && skip.count(hit.value("id", Json()).dump())) continue;
        all.push_back(hit);
      }
    }
    // Every hit carries `distance` (smaller is closer, whatever the metric or recommend strategy);
    // `score` orders the rest.
    std::stable_sort(all.begin(), all.end(), [&](const Json& a, const Json& b) {
      if (a.contains("distance") && b.contains("distance")) {
        return a["distance"].get<double>() < b["distance"].get<double>();
      }
      double sa = a.value("score", 0.0), sb = b.value("score", 0.0);
      return higher_better ? sa > sb : sa < sb;
    });
    Json out = Json::array();
    for (size_t i = offset; i < all.size() && i < offset + limit; ++i)
      out.push_back(std::move(all[i]));
    return out;
  }

  Reply Search(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    size_t limit = 0, offset = 0;
    FATHOM_ASSIGN_OR_RETURN(Json shard_body, ShardSearch(body, &limit, &offset));
    FATHOM_ASSIGN_OR_RETURN(bool higher, HigherIsBetter(m, body));
    // (Without an offset each shard gets the body as sent: no second encoding of the vector.)
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    std::vector<uint32_t> missing;
    FATHOM_ASSIGN_OR_RETURN(
        std::vector<std::string> answers,
        AskAll(m, "search", offset == 0 ? std::string(req.body) : shard_body.dump(), read,
               &missing));
    std::vector<Json> lists;
    for (const std::string& a : answers) lists.push_back(Json::parse(a));
    Reply r = Reply::Ok(MergeHits(lists, higher, limit, offset).dump());
    NameMissing(missing, &r);
    return r;
  }

  Reply SearchBatch(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    if (!body.is_object() || !body.contains("searches") || !body["searches"].is_array()) {
      return Status::InvalidArgument("field 'searches' must be an array of searches");
    }
    std::vector<size_t> limits, offsets;
    std::vector<bool> higher;
    Json shard_body{{"searches", Json::array()}};
    for (const Json& s : body["searches"]) {
      size_t limit = 0, offset = 0;
      FATHOM_ASSIGN_OR_RETURN(Json one, ShardSearch(s, &limit, &offset));
      FATHOM_ASSIGN_OR_RETURN(bool h, HigherIsBetter(m, s));
      shard_body["searches"].push_back(std::move(one));
      limits.push_back(limit);
      offsets.push_back(offset);
      higher.push_back(h);
    }
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    std::vector<uint32_t> missing;
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> answers,
                            AskAll(m, "search_batch", shard_body.dump(), read, &missing));
    std::vector<Json> per_shard;
    for (const std::string& a : answers) per_shard.push_back(Json::parse(a));
    Json out = Json::array();
    for (size_t i = 0; i < limits.size(); ++i) {
      std::vector<Json> lists;
      for (const Json& shard : per_shard) lists.push_back(shard.at(i));
      out.push_back(MergeHits(lists, higher[i], limits[i], offsets[i]));
    }
    Reply r = Reply::Ok(out.dump());
    NameMissing(missing, &r);
    return r;
  }

  // Replaces each id among `slots` (point ids, or vectors left alone) with that point's vector
  // (`vector_name` of it), looked up on its shard; `ids` gets the ids' JSON texts.
  Status ResolveIds(const Meta& m, const std::vector<Json*>& slots, const std::string& vector_name,
                    const ReadOptions& read, std::set<std::string>* ids) {
    std::map<uint32_t, Json> by_shard;
    for (Json* e : slots) {
      if (!e->is_number_unsigned() && !e->is_string()) continue;  // a vector
      FATHOM_ASSIGN_OR_RETURN(PointId id, server::ParsePointId(*e, "example"));
      if (ids->insert(IdJson(id).dump()).second) by_shard[ShardOf(id, m.shards)].push_back(*e);
    }
    std::map<std::string, Json> vectors;  // id text -> its vector
    for (auto& [s, list] : by_shard) {
      Json get{{"ids", list}, {"with_payload", false}, {"with_vector", true}};
      FATHOM_ASSIGN_OR_RETURN(std::string answer, AskShard(m, s, "get", get.dump(), "", read));
      for (const Json& p : Json::parse(answer)) {
        const Json& v = p["vector"];
        vectors[p["id"].dump()] = v.is_object() ? v.value(vector_name, Json()) : v;
      }
    }
    for (Json* e : slots) {
      if (!e->is_number_unsigned() && !e->is_string()) continue;
      FATHOM_ASSIGN_OR_RETURN(PointId id, server::ParsePointId(*e, "example"));
      auto it = vectors.find(IdJson(id).dump());
      if (it == vectors.end() || it->second.is_null()) {
        return Status::NotFound("point " + PointIdToString(id) + " does not exist in collection '" +
                                m.name + "'");
      }
      *e = it->second;
    }
    return Status::OK();
  }

  // One recommend or query body, its example ids resolved to vectors: every shard answers from
  // its points (a best_score score depends only on the examples and the candidate, so shards'
  // scores compare), and the merge leaves the examples out. The hits as JSON.
  Result<Json> RunExamples(const Meta& m, Json body, const std::string& op,
                           const ReadOptions& read) {
    if (!body.is_object())
      return Status::InvalidArgument("the " + op + " request must be a JSON object");
    if (auto p = body.find("prefetch"); p != body.end() && !p->is_null()) {
      // Fusing per shard would rank each shard's list alone (every shard's best scores the same)
      // and the merge would interleave them: refused rather than answered wrongly.
      return Status::InvalidArgument(
          "'prefetch' is not supported in cluster mode yet (it works on a single node)");
    }
    const std::string vector_name =
        body.value("using", Json()).is_string() ? body["using"].get<std::string>() : "";
    std::vector<Json*> slots;
    auto add_lists = [&](Json& holder) {
      for (const char* side : {"positive", "negative"}) {
        auto list = holder.find(side);
        if (list == holder.end() || !list->is_array()) continue;
        for (Json& e : *list) slots.push_back(&e);
      }
    };
    if (op == "recommend") {
      add_lists(body);
    } else if (auto q = body.find("query"); q != body.end()) {
      if (q->is_object() && q->contains("recommend") && (*q)["recommend"].is_object()) {
        add_lists((*q)["recommend"]);
      } else if (q->is_object() && q->contains("nearest")) {
        slots.push_back(&(*q)["nearest"]);
      } else if (!q->is_object()) {
        slots.push_back(&*q);
      }
    }
    std::set<std::string> ids;
    FATHOM_RETURN_IF_ERROR(ResolveIds(m, slots, vector_name, read, &ids));
    size_t limit = 0, offset = 0;
    FATHOM_ASSIGN_OR_RETURN(Json shard_body, ShardSearch(body, &limit, &offset));
    shard_body["limit"] = limit + offset + ids.size();  // room for the examples, dropped below
    ReadOptions strict = read;
    strict.partial = false;
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> answers,
                            AskAll(m, op, shard_body.dump(), strict));
    std::vector<Json> lists;
    for (const std::string& a : answers) {
      Json j = Json::parse(a);
      lists.push_back(op == "query" ? j["points"] : j);
    }
    Json hits = MergeHits(lists, false, limit, offset, ids);
    return op == "query" ? Json{{"points", std::move(hits)}} : hits;
  }

  // POST .../points/recommend and .../points/query; with `batch`, their /batch forms.
  Reply Examples(const ApiRequest& req, const std::string& op, bool batch) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    if (!batch) {
      FATHOM_ASSIGN_OR_RETURN(Json hits, RunExamples(m, std::move(body), op, read));
      return Reply::Ok(hits.dump());
    }
    if (!body.is_object() || !body.contains("searches") || !body["searches"].is_array()) {
      return Status::InvalidArgument("field 'searches' must be an array of " + op + " requests");
    }
    Json out = Json::array();
    for (Json& one : body["searches"]) {
      FATHOM_ASSIGN_OR_RETURN(Json hits, RunExamples(m, std::move(one), op, read));
      out.push_back(std::move(hits));
    }
    return Reply::Ok(out.dump());
  }
  Reply Recommend(const ApiRequest& req) { return Examples(req, "recommend", false); }
  Reply RecommendBatch(const ApiRequest& req) { return Examples(req, "recommend", true); }
  Reply Query(const ApiRequest& req) { return Examples(req, "query", false); }
  Reply QueryBatch(const ApiRequest& req) { return Examples(req, "query", true); }

  // Pages through shard 0, then 1, ...: a page's next_page_offset is a point id, and its shard
  // (ShardOf) says where the next page goes on, so the cursor stays Qdrant's plain point id.
  Reply Scroll(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    if (!body.is_object())
      return Status::InvalidArgument("the scroll request must be a JSON object");
    uint64_t limit = 10;
    if (auto l = body.find("limit"); l != body.end() && !l->is_null()) {
      if (!l->is_number_unsigned() || *l == 0)
        return Status::InvalidArgument("'limit' must be a positive integer");
      limit = l->get<uint64_t>();
    }
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    Json offset = body.value("offset", Json());
    uint32_t s = 0;
    if (!offset.is_null()) {
      FATHOM_ASSIGN_OR_RETURN(PointId first, server::ParsePointId(offset, "offset"));
      s = ShardOf(first, m.shards);
    }
    Json points = Json::array();
    Json next;
    for (; s < m.shards; ++s) {
      Json one = body;
      one["limit"] = limit - points.size();
      if (offset.is_null())
        one.erase("offset");
      else
        one["offset"] = offset;
      offset = Json();
      FATHOM_ASSIGN_OR_RETURN(std::string text, AskShard(m, s, "scroll", one.dump(), "", read));
      Json page = Json::parse(text);
      for (Json& p : page["points"]) points.push_back(std::move(p));
      if (!page["next_page_offset"].is_null()) {  // (only when the page is full)
        next = page["next_page_offset"];
        break;
      }
      if (points.size() >= limit) {  // full, and this shard is done: the next page starts where
        for (++s; s < m.shards && next.is_null();
             ++s) {  // the next shard with a matching point does
          Json probe = body;
          probe["limit"] = 1;
          probe["with_payload"] = false;
          probe["with_vector"] = false;
          probe.erase("with_vectors");
          probe.erase("offset");
          FATHOM_ASSIGN_OR_RETURN(std::string first, AskShard(m, s, "scroll", probe.dump()));
          Json fp = Json::parse(first)["points"];
          if (!fp.empty()) next = fp[0]["id"];
        }
        break;
      }
    }
    return Reply::Ok(
        Json{{"points", std::move(points)}, {"next_page_offset", std::move(next)}}.dump());
  }

  Reply GetPoints(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(ReadOptions read, ParseReadOptions(req));
    FATHOM_ASSIGN_OR_RETURN(Json body, server::ParseBody(req.body, 64));
    if (!body.is_object() || !body.contains("ids") || !body["ids"].is_array()) {
      return Status::InvalidArgument("field 'ids' is required");
    }
    std::map<uint32_t, Json> by_shard;
    for (const Json& id : body["ids"]) {
      FATHOM_ASSIGN_OR_RETURN(PointId pid, server::ParsePointId(id, "ids"));
      by_shard[ShardOf(pid, m.shards)].push_back(id);
    }
    Json out = Json::array();
    for (auto& [s, ids] : by_shard) {
      Json one = body;
      one["ids"] = std::move(ids);
      FATHOM_ASSIGN_OR_RETURN(std::string answer, AskShard(m, s, "get", one.dump(), "", read));
      for (Json& p : Json::parse(answer)) out.push_back(std::move(p));
    }
    return Reply::Ok(out.dump());
  }

  Reply GetPoint(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    const std::string& id = req.params.at(1);
    FATHOM_ASSIGN_OR_RETURN(
        std::string answer,
        AskShard(m, ShardOf(server::PointIdFromPath(id), m.shards), "point", "", id));
    return Reply::Ok(std::move(answer));
  }

  // ---- Handlers: collection snapshots ----

  // POST /collections/{name}/snapshots: a directory on this node (under its snapshot directory,
  // so it is listed, downloaded as one tar and deleted as on a single node) holding cluster.json
  // (the create body, shard count, replication factor, tuned defaults and each shard's log
  // position) and shard-<s>/, a snapshot of shard s made on one of its replicas. Each shard is
  // copied at its own moment: a write that goes on meanwhile may be in some shards' copies and
  // not yet in others'.
  Reply CreateSnapshot(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(req.params.at(0)));
    FATHOM_ASSIGN_OR_RETURN(const std::string path, api_->NewSnapshotPath(m.name));
    bool made = false;
    struct Undo {
      const std::string& path;
      const bool& made;
      ~Undo() {
        std::error_code ec;
        if (!made) fs::remove_all(path, ec);
      }
    } undo{path, made};
    Json positions = Json::array();
    for (uint32_t s = 0; s < m.shards; ++s) {
      const std::string dir = path + "/shard-" + std::to_string(s);
      std::string tried;
      std::optional<uint64_t> position;
      for (const std::string& peer : ReplicaOrder(m, s)) {
        uint64_t size = 0;
        auto got = FetchShard(peer, m, s, dir, 2, &size, [](uint64_t) { return Status::OK(); });
        if (got.ok()) {
          position = *got;
          break;
        }
        std::error_code ec;
        fs::remove_all(dir, ec);
        tried.append(tried.empty() ? "" : "; ").append(peer + ": " + got.status().message());
      }
      if (!position) {
        return Status::Unavailable("no replica of shard " + std::to_string(s) + " of '" + m.name +
                                   "' made a snapshot (" + tried + ")");
      }
      positions.push_back(*position);
    }
    const Json manifest{{"fathom_cluster_snapshot", 1},
                        {"name", m.name},
                        {"shards", m.shards},
                        {"replication_factor", m.replication},
                        {"body", m.body},
                        {"search_defaults", m.search_defaults},
                        {"log_positions", positions}};
    {
      std::ofstream out(path + "/cluster.json", std::ios::trunc);
      out << manifest.dump(2) << "\n";
      out.close();
      if (!out) return Status::IOError("cannot write '" + path + "/cluster.json' (disk full?)");
    }
    made = true;
    spdlog::info("cluster: snapshot '{}' of '{}' ({} shards) written to {}",
                 fs::path(path).filename().string(), m.name, m.shards, path);
    return Reply::Ok(api_->DescribeSnapshot(path, m.name).dump());
  }

  // PUT /collections/{name}/snapshots/recover: {"location": URL} (http:// or a file:// under
  // this node's snapshot directory) or {"snapshot": one of this node's}, optionally under another
  // "name". Creates the collection across the cluster as it was (shard count, replication,
  // settings, payload indexes, tuned defaults) and writes every point of every shard's copy
  // through the log, in batches: the new collection's replicas get them as any write.
  Reply RecoverSnapshot(const ApiRequest& req) {
    FATHOM_ASSIGN_OR_RETURN(
        const std::string target,
        api_->RecoverWith(req, [&](const std::string& dir, const std::string& name) {
          return RecoverInto(dir, name, req);
        }));
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(target));
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> counts,
                            AskAll(m, "count", "{\"exact\":true}"));
    uint64_t total = 0;
    for (const std::string& c : counts) total += Json::parse(c).value("count", uint64_t{0});
    return Reply::Ok(Json{{"name", target}, {"points_count", total}}.dump());
  }

  Status RecoverInto(const std::string& dir, const std::string& target, const ApiRequest& req) {
    std::ifstream in(dir + "/cluster.json");
    if (!in) {
      return Status::InvalidArgument(
          "not a cluster snapshot (it has no cluster.json): a single node's snapshot is recovered "
          "on a single node");
    }
    const Json manifest = Json::parse(in, nullptr, false);
    if (!manifest.is_object() || !manifest.contains("shards") || !manifest.contains("body")) {
      return Status::Corruption("cluster.json of the snapshot is not a cluster snapshot manifest");
    }
    const uint32_t shards = manifest["shards"].get<uint32_t>();
    Json body = manifest["body"];
    body["shard_number"] = shards;
    body["replication_factor"] = manifest.value("replication_factor", 1);
    ApiRequest create;
    const std::string create_body = body.dump();
    create.body = create_body;
    create.params = {target};
    FATHOM_RETURN_IF_ERROR(AsResult(CreateCollection(create)).status());
    FATHOM_ASSIGN_OR_RETURN(Meta m, FindMeta(target));
    for (uint32_t s = 0; s < shards; ++s) {
      const std::string temp = "_recover-" + RandomHex(12);
      FATHOM_RETURN_IF_ERROR(api_->RestoreLocal(dir + "/shard-" + std::to_string(s), temp));
      struct Drop {
        server::Api* api;
        std::string name;
        ~Drop() {
          ApiRequest drop;
          drop.params = {name};
          (void)api->DeleteCollection(drop);
        }
      } drop{api_, temp};
      FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> copy, api_->LocalCollection(temp));
      ScrollRequest scroll;
      scroll.limit = 256;
      scroll.with_payload = true;
      scroll.with_vectors = true;
      for (;;) {
        FATHOM_ASSIGN_OR_RETURN(ScrollPage page, copy->Scroll(scroll));
        if (page.points.empty()) break;
        Json points = Json::array();
        for (const Record& r : page.points) {
          Json p{{"id", IdJson(r.id)}};
          if (r.vectors.size() == 1 && r.vectors.begin()->first.empty()) {
            p["vector"] = r.vectors.begin()->second;
          } else {
            p["vector"] = Json::object();
            for (const auto& [name, v] : r.vectors) p["vector"][name] = v;
          }
          p["payload"] = r.payload.empty() ? Json::object() : Json::parse(r.payload);
          points.push_back(std::move(p));
        }
        ApiRequest upsert;
        const std::string upsert_body = Json{{"points", std::move(points)}}.dump();
        upsert.body = upsert_body;
        upsert.params = {target};
        FATHOM_RETURN_IF_ERROR(AsResult(Upsert(upsert)).status());
        if (!page.next_offset) break;
        scroll.offset = page.next_offset;
      }
    }
    const Json tuned = manifest.value("search_defaults", Json::object());
    for (const auto& [vector, d] : tuned.items()) {
      FATHOM_RETURN_IF_ERROR(
          AsResult(SetDefaults(m, vector, DefaultsFromJson(d), req, Json::object())).status());
    }
    spdlog::info("cluster: recovered '{}' ({} shards) from a snapshot", target, shards);
    return Status::OK();
  }

  // ---- Handlers: cluster status ----

  // This node's replicas: position, points and health; with `checksums` a content checksum each
  // (reads every point: for tests and audits, not for monitoring).
  Json StatusJson(bool checksums) {
    std::vector<std::shared_ptr<Applier>> list;
    {
      std::lock_guard lock(mu_);
      for (auto& [local, a] : appliers_) list.push_back(a);
    }
    Json shards = Json::array();
    for (const auto& a : list) {
      Json s{{"collection", a->meta().name},
             {"shard", a->shard()},
             {"local_name", a->meta().Local(a->shard())},
             {"applied", a->applied()},
             {"last_seq", a->last_seq()},
             {"points", a->collection()->Count()},
             {"apply_errors", a->apply_errors()}};
      if (a->needs_snapshot()) s["needs_snapshot"] = true;
      if (std::string e = a->error(); !e.empty()) s["error"] = e;
      Json tuned = Json::object();  // (POST /collections/{name}/tune)
      for (const VectorSpec& v : a->collection()->spec().vectors) {
        if (Json d = DefaultsJson(a->collection()->search_defaults(v.name)); !d.is_null())
          tuned[v.name] = std::move(d);
      }
      if (!tuned.empty()) s["search_defaults"] = std::move(tuned);
      Json fields = Json::object();
      for (const auto& [field, type] : a->collection()->spec().indexed_fields)
        fields[field] = FieldTypeName(type);
      s["indexed_fields"] = std::move(fields);
      if (checksums) {
        auto sum = Checksum(a->collection());
        if (sum.ok())
          s["checksum"] = *sum;
        else
          s["checksum_error"] = sum.status().message();
      }
      shards.push_back(std::move(s));
    }
    Json installing = Json::array();
    {
      std::lock_guard lock(mu_);
      for (const auto& [local, f] : installs_) {
        if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
          installing.push_back(local);
      }
    }
    return Json{{"node", o_.node_id},
                {"durable", o_.durable_applies},  // applied entries are on disk (fsync)
                {"shards", std::move(shards)},
                {"installing", std::move(installing)},
                {"snapshots_installed", snapshots_installed_.load()},
                {"snapshots_sent", snapshots_sent_.load()}};
  }

  // An order-independent hash of every point (id, vectors, payload).
  static Result<std::string> Checksum(Collection* c) {
    uint64_t sum = 0;
    ScrollRequest page;
    page.limit = 1000;
    page.with_payload = true;
    page.with_vectors = true;
    for (;;) {
      FATHOM_ASSIGN_OR_RETURN(ScrollPage p, c->Scroll(page));
      for (const Record& r : p.points) {
        std::string bytes = PointIdToString(r.id) + "\x1f" + r.payload;
        for (const auto& [name, v] : r.vectors) {
          bytes += "\x1f" + name + "\x1f";
          bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
        }
        uint64_t h = 1469598103934665603ull;  // FNV-1a
        for (unsigned char ch : bytes) h = (h ^ ch) * 1099511628211ull;
        sum += h;
      }
      if (!p.next_offset) break;
      page.offset = p.next_offset;
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(sum));
    return std::string(hex);
  }

  Reply LocalStatus(const ApiRequest&) { return Reply::Ok(StatusJson(true)["shards"].dump()); }

  Reply LocalScroll(const ApiRequest& req) { return api_->ScrollPoints(req); }
  Reply LocalPoints(const ApiRequest& req) { return api_->GetPoints(req); }

  // How far position `applied` is behind shard s's log (`current`: the state of the stream of the
  // shard's current epoch): the entries it has not applied, and when the oldest of them was
  // stored (nanoseconds since the epoch, UTC; 0 when none is missing or NATS cannot say).
  std::pair<uint64_t, int64_t> Behind(const Meta& m, uint32_t s, uint64_t applied,
                                      const Nats::StreamState& current) {
    const uint32_t epoch = m.Epoch(s);
    uint64_t lag = 0;
    int64_t oldest = 0;
    if (EpochOf(applied) > epoch) return {0, 0};  // (the metadata here is a moment old)
    for (uint32_t e = std::max(EpochOf(applied), epoch > 64 ? epoch - 64 : 0); e <= epoch; ++e) {
      const uint64_t from = e == EpochOf(applied) ? SeqOf(applied) : 0;
      uint64_t last = current.last_seq;
      if (e != epoch) {
        auto state = nats_->GetStreamState(m.Stream(s, e));
        if (!state.ok()) continue;
        last = state->last_seq;
      }
      if (last <= from) continue;
      lag += last - from;
      if (oldest == 0) {
        if (auto stored = nats_->MessageTime(m.Stream(s, e), from + 1); stored.ok())
          oldest = *stored;
      }
    }
    return {lag, oldest};
  }

  Reply ClusterStatus(const ApiRequest&) {
    std::map<std::string, Meta> metas;
    std::set<std::string> live, stale;
    {
      std::lock_guard lock(mu_);
      metas = metas_;
      live = live_;
      stale = stale_;
    }
    for (const std::string& name : stale) {  // changed since the sync: as the bucket has it now
      auto value = collections_kv_->Get(name);
      auto fresh =
          value.ok() && *value ? Meta::Decode(**value) : Result<Meta>(Status::NotFound(""));
      if (fresh.ok()) {
        metas[name] = std::move(fresh).value();
      } else if (value.ok()) {
        metas.erase(name);  // dropped
      }
    }
    std::set<std::string> nodes = live;
    for (const auto& [name, m] : metas) {
      for (const auto& r : m.assignment) nodes.insert(r.begin(), r.end());
    }
    const std::map<std::string, Result<Json>> status = AskNodes(nodes);
    Json node_list = Json::array();
    for (const std::string& n : nodes) {
      const auto& st = status.at(n);
      Json entry{{"id", n}, {"heartbeat", live.count(n) > 0}, {"alive", st.ok()}};
      if (!st.ok()) entry["error"] = st.status().message();
      node_list.push_back(std::move(entry));
    }
    Json collections = Json::array();
    size_t unavailable = 0;
    for (const auto& [name, m] : metas) {
      Json shards = Json::array();
      for (uint32_t s = 0; s < m.shards; ++s) {
        auto stream = nats_->GetStreamState(m.Stream(s));
        Json replicas = Json::array();
        bool available = false;
        for (const std::string& node : m.assignment[s]) {
          const auto& st = status.at(node);
          // alive: the node answers; ready: it holds this replica and applies its log.
          Json r{{"node", node}, {"alive", st.ok()}, {"ready", false}};
          if (st.ok()) {
            for (const Json& sh : (*st)["shards"]) {
              if (sh.value("local_name", "") != m.Local(s)) continue;
              r["ready"] = true;
              r["applied"] = sh["applied"];
              r["points"] = sh["points"];
              const uint64_t applied = sh["applied"].get<uint64_t>();
              if (stream.ok()) {
                const auto [lag, oldest] = Behind(m, s, applied, *stream);
                r["lag"] = lag;
                r["lag_seconds"] = 0.0;
                if (oldest > 0) {  // how long the oldest entry it misses has waited
                  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
                  r["lag_seconds"] = std::max<double>(0.0, double(now - oldest) / 1e9);
                }
              }
              if (sh.contains("error")) r["error"] = sh["error"];
            }
            for (const Json& local : (*st).value("installing", Json::array())) {
              if (local == m.Local(s)) r["installing_snapshot"] = true;
            }
          }
          available = available || r["ready"].get<bool>();
          replicas.push_back(std::move(r));
        }
        if (!available) ++unavailable;
        Json shard{{"shard", s}, {"available", available}, {"replicas", std::move(replicas)}};
        if (stream.ok()) {
          shard["last_seq"] = Pos(m.Epoch(s), stream->last_seq);
          shard["epoch"] = m.Epoch(s);              // the stream that takes writes
          shard["first_epoch"] = m.FirstEpoch(s);   // the oldest kept (--log-retain)
          shard["log_entries"] = stream->messages;  // in the current epoch's stream
        } else {
          shard["log_error"] = stream.status().message();
        }
        shards.push_back(std::move(shard));
      }
      collections.push_back(Json{{"name", name},
                                 {"shard_number", m.shards},
                                 {"replication_factor", m.replication},
                                 {"shards", std::move(shards)}});
    }
    unavailable_shards_.store(unavailable);
    Json answer{{"status", "enabled"},
                {"node_id", o_.node_id},
                {"nats_connected", nats_->connected()},
                {"nodes", std::move(node_list)},
                {"collections", std::move(collections)}};
    if (Json job = RebalanceJson(); !job.is_null()) answer["rebalance"] = std::move(job);
    return Reply::Ok(answer.dump());
  }

  server::Api* const api_;
  const ClusterOptions o_;
  std::unique_ptr<Nats> nats_;
  std::unique_ptr<KeyValue> collections_kv_;
  std::unique_ptr<KeyValue> nodes_kv_;
  std::unique_ptr<KeyValue> dropped_kv_;
  // When this node first saw a local collection's gen missing from the metadata with its log
  // gone too, without a tombstone (only Reconcile touches it).
  std::map<std::string, Clock::time_point> gone_since_;

  mutable std::mutex mu_;
  std::map<std::string, Meta> metas_;  // guarded by mu_
  std::set<std::string> stale_;        // metas_ entries announced changed since the sync (mu_)
  std::map<std::string, std::shared_ptr<Applier>> appliers_;  // by local name; guarded by mu_
  std::set<std::string> live_;                  // nodes with a heartbeat; guarded by mu_
  std::map<std::string, std::string> aliases_;  // alias -> collection, synced; guarded by mu_
  std::set<std::string> pending_gens_;          // collections being created here; guarded by mu_
  size_t rotation_ = 0;                         // guarded by mu_
  std::atomic<size_t> unavailable_shards_{0};
  // Replicas being installed from a peer's snapshot (local name -> its thread), and when one
  // that failed may be tried again; guarded by mu_.
  std::map<std::string, std::future<void>> installs_;
  std::map<std::string, Clock::time_point> install_retry_;
  std::atomic<uint64_t> snapshots_installed_{0};
  std::atomic<uint64_t> snapshots_sent_{0};
  std::atomic<uint64_t> entries_trimmed_{0};

  // Shard snapshots this node is making or sending to peers, by id.
  struct Transfer {
    std::string local;  // the replica it copies
    std::string path;   // the archive
    bool ready = false;
    bool cancelled = false;  // done before it was ready: removed when its maker finishes
    std::string error;       // set when making it failed
    uint64_t size = 0;
    uint32_t crc = 0;
    uint64_t log_position = 0;
    Clock::time_point touched;
  };
  struct RebalanceJob {
    std::string state;  // "" (none yet), "running", "done", "failed"
    std::vector<Move> moves;
    size_t done = 0;
    std::string error;
    bool automatic = false;  // started by --auto-rebalance, not by a request
    Clock::time_point finished;
  };
  std::mutex rebalance_mu_;
  RebalanceJob rebalance_;        // guarded by rebalance_mu_
  std::thread rebalance_thread_;  // guarded by rebalance_mu_
  // --auto-rebalance: when each node holding a replica was first seen without a heartbeat
  // (while this node decides); the sync thread's own.
  std::map<std::string, Clock::time_point> missing_since_;
  std::mutex transfers_mu_;
  std::map<std::string, Transfer> transfers_;  // guarded by transfers_mu_
  std::vector<std::future<void>> makers_;      // threads making transfers; guarded by transfers_mu_

  std::mutex reconcile_mu_;
  std::atomic<bool> stopped_{false};
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool reconcile_now_ = false;  // guarded by sync_mu_
  std::thread sync_thread_;
  std::thread beat_thread_;

  natsSubscription* rpc_sub_ = nullptr;
  std::mutex rpc_mu_;
  std::condition_variable rpc_cv_;
  std::deque<MsgPtr> rpc_queue_;  // guarded by rpc_mu_
  std::vector<std::thread> workers_;
};

}  // namespace

std::vector<std::string> SplitUrls(std::string_view list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view part = list.substr(start, comma - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    start = comma + 1;
  }
  return out;
}

Status ValidateNodeId(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return Status::InvalidArgument("--node-id must be 1 to 64 characters");
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return Status::InvalidArgument("--node-id '" + std::string(id) +
                                     "' may hold only letters, digits, '-' and '_'");
    }
  }
  return Status::OK();
}

uint32_t ShardOf(const PointId& id, uint32_t shards) {
  uint64_t h;
  if (const auto* n = std::get_if<uint64_t>(&id)) {
    h = *n + 0x9e3779b97f4a7c15ull;  // splitmix64's finaliser
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  } else {
    h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : std::get<std::string>(id)) h = (h ^ c) * 1099511628211ull;
  }
  return uint32_t(h % shards);
}

Result<std::unique_ptr<server::ServerExtension>> StartNode(server::Api* api,
                                                           const ClusterOptions& options) {
  FATHOM_RETURN_IF_ERROR(ValidateNodeId(options.node_id));
  auto node = std::make_unique<Node>(api, options);
  if (Status s = node->Start(); !s.ok()) {
    node->Stop();
    return s;
  }
  return std::unique_ptr<server::ServerExtension>(std::move(node));
}

}  // namespace fathom::cluster
