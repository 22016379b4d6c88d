#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>

#include <spdlog/spdlog.h>

#include "db/collection.h"
#include "db/record_codec.h"
#include "fathom/database.h"
#include "storage/kv_store.h"
#include "util/file.h"

namespace fathom {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSpecPrefix = "collection/";
constexpr const char* kAliasPrefix = "alias/";  // alias/<name> -> the collection it names
constexpr const char* kNextIdKey = "next_collection_id";
// The database directory's format (docs/format/database.md); absent in directories made before
// it existed, which are version 1.
constexpr const char* kFormatVersionKey = "format_version";
// 2 (2026-12): a record's vectors live in the vectors column family, apart from its id and
// payload. Version 1 stores are read as they are (inline vectors) and marked 2 on open.
constexpr uint32_t kFormatVersion = 2;

class DatabaseImpl final : public Database {
 public:
  DatabaseImpl(std::string dir, DatabaseOptions options, std::unique_ptr<KvStore> kv)
      : dir_(std::move(dir)), options_(options), kv_(std::move(kv)) {}
  ~DatabaseImpl() override {
    Status s = Close();
    if (!s.ok()) spdlog::error("closing database '{}': {}", dir_, s.ToString());
  }

  Status Load() {
    FATHOM_ASSIGN_OR_RETURN(auto format, kv_->Get(Cf::kMeta, kFormatVersionKey));
    const uint32_t version = format && format->size() == 4 ? ReadBigEndian32(format->data()) : 0;
    if (version > kFormatVersion) {
      return Status::NotSupported("database '" + dir_ + "' has format version " + std::to_string(version) +
                                  "; this build reads versions 1 to " + std::to_string(kFormatVersion) +
                                  " (it was written by a newer Fathom)");
    }
    if (version < kFormatVersion) {
      std::string value;
      AppendBigEndian32(&value, kFormatVersion);
      KvStore::Batch batch(*kv_);
      batch.Put(Cf::kMeta, kFormatVersionKey, value);
      if (Status s = kv_->Write(batch); !s.ok()) {
        spdlog::warn("database '{}': cannot record its format version yet: {}", dir_, s.ToString());
      }
    }
    std::vector<std::pair<CollectionSpec, uint32_t>> specs;
    Status decode;
    FATHOM_RETURN_IF_ERROR(kv_->Scan(Cf::kMeta, kSpecPrefix, [&](std::string_view, std::string_view v) {
      CollectionSpec spec;
      uint32_t id;
      decode = DecodeSpec(v, &spec, &id);
      if (!decode.ok()) return false;
      specs.emplace_back(std::move(spec), id);
      return true;
    }));
    FATHOM_RETURN_IF_ERROR(decode);
    FATHOM_RETURN_IF_ERROR(kv_->Scan(Cf::kMeta, kAliasPrefix, [&](std::string_view key, std::string_view v) {
      aliases_[std::string(key.substr(std::string_view(kAliasPrefix).size()))] = std::string(v);
      return true;
    }));
    for (auto& [spec, id] : specs) {
      std::string name = spec.name;
      FATHOM_ASSIGN_OR_RETURN(auto collection,
                              CollectionImpl::Open(kv_.get(), IndexDir(id), std::move(spec), id, options_));
      collections_[name] = std::move(collection);
    }
    return Status::OK();
  }

  Status Close() override {
    std::lock_guard restore(restore_mutex_);  // a running restore finishes first
    std::unique_lock lock(mutex_);
    if (!kv_) return Status::OK();
    Status first;
    // Each collection waits for its running calls, checkpoints, and refuses later ones: handles
    // held elsewhere outlive the store they used.
    for (auto& [name, collection] : collections_) {
      Status s = collection->Retire(
          Status::FailedPrecondition("database '" + dir_ + "' is closed"), /*checkpoint=*/true);
      if (!s.ok() && first.ok()) first = s;
    }
    collections_.clear();
    kv_.reset();
    return first;
  }

