// Index files (docs/format/index_file.md): a fixed header naming the index, its body, and a
// CRC-32 over everything before it. Both directions stream through a 1 MiB buffer (a 10M-node
// graph is never copied whole in memory). Load checks magic, version and length before it
// parses, validates every value as the body streams in, and returns the index only when the
// checksum over the whole file matches: a truncated, corrupted or foreign file is rejected,
// never half-trusted.
#include <cstring>

#include "fathom/index.h"
#include "util/file.h"

namespace fathom {

namespace {
constexpr char kMagic[8] = {'F', 'A', 'T', 'H', 'O', 'M', 'I', 'X'};
// Version 2 (2026-12): HNSW bodies are node-major (each node's record in one piece, so a save
// can stream the graph in chunks while writers run). Version 1 is still read.
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kMinFormatVersion = 1;
constexpr uint32_t kFlagFuzzy = 1;  // saved concurrently with writers (SaveOptions::concurrent)

// The body part of a file source: remaining() stops at the body's end.
class BodySource final : public ByteSource {
 public:
  BodySource(ByteSource& in, uint64_t length) : in_(in), left_(length) {}
  Status ReadBytes(void* dst, size_t n) override {
    if (n > left_) return Status::Corruption("index body is truncated: needed " + std::to_string(n) +
                                             " more bytes, " + std::to_string(left_) + " left");
    left_ -= n;
    return in_.ReadBytes(dst, n);
  }
  Status Skip(size_t n) override {
    if (n > left_) return Status::Corruption("index body is truncated");
    left_ -= n;
    return in_.Skip(n);
  }
  size_t remaining() const override { return left_; }

 private:
  ByteSource& in_;
  uint64_t left_;
};
}  // namespace

class IndexIO {
 public:
  static Status Save(const Index& index, const std::string& path, const SaveOptions& options) {
    FATHOM_ASSIGN_OR_RETURN(auto file, AtomicFileWriter::Create(path));
    const bool concurrent = options.concurrent && index.supports_concurrent_save();
    std::string factory = index.factory_string();
    std::string header;
    AppendBytes(&header, kMagic, sizeof(kMagic));
    AppendPod(&header, kFormatVersion);
    AppendPod(&header, concurrent ? kFlagFuzzy : uint32_t{0});
    AppendPod(&header, static_cast<uint16_t>(factory.size()));
    header.append(factory);
    AppendPod(&header, static_cast<uint64_t>(index.dim()));
    AppendPod(&header, static_cast<uint8_t>(index.metric()));
    AppendPod(&header, static_cast<uint64_t>(index.size()));
    const size_t body_len_offset = header.size();
    AppendPod(&header, uint64_t{0});  // body length, patched below
    FATHOM_RETURN_IF_ERROR(file->Write(header.data(), header.size()));
    file->ResetCrc();
    SaveOptions body_options = options;
    body_options.concurrent = concurrent;
    FATHOM_RETURN_IF_ERROR(index.SerializeBody(*file, body_options));
    const uint64_t body_len = file->size() - header.size();
    const uint32_t body_crc = file->crc();
    std::memcpy(header.data() + body_len_offset, &body_len, sizeof(body_len));
    FATHOM_RETURN_IF_ERROR(file->Patch(body_len_offset, &body_len, sizeof(body_len)));
    const uint32_t crc = Crc32Combine(Crc32(header), body_crc, body_len);
    FATHOM_RETURN_IF_ERROR(file->Pod(crc));
    return file->Commit();
  }

  static Result<std::unique_ptr<Index>> Load(const std::string& path, const LoadOptions& options) {
    const std::string what = "index file '" + path + "'";
    FATHOM_ASSIGN_OR_RETURN(auto file, FileSource::Open(path));
    FileSource& r = *file;
    if (r.size() >= sizeof(uint32_t)) r.set_crc_end(r.size() - sizeof(uint32_t));
    char magic[sizeof(kMagic)] = {};
    if (r.remaining() < sizeof(kMagic) || !r.ReadBytes(magic, sizeof(magic)).ok() ||
        std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
      return Status::Corruption(what + " is not a Fathom index (bad magic; expected 'FATHOMIX')");
    }
    auto fail = [&](const Status& s) { return Status(s.code(), what + ": " + s.message()); };
    uint32_t version, flags;
    if (Status s = r.Read(&version); !s.ok()) return fail(s);
    if (version < kMinFormatVersion || version > kFormatVersion) {
      return Status::NotSupported(what + " has format version " + std::to_string(version) +
                                  "; this build reads versions " + std::to_string(kMinFormatVersion) +
                                  " to " + std::to_string(kFormatVersion));
    }
    uint16_t factory_len;
    uint64_t dim, count, body_len;
    uint8_t metric;
    std::string factory;
    Status s = r.Read(&flags);
    if (s.ok()) s = r.Read(&factory_len);
    if (s.ok()) {
      factory.resize(factory_len);
      s = r.ReadBytes(factory.data(), factory_len);
    }
    if (s.ok()) s = r.Read(&dim);
    if (s.ok()) s = r.Read(&metric);
    if (s.ok()) s = r.Read(&count);
    if (s.ok()) s = r.Read(&body_len);
    if (!s.ok()) return fail(s);
    if (r.remaining() < sizeof(uint32_t) || r.remaining() - sizeof(uint32_t) != body_len) {
      return Status::Corruption(what + " is truncated or has trailing bytes: header promises a " +
                                std::to_string(body_len) + "-byte body and checksum, file has " +
                                std::to_string(r.remaining()) + " bytes after the header");
    }
    if (metric > static_cast<uint8_t>(Metric::kL1)) {
      return Status::Corruption(what + " names unknown metric " + std::to_string(metric));
    }
    auto made = MakeIndex(factory, dim, static_cast<Metric>(metric));
    if (!made.ok()) {
      return Status::Corruption(what + " names an index this build cannot make: " +
                                made.status().message());
    }
    std::unique_ptr<Index> index = std::move(made).value();
    if (options.vectors) {
      if (Status attach = index->SetVectorStore(options.vectors); !attach.ok()) return fail(attach);
    }
    // The body is parsed as it streams in (every value is bounds-checked and every node id
    // validated); the index is returned only if the checksum over the whole file then matches.
    BodySource body(r, body_len);
    s = index->DeserializeBody(body, count, version, (flags & kFlagFuzzy) != 0);
    if (s.ok() && body.remaining() != 0) {
      s = Status::Corruption("index body has " + std::to_string(body.remaining()) +
                             " unexpected trailing bytes");
    }
    // A body that did not parse is still checksummed, so damage is reported as such.
    if (!s.ok() && !body.Skip(body.remaining()).ok()) return fail(s);
    const uint32_t actual_crc = r.crc();
    uint32_t stored_crc = 0;
    Status crc_read = r.Read(&stored_crc);
    if (!crc_read.ok()) return fail(crc_read);
    if (stored_crc != actual_crc) return Status::Corruption(what + " is corrupted: checksum mismatch");
    if (!s.ok()) return fail(s);
    return index;
  }
};

Status Index::Save(const std::string& path, const SaveOptions& options) const {
  return IndexIO::Save(*this, path, options);
}

Result<std::unique_ptr<Index>> Index::Load(const std::string& path, const LoadOptions& options) {
  return IndexIO::Load(path, options);
}

}  // namespace fathom
