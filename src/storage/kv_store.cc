#include "storage/kv_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <vector>

#include "util/file.h"

namespace fathom {
namespace {

constexpr const char* kCfNames[4] = {"meta", "records", "oplog", "vectors"};

bool IsNoSpace(const rocksdb::Status& s) {
  return s.subcode() == rocksdb::Status::kNoSpace ||
         s.ToString().find("No space left on device") != std::string::npos;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  if (IsNoSpace(s)) {
    return Status::NoSpace(what + ": no space left on device; nothing was written, and writes resume "
                           "once space is freed (reads go on)");
  }
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  if (s.IsNotFound()) return Status::NotFound(what + ": " + s.ToString());
  return Status::IOError(what + ": " + s.ToString());
}

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

void AppendBigEndian32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t ReadBigEndian32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t ReadBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

KvStore::Batch::Batch(const KvStore& store)
    : store_(store), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
KvStore::Batch::~Batch() = default;

void KvStore::Batch::Put(Cf cf, std::string_view key, std::string_view value) {
  batch_->Put(store_.Handle(cf), ToSlice(key), ToSlice(value));
}
void KvStore::Batch::Delete(Cf cf, std::string_view key) {
  batch_->Delete(store_.Handle(cf), ToSlice(key));
}
void KvStore::Batch::DeleteRange(Cf cf, std::string_view begin, std::string_view end) {
  batch_->DeleteRange(store_.Handle(cf), ToSlice(begin), ToSlice(end));
}

Result<std::unique_ptr<KvStore>> KvStore::Open(const std::string& dir, bool sync, rocksdb::Env* env) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create directory '" + dir + "': " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  options.IncreaseParallelism(2);
  if (env != nullptr) options.env = env;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  cfs.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (const char* name : kCfNames) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, cfs, &handles, &raw);
  if (!s.ok() && s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    // RocksDB's LOCK file: another handle (this process or another) has the directory open.
    return Status::FailedPrecondition("database '" + dir +
                                      "' is already open (by this or another process): " +
                                      s.ToString());
  }
  if (!s.ok()) return FromRocks(s, "cannot open database '" + dir + "'");
  std::unique_ptr<KvStore> store(new KvStore());
  store->db_.reset(raw);
  store->sync_ = sync;
  store->dir_ = dir;
  // handles[0] is the default family, unused; RocksDB frees it with the DB.
  for (int i = 0; i < 4; ++i) store->handles_[i] = handles[i + 1];
  store->default_handle_ = handles[0];
  return store;
}

Status KvStore::Repair(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = false;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  cfs.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (const char* name : kCfNames) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
  return FromRocks(rocksdb::RepairDB(dir, options, cfs), "repair of '" + dir + "' failed");
}

KvStore::~KvStore() {
  if (!db_) return;
  for (auto* h : handles_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h);
  }
  if (default_handle_ != nullptr) db_->DestroyColumnFamilyHandle(default_handle_);
  db_->Close();
}

rocksdb::ColumnFamilyHandle* KvStore::Handle(Cf cf) const { return handles_[static_cast<int>(cf)]; }

Status KvStore::Write(Batch& batch) {
  FATHOM_RETURN_IF_ERROR(CheckFreeSpace(dir_, batch.batch_->GetDataSize(),
                                        min_free_bytes_.load(std::memory_order_relaxed)));
  if (write_stopped_.load(std::memory_order_acquire)) {
    // RocksDB stopped writes at the last failure (its background error); writing again before
    // it recovers touches a log writer in a failed state. Resume() flushes the memtables to new
    // files and starts a new log, and fails while the disk is still full.
    std::lock_guard lock(resume_mutex_);
    if (write_stopped_.load(std::memory_order_acquire)) {
      rocksdb::Status resumed = db_->Resume();
      if (!resumed.ok()) {
        Status s = FromRocks(resumed, "write refused");
        return s.IsNoSpace() ? s : Status::IOError("write refused: the store stopped after a failed write and "
                                                   "cannot resume yet: " + resumed.ToString());
      }
      write_stopped_.store(false, std::memory_order_release);
    }
  }
  rocksdb::WriteOptions options;
  options.sync = sync_;
  rocksdb::Status s = db_->Write(options, batch.batch_.get());
  if (!s.ok() && !s.IsInvalidArgument() && !s.IsNotSupported()) write_stopped_.store(true, std::memory_order_release);
  return FromRocks(s, "write failed");
}