  std::vector<std::string> ListCollections() const override {
    std::shared_lock lock(mutex_);
    std::vector<std::string> names;
    for (const auto& [name, c] : collections_) names.push_back(name);
    return names;
  }

  Result<std::shared_ptr<Collection>> CreateCollection(const CollectionSpec& spec) override {
    FATHOM_RETURN_IF_ERROR(CollectionImpl::ValidateSpec(spec));
    std::unique_lock lock(mutex_);
    FATHOM_RETURN_IF_ERROR(CheckOpen());
    if (collections_.count(spec.name) != 0) {
      return Status::AlreadyExists("collection '" + spec.name + "' already exists");
    }
    if (aliases_.count(spec.name) != 0) {
      return Status::AlreadyExists("'" + spec.name + "' is an alias (of collection '" + aliases_.at(spec.name) +
                                   "'); delete the alias first or choose another name");
    }
    FATHOM_ASSIGN_OR_RETURN(uint32_t id, NextCollectionId());
    FATHOM_RETURN_IF_ERROR(WriteSpec(spec, id));
    FATHOM_ASSIGN_OR_RETURN(auto collection,
                            CollectionImpl::Open(kv_.get(), IndexDir(id), spec, id, options_));
    collections_[spec.name] = collection;
    spdlog::info("created collection '{}'", spec.name);
    return std::shared_ptr<Collection>(std::move(collection));
  }

  Status CreatePayloadIndex(const std::string& name, const std::string& field, FieldType type) override {
    return SetPayloadIndex(name, field, type);
  }
  Status DropPayloadIndex(const std::string& name, const std::string& field) override {
    return SetPayloadIndex(name, field, std::nullopt);
  }

  Status SetPayloadIndex(const std::string& name, const std::string& field, std::optional<FieldType> type) {
    std::shared_ptr<CollectionImpl> collection;
    {
      std::shared_lock lock(mutex_);
      FATHOM_RETURN_IF_ERROR(CheckOpen());
      FATHOM_ASSIGN_OR_RETURN(collection, FindLocked(name));
    }
    // The build runs without mutex_ (other collections and calls go on); the spec record is
    // written under spec_mutex_, as metadata updates write it, so neither loses the other's change.
    return collection->SetPayloadIndex(field, type, [&](const CollectionSpec& next) {
      std::lock_guard spec_lock(spec_mutex_);
      CollectionSpec stored = next;
      stored.metadata = collection->metadata();
      FATHOM_RETURN_IF_ERROR(WriteSpec(stored, collection->id()));
      collection->PublishSpec(next);
      return Status::OK();
    });
  }

  Result<std::string> UpdateCollectionMetadata(const std::string& name, const std::string& changes) override {
    auto patch = nlohmann::json::parse(changes, nullptr, /*allow_exceptions=*/false);
    if (patch.is_discarded() || !patch.is_object()) {
      return Status::InvalidArgument("collection metadata must be a JSON object");
    }
    std::unique_lock lock(mutex_);  // read, merge and store: one update at a time
    std::lock_guard spec_lock(spec_mutex_);
    FATHOM_RETURN_IF_ERROR(CheckOpen());
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<CollectionImpl> collection, FindLocked(name));
    auto merged = nlohmann::json::parse(collection->metadata(), nullptr, /*allow_exceptions=*/false);
    if (!merged.is_object()) merged = nlohmann::json::object();
    for (const auto& [key, value] : patch.items()) {
      if (value.is_null()) merged.erase(key); else merged[key] = value;
    }
    const std::string metadata = merged.dump();
    FATHOM_RETURN_IF_ERROR(ValidateCollectionMetadata(metadata));
    CollectionSpec spec = collection->spec();
    spec.metadata = metadata;
    FATHOM_RETURN_IF_ERROR(WriteSpec(spec, collection->id()));
    collection->set_metadata(metadata);
    return metadata;
  }

