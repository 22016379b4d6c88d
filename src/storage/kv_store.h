// KvStore: the one RocksDB instance of a database directory, with the column families Fathom
// uses and nothing Fathom-specific in it (the db layer owns key and value formats).
//
//   meta     collection specs and per-collection counters
//   records  one value per record: collection id + slot -> encoded record
//   oplog    operation log: collection id + sequence number -> operation
//
// Write() applies a batch atomically; with sync it returns only once the batch is on disk.
// All methods are safe to call from many threads (RocksDB's own guarantees).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/status.h"

namespace rocksdb {
class DB;
class Snapshot;
class Env;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace fathom {

// kRecords: (collection, slot) -> id and payload; kVectors: the same key -> the record's
// vectors (apart, so that opening a collection scans ids and payloads without reading every
// vector); kOplog: (collection, sequence) -> touched slots; kMeta: specs, trim marks.
enum class Cf { kMeta = 0, kRecords = 1, kOplog = 2, kVectors = 3 };

class KvStore {
 public:
  // A set of writes applied atomically by Write().
  class Batch {
   public:
    explicit Batch(const KvStore& store);
    ~Batch();
    void Put(Cf cf, std::string_view key, std::string_view value);
    void Delete(Cf cf, std::string_view key);
    // Deletes keys in [begin, end).
    void DeleteRange(Cf cf, std::string_view begin, std::string_view end);

   private:
    friend class KvStore;
    const KvStore& store_;
    std::unique_ptr<rocksdb::WriteBatch> batch_;
  };

  // The store as of one moment (a RocksDB snapshot): reads given it see the writes committed
  // before it was taken and none after, while writes go on. Held versions are kept until it
  // goes, so hold it for one long read (a collection snapshot), not for ever.
  class ReadView {
   public:
    ~ReadView();
    ReadView(const ReadView&) = delete;
    ReadView& operator=(const ReadView&) = delete;

   private:
    friend class KvStore;
    ReadView(rocksdb::DB* db, const rocksdb::Snapshot* snapshot) : db_(db), snapshot_(snapshot) {}
    rocksdb::DB* db_;
    const rocksdb::Snapshot* snapshot_;
  };
  std::unique_ptr<ReadView> NewReadView() const;

  // `env`: the file system to use (tests inject faults); nullptr for the operating system's.
  static Result<std::unique_ptr<KvStore>> Open(const std::string& dir, bool sync,
                                               rocksdb::Env* env = nullptr);

  // Writes are refused (NoSpace) while the file system holding the store has less than this
  // many bytes free beyond the batch itself. Debian's RocksDB 7.8 aborts the process (an
  // assertion in its log writer) when a log append fails for lack of space, so the log must
  // never reach a full disk: this reserve is the guard. 0 disables it.
  void set_min_free_bytes(uint64_t bytes) { min_free_bytes_.store(bytes); }
  ~KvStore();
  // RocksDB's repair of the (closed) store in `dir`: rebuilds its metadata from every table and
  // log it can read; unreadable files are moved to `dir`/lost.
  static Status Repair(const std::string& dir);

  // A full disk (below the reserve above) fails the write with NoSpace before anything is
  // written. A failure inside RocksDB (a background flush out of space, an I/O error) stops its
  // writes; each later Write first asks RocksDB to resume, so writes come back by themselves
  // once space is freed. Nothing acknowledged is lost: a failed write applied nothing.
  Status Write(Batch& batch);
  // Makes every acknowledged write durable (for buffered databases, before a checkpoint).
  Status SyncWal();
  // `view`: read as of that view (see ReadView) instead of now.
  Result<std::optional<std::string>> Get(Cf cf, std::string_view key, const ReadView* view = nullptr) const;
  // The values of `key` in two column families, read from one snapshot.
  Result<std::pair<std::optional<std::string>, std::optional<std::string>>> GetBoth(Cf first, Cf second,
                                                                                     std::string_view key) const;
  // Calls fn(key, value) for every key starting with prefix, in key order, until it returns false.
  Status Scan(Cf cf, std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& fn,
              const ReadView* view = nullptr) const;
  // The last key starting with prefix, if any.
  Result<std::optional<std::string>> LastKey(Cf cf, std::string_view prefix) const;
  Status Flush();
  // Approximate bytes on disk (tables and memtables) of the keys starting with prefix.
  uint64_t ApproximateBytes(Cf cf, std::string_view prefix) const;

 private:
  KvStore() = default;
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const;

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* handles_[4] = {nullptr, nullptr, nullptr, nullptr};
  rocksdb::ColumnFamilyHandle* default_handle_ = nullptr;
  bool sync_ = true;
  std::string dir_;
  std::atomic<uint64_t> min_free_bytes_{0};
  std::mutex resume_mutex_;
  std::atomic<bool> write_stopped_{false};  // a write failed; Resume() before the next
};

// Big-endian integer keys sort numerically in RocksDB's bytewise order.
void AppendBigEndian32(std::string* out, uint32_t v);
void AppendBigEndian64(std::string* out, uint64_t v);
uint32_t ReadBigEndian32(const char* p);
uint64_t ReadBigEndian64(const char* p);

}  // namespace fathom