Status KvStore::SyncWal() {
  if (sync_) return Status::OK();
  return FromRocks(db_->FlushWAL(/*sync=*/true), "log sync failed");
}

KvStore::ReadView::~ReadView() { db_->ReleaseSnapshot(snapshot_); }

std::unique_ptr<KvStore::ReadView> KvStore::NewReadView() const {
  return std::unique_ptr<ReadView>(new ReadView(db_.get(), db_->GetSnapshot()));
}

Result<std::optional<std::string>> KvStore::Get(Cf cf, std::string_view key, const ReadView* view) const {
  std::string value;
  rocksdb::ReadOptions options;
  if (view != nullptr) options.snapshot = view->snapshot_;
  rocksdb::Status s = db_->Get(options, Handle(cf), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  FATHOM_RETURN_IF_ERROR(FromRocks(s, "read failed"));
  return std::optional<std::string>(std::move(value));
}

Result<std::pair<std::optional<std::string>, std::optional<std::string>>> KvStore::GetBoth(
    Cf first, Cf second, std::string_view key) const {
  // One snapshot for both reads: they see the same committed writes.
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  std::pair<std::optional<std::string>, std::optional<std::string>> out;
  Status status;
  for (int i = 0; i < 2 && status.ok(); ++i) {
    std::string value;
    rocksdb::Status s = db_->Get(options, Handle(i == 0 ? first : second), ToSlice(key), &value);
    if (s.IsNotFound()) continue;
    status = FromRocks(s, "read failed");
    if (status.ok()) (i == 0 ? out.first : out.second) = std::move(value);
  }
  db_->ReleaseSnapshot(snapshot);
  FATHOM_RETURN_IF_ERROR(status);
  return out;
}

Status KvStore::Scan(Cf cf, std::string_view prefix,
                     const std::function<bool(std::string_view, std::string_view)>& fn,
                     const ReadView* view) const {
  rocksdb::ReadOptions options;
  options.fill_cache = false;
  if (view != nullptr) options.snapshot = view->snapshot_;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, Handle(cf)));
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    rocksdb::Slice key = it->key();
    if (!key.starts_with(ToSlice(prefix))) break;
    rocksdb::Slice value = it->value();
    if (!fn({key.data(), key.size()}, {value.data(), value.size()})) break;
  }
  return FromRocks(it->status(), "scan failed");
}

Result<std::optional<std::string>> KvStore::LastKey(Cf cf, std::string_view prefix) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Handle(cf)));
  // Seek past every key with this prefix, then step back.
  std::string upper(prefix);
  upper.push_back(static_cast<char>(0xff));
  upper.append(8, static_cast<char>(0xff));
  it->SeekForPrev(ToSlice(upper));
  FATHOM_RETURN_IF_ERROR(FromRocks(it->status(), "seek failed"));
  if (!it->Valid() || !it->key().starts_with(ToSlice(prefix))) return std::optional<std::string>();
  return std::optional<std::string>(it->key().ToString());
}

Status KvStore::Flush() {
  rocksdb::FlushOptions options;
  for (auto* h : handles_) FATHOM_RETURN_IF_ERROR(FromRocks(db_->Flush(options, h), "flush failed"));
  return Status::OK();
}

uint64_t KvStore::ApproximateBytes(Cf cf, std::string_view prefix) const {
  std::string end(prefix);
  // The smallest key after every key with this prefix (prefixes here never end in 0xff).
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return 0;
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  rocksdb::Range range{rocksdb::Slice(prefix.data(), prefix.size()), rocksdb::Slice(end)};
  uint64_t size = 0;
  rocksdb::SizeApproximationOptions options;
  options.include_memtables = true;
  options.include_files = true;
  if (!db_->GetApproximateSizes(options, Handle(cf), &range, 1, &size).ok()) return 0;
  return size;
}

}  // namespace fathom