  Status DropCollection(const std::string& name) override {
    std::unique_lock lock(mutex_);
    FATHOM_RETURN_IF_ERROR(CheckOpen());
    auto it = collections_.find(name);
    if (it == collections_.end()) return Status::NotFound("collection '" + name + "' does not exist");
    std::shared_ptr<CollectionImpl> collection = it->second;
    // Waits for calls running on it; later calls through handles still held fail cleanly.
    (void)collection->Retire(Status::NotFound("collection '" + name + "' was dropped"),
                             /*checkpoint=*/false);
    uint32_t id = collection->id();
    std::string prefix = CollectionPrefix(id);
    std::string end = CollectionPrefix(id + 1);
    KvStore::Batch batch(*kv_);
    batch.Delete(Cf::kMeta, kSpecPrefix + name);
    batch.Delete(Cf::kMeta, "trimmed/" + prefix);
    batch.Delete(Cf::kMeta, "logpos/" + prefix);
    batch.Delete(Cf::kMeta, "recall/" + prefix);
    batch.Delete(Cf::kMeta, "tuned/" + prefix);
    std::vector<std::string> dropped_aliases;
    for (const auto& [alias, target] : aliases_) {
      if (target == name) {
        batch.Delete(Cf::kMeta, kAliasPrefix + alias);
        dropped_aliases.push_back(alias);
      }
    }
    batch.DeleteRange(Cf::kRecords, prefix, end);
    batch.DeleteRange(Cf::kVectors, prefix, end);
    batch.DeleteRange(Cf::kOplog, prefix, end);
    if (Status s = kv_->Write(batch); !s.ok()) {
      collection->Unretire();
      return s;
    }
    collections_.erase(it);
    for (const auto& alias : dropped_aliases) aliases_.erase(alias);
    std::error_code ec;
    fs::remove_all(IndexDir(id), ec);
    spdlog::info("dropped collection '{}'", name);
    return Status::OK();
  }

