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

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/status.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace fathom {

enum class Cf { kMeta = 0, kRecords = 1, kOplog = 2 };

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

  static Result<std::unique_ptr<KvStore>> Open(const std::string& dir, bool sync);
  ~KvStore();

  Status Write(Batch& batch);
  Result<std::optional<std::string>> Get(Cf cf, std::string_view key) const;
  // Calls fn(key, value) for every key starting with prefix, in key order, until it returns false.
  Status Scan(Cf cf, std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& fn) const;
  // The last key starting with prefix, if any.
  Result<std::optional<std::string>> LastKey(Cf cf, std::string_view prefix) const;
  Status Flush();

 private:
  KvStore() = default;
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const;

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* handles_[3] = {nullptr, nullptr, nullptr};
  rocksdb::ColumnFamilyHandle* default_handle_ = nullptr;
  bool sync_ = true;
};

// Big-endian integer keys sort numerically in RocksDB's bytewise order.
void AppendBigEndian32(std::string* out, uint32_t v);
void AppendBigEndian64(std::string* out, uint64_t v);
uint32_t ReadBigEndian32(const char* p);
uint64_t ReadBigEndian64(const char* p);

}  // namespace fathom
