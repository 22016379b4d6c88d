// FileVectorStore: float32 vectors on disk by label, for indexes that keep only codes in RAM
// (see VectorStore in fathom/index.h and docs/format/vector_store.md).
//
// Layout: a 4096-byte header page (magic "FATHOMVS", format version, dimension), then row
// `label` at offset 4096 + label * dim * 4. Labels are a collection's dense slots, so the file
// is about (largest slot + 1) rows; rows of deleted slots are reused with their slots.
//
// Reads use preadv2/pread, not a memory map: resident pages stay in the kernel's page cache
// (which is the cache, shared and evictable) instead of counting in the process's RSS, and an
// I/O error is a Status, not a SIGBUS. A batch read copies the rows already cached without
// blocking (RWF_NOWAIT), then asks the kernel for all the others at once
// (POSIX_FADV_WILLNEED) so that cold rows are fetched in parallel, then reads them.
//
// Durability: writes are plain pwrites; Sync() makes them durable (fdatasync). The database
// syncs at each checkpoint and rewrites the rows of every slot its log touched after the
// checkpoint while recovering, so rows never need to be durable sooner.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "fathom/index.h"

namespace fathom {

// The NotSupported an index answers to CanUseVectorStore when its floats must stay in RAM:
// names the index that would work (`hnsw`, e.g. "HNSW16"), what was asked and its metric.
Status VectorStoreRefusal(const std::string& hnsw, const std::string& factory, Metric metric);

class FileVectorStore final : public VectorStore {
 public:
  // Opens or creates the store at `path`. `created` (optional) says whether the file is new:
  // rows a caller expected to find there are then missing.
  static Result<std::shared_ptr<FileVectorStore>> Open(const std::string& path, size_t dim,
                                                       bool* created = nullptr);
  ~FileVectorStore() override;

  size_t dim() const override { return dim_; }
  Status Write(label_t label, const float* v) override;
  Status Read(size_t n, const label_t* labels, float* out) const override;
  Status Sync() override;
  uint64_t disk_bytes() const override;
  const std::string& path() const { return path_; }

 private:
  FileVectorStore(std::string path, int fd, size_t dim);
  uint64_t Offset(label_t label) const { return kHeaderBytes + uint64_t(label) * row_bytes_; }

  static constexpr uint64_t kHeaderBytes = 4096;
  const std::string path_;
  const int fd_;
  const size_t dim_;
  const size_t row_bytes_;
};

}  // namespace fathom