  Result<std::shared_ptr<Collection>> GetCollection(const std::string& name) const override {
    std::shared_lock lock(mutex_);
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<CollectionImpl> collection, FindLocked(name));
    return std::shared_ptr<Collection>(std::move(collection));
  }

  // A collection by name or alias (a collection's own name first). Caller holds mutex_.
  Result<std::shared_ptr<CollectionImpl>> FindLocked(const std::string& name) const {
    auto it = collections_.find(name);
    if (it == collections_.end()) {
      if (auto alias = aliases_.find(name); alias != aliases_.end()) it = collections_.find(alias->second);
    }
    if (it == collections_.end()) return Status::NotFound("collection '" + name + "' does not exist");
    return it->second;
  }

  // Stores a collection's spec record (durably, one write).
  Status WriteSpec(const CollectionSpec& spec, uint32_t id) {
    KvStore::Batch batch(*kv_);
    batch.Put(Cf::kMeta, kSpecPrefix + spec.name, EncodeSpec(spec, id));
    return kv_->Write(batch);
  }

  Status UpdateAliases(const std::vector<AliasOperation>& operations) override {
    std::unique_lock lock(mutex_);
    FATHOM_RETURN_IF_ERROR(CheckOpen());
    std::map<std::string, std::string> next = aliases_;
    FATHOM_RETURN_IF_ERROR(ApplyAliasOperations(
        operations, [&](const std::string& name) { return collections_.count(name) != 0; }, &next));
    KvStore::Batch batch(*kv_);
    for (const auto& [alias, target] : aliases_) {
      if (next.count(alias) == 0) batch.Delete(Cf::kMeta, kAliasPrefix + alias);
    }
    for (const auto& [alias, target] : next) {
      auto old = aliases_.find(alias);
      if (old == aliases_.end() || old->second != target) batch.Put(Cf::kMeta, kAliasPrefix + alias, target);
    }
    FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
    aliases_ = std::move(next);
    return Status::OK();
  }

  std::map<std::string, std::string> ListAliases() const override {
    std::shared_lock lock(mutex_);
    return aliases_;
  }

  Result<std::shared_ptr<Collection>> RestoreSnapshot(const std::string& snapshot_dir,
                                      const std::string& new_name) override {
    FATHOM_ASSIGN_OR_RETURN(std::string spec_text, ReadFile(snapshot_dir + "/collection.json"));
    CollectionSpec spec;
    uint32_t ignored;
    FATHOM_RETURN_IF_ERROR(DecodeSpec(spec_text, &spec, &ignored));
    if (!new_name.empty()) spec.name = new_name;
    FATHOM_RETURN_IF_ERROR(CollectionImpl::ValidateSpec(spec));
    // The import and the open (O(collection): minutes for a large one) run without the database
    // lock, so every other collection serves and writes meanwhile; one restore at a time, and
    // Close waits for it (restore_mutex_). The name is checked before and again at the end.
    std::lock_guard restore(restore_mutex_);
    auto name_taken = [&]() -> Status {
      FATHOM_RETURN_IF_ERROR(CheckOpen());
      if (collections_.count(spec.name) != 0) {
        return Status::AlreadyExists("collection '" + spec.name + "' already exists");
      }
      if (aliases_.count(spec.name) != 0) {
        return Status::AlreadyExists("'" + spec.name + "' is an alias; delete the alias first or choose another name");
      }
      return Status::OK();
    };
    uint32_t id = 0;
    {
      std::unique_lock lock(mutex_);
      FATHOM_RETURN_IF_ERROR(name_taken());
      FATHOM_ASSIGN_OR_RETURN(id, NextCollectionId());
    }
    // Whatever an unfinished restore wrote under `id` goes (a crash before the spec is written
    // leaves such orphan records too, never a half collection: the spec goes in last).
    auto discard = [&](Status why, const std::shared_ptr<CollectionImpl>& opened) -> Status {
      if (opened) (void)opened->Retire(why, /*checkpoint=*/false);
      const std::string prefix = CollectionPrefix(id), end = CollectionPrefix(id + 1);
      KvStore::Batch batch(*kv_);
      for (const char* key : {"trimmed/", "logpos/", "recall/", "tuned/"}) batch.Delete(Cf::kMeta, key + prefix);
      batch.DeleteRange(Cf::kRecords, prefix, end);
      batch.DeleteRange(Cf::kVectors, prefix, end);
      batch.DeleteRange(Cf::kOplog, prefix, end);
      (void)kv_->Write(batch);
      std::error_code ec;
      fs::remove_all(IndexDir(id), ec);
      return why;
    };
    if (Status s = CollectionImpl::ImportSnapshot(kv_.get(), snapshot_dir, IndexDir(id), id); !s.ok()) {
      return discard(s, nullptr);
    }
    auto opened = CollectionImpl::Open(kv_.get(), IndexDir(id), spec, id, options_);
    if (!opened.ok()) return discard(opened.status(), nullptr);
    std::shared_ptr<CollectionImpl> collection = std::move(opened).value();
    std::unique_lock lock(mutex_);
    if (Status s = name_taken(); !s.ok()) return discard(s, collection);
    if (Status s = WriteSpec(spec, id); !s.ok()) return discard(s, collection);
    collections_[spec.name] = collection;
    return std::shared_ptr<Collection>(std::move(collection));
  }

 private:
  std::string IndexDir(uint32_t id) const { return dir_ + "/indexes/" + std::to_string(id); }

  Status CheckOpen() const {
    if (!kv_) return Status::FailedPrecondition("database '" + dir_ + "' is closed");
    return Status::OK();
  }

  Result<uint32_t> NextCollectionId() {
    FATHOM_ASSIGN_OR_RETURN(auto value, kv_->Get(Cf::kMeta, kNextIdKey));
    uint32_t id = value ? ReadBigEndian32(value->data()) : 1;
    std::string next;
    AppendBigEndian32(&next, id + 1);
    KvStore::Batch batch(*kv_);
    batch.Put(Cf::kMeta, kNextIdKey, next);
    FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
    return id;
  }

  const std::string dir_;
  const DatabaseOptions options_;
  mutable std::shared_mutex mutex_;
  std::mutex restore_mutex_;  // one RestoreSnapshot at a time; taken before mutex_
  // Held while a collection's spec record is rewritten (metadata, payload indexes); after
  // mutex_ where both are taken.
  std::mutex spec_mutex_;
  std::unique_ptr<KvStore> kv_;
  std::map<std::string, std::shared_ptr<CollectionImpl>> collections_;
  std::map<std::string, std::string> aliases_;  // alias -> collection, as stored under kAliasPrefix
};

}  // namespace

Status ApplyAliasOperations(const std::vector<AliasOperation>& operations,
                            const std::function<bool(const std::string&)>& is_collection,
                            std::map<std::string, std::string>* aliases) {
  std::map<std::string, std::string>& next = *aliases;
  auto check_new = [&](const std::string& alias) -> Status {
    if (Status s = ValidateCollectionName(alias); !s.ok()) {
      return Status::InvalidArgument("alias: " + s.message());
    }
    if (is_collection(alias)) {
      return Status::AlreadyExists("alias '" + alias + "' is the name of a collection");
    }
    if (next.count(alias) != 0) {
      return Status::AlreadyExists("alias '" + alias + "' already exists (of collection '" + next.at(alias) +
                                   "'); delete it first in the same request to switch it");
    }
    return Status::OK();
  };
  for (size_t i = 0; i < operations.size(); ++i) {
    const AliasOperation& op = operations[i];
    const std::string where = "alias action " + std::to_string(i) + ": ";
    switch (op.kind) {
      case AliasOperation::Kind::kCreate: {
        if (Status s = check_new(op.alias); !s.ok()) return Status(s.code(), where + s.message());
        if (!is_collection(op.collection)) {
          return Status::NotFound(where + "collection '" + op.collection + "' does not exist");
        }
        next[op.alias] = op.collection;
        break;
      }
      case AliasOperation::Kind::kDelete:
        if (next.erase(op.alias) == 0) return Status::NotFound(where + "alias '" + op.alias + "' does not exist");
        break;
      case AliasOperation::Kind::kRename: {
        auto it = next.find(op.alias);
        if (it == next.end()) return Status::NotFound(where + "alias '" + op.alias + "' does not exist");
        std::string target = it->second;
        next.erase(it);
        if (Status s = check_new(op.new_alias); !s.ok()) return Status(s.code(), where + s.message());
        next[op.new_alias] = std::move(target);
        break;
      }
    }
  }
  return Status::OK();
}

Result<std::unique_ptr<Database>> Database::Open(const std::string& dir, const DatabaseOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(auto kv, KvStore::Open(dir + "/store", options.durability == Durability::kFsync, options.env));
  kv->set_min_free_bytes(options.min_free_disk_bytes);
  auto db = std::make_unique<DatabaseImpl>(dir, options, std::move(kv));
  FATHOM_RETURN_IF_ERROR(db->Load());
  return std::unique_ptr<Database>(std::move(db));
}

Result<RepairReport> Database::Repair(const std::string& dir) {
  const std::string store_dir = dir + "/store";
  std::error_code ec;
  if (!fs::exists(store_dir + "/CURRENT", ec) && !fs::exists(store_dir, ec)) {
    return Status::NotFound("'" + dir + "' holds no Fathom database (no store/)");
  }
  RepairReport report;
  FATHOM_RETURN_IF_ERROR(KvStore::Repair(store_dir));
  if (fs::exists(store_dir + "/lost", ec)) {
    for (const auto& entry : fs::recursive_directory_iterator(store_dir + "/lost", ec)) {
      if (entry.is_regular_file(ec)) {
        report.notes.push_back("unreadable store file set aside: " + entry.path().string());
      }
    }
  }
  {
    FATHOM_ASSIGN_OR_RETURN(auto kv, KvStore::Open(store_dir, true));
    std::vector<std::pair<CollectionSpec, uint32_t>> specs;
    FATHOM_RETURN_IF_ERROR(kv->Scan(Cf::kMeta, kSpecPrefix, [&](std::string_view key, std::string_view v) {
      CollectionSpec spec;
      uint32_t id;
      if (DecodeSpec(v, &spec, &id).ok()) {
        specs.emplace_back(std::move(spec), id);
      } else {
        report.notes.push_back("undecodable collection spec removed: " + std::string(key));
      }
      return true;
    }));
    for (const auto& [spec, id] : specs) {
      RepairReport::CollectionReport c;
      c.name = spec.name;
      std::vector<std::string> bad;
      FATHOM_RETURN_IF_ERROR(kv->Scan(Cf::kRecords, CollectionPrefix(id), [&](std::string_view key, std::string_view v) {
        Record record;
        bool inline_vectors = false;
        bool ok = DecodeRecord(v, &record, true, &inline_vectors).ok();
        if (ok && !inline_vectors) {
          auto vectors = kv->Get(Cf::kVectors, key);
          ok = vectors.ok() && vectors->has_value() && DecodeVectors(**vectors, &record.vectors).ok();
        }
        if (ok) {
          ++c.records;
        } else {
          bad.emplace_back(key);
        }
        return true;
      }));
      c.undecodable = bad.size();
      KvStore::Batch batch(*kv);
      for (const auto& key : bad) {
        batch.Delete(Cf::kRecords, key);
        batch.Delete(Cf::kVectors, key);
      }
      // The log and its trim mark describe index states that no longer exist.
      batch.Delete(Cf::kMeta, "trimmed/" + CollectionPrefix(id));
      batch.DeleteRange(Cf::kOplog, CollectionPrefix(id), CollectionPrefix(id + 1));
      FATHOM_RETURN_IF_ERROR(kv->Write(batch));
      // Checkpoints: note the newest one's size, then set them all aside.
      const std::string index_dir = dir + "/indexes/" + std::to_string(id);
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(index_dir, ec)) {
        if (entry.path().extension() == ".fathom") files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
        auto seq = [](const fs::path& p) {
          std::string stem = p.stem().string();  // "<vector>.<sequence>"
          size_t dot = stem.find('.');
          return dot == std::string::npos ? 0ull : std::strtoull(stem.c_str() + dot + 1, nullptr, 10);
        };
        return seq(a) > seq(b);
      });
      for (const auto& file : files) {
        if (c.checkpoint_points == 0 && file.filename().string().rfind("0.", 0) == 0) {
          auto index = Index::Load(file.string());
          if (index.ok()) c.checkpoint_points = (*index)->size();
        }
        fs::create_directories(index_dir + "/pre-repair", ec);
        fs::rename(file, index_dir + "/pre-repair/" + file.filename().string(), ec);
        if (ec) return Status::IOError("cannot set aside '" + file.string() + "': " + ec.message());
      }
      if (!files.empty()) {
        report.notes.push_back("collection '" + spec.name + "': " + std::to_string(files.size()) +
                               " checkpoint file(s) moved to " + index_dir + "/pre-repair");
      }
      report.collections.push_back(std::move(c));
    }
  }
  // Opening rebuilds every index from its records; closing checkpoints them.
  FATHOM_ASSIGN_OR_RETURN(auto db, Database::Open(dir));
  FATHOM_RETURN_IF_ERROR(db->Close());
  return report;
}

Status Database::Restore(const std::string& snapshot_dir, const std::string& db_dir,
                         const std::string& new_name) {
  FATHOM_ASSIGN_OR_RETURN(auto kv, KvStore::Open(db_dir + "/store", true));
  DatabaseImpl db(db_dir, DatabaseOptions(), std::move(kv));
  FATHOM_RETURN_IF_ERROR(db.Load());
  FATHOM_RETURN_IF_ERROR(db.RestoreSnapshot(snapshot_dir, new_name).status());
  return db.Close();
}

}  // namespace fathom
