// Index files (docs/format/index_file.md): a fixed header naming the index, its body, and a
// CRC-32 over everything before it. Load checks magic, version, length and checksum before it
// parses anything, so a truncated, corrupted or foreign file is rejected, never half-trusted.
#include <cstring>

#include "fathom/index.h"
#include "util/file.h"

namespace fathom {

namespace {
constexpr char kMagic[8] = {'F', 'A', 'T', 'H', 'O', 'M', 'I', 'X'};
constexpr uint32_t kFormatVersion = 1;
}  // namespace

class IndexIO {
 public:
  static Status Serialize(const Index& index, std::string* out) {
    std::string body;
    FATHOM_RETURN_IF_ERROR(index.SerializeBody(&body));
    std::string factory = index.factory_string();
    out->clear();
    out->reserve(body.size() + 64 + factory.size());
    AppendBytes(out, kMagic, sizeof(kMagic));
    AppendPod(out, kFormatVersion);
    AppendPod(out, uint32_t{0});  // flags, reserved
    AppendPod(out, static_cast<uint16_t>(factory.size()));
    out->append(factory);
    AppendPod(out, static_cast<uint64_t>(index.dim()));
    AppendPod(out, static_cast<uint8_t>(index.metric()));
    AppendPod(out, static_cast<uint64_t>(index.size()));
    AppendPod(out, static_cast<uint64_t>(body.size()));
    out->append(body);
    AppendPod(out, Crc32(*out));
    return Status::OK();
  }

  static Result<std::unique_ptr<Index>> Parse(std::string_view data, const std::string& path) {
    const std::string what = "index file '" + path + "'";
    if (data.size() < sizeof(kMagic) || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
      return Status::Corruption(what + " is not a Fathom index (bad magic; expected 'FATHOMIX')");
    }
    ByteReader r(data, what);
    FATHOM_RETURN_IF_ERROR(r.Skip(sizeof(kMagic)));
    uint32_t version, flags;
    FATHOM_RETURN_IF_ERROR(r.Read(&version));
    if (version != kFormatVersion) {
      return Status::NotSupported(what + " has format version " + std::to_string(version) +
                                  "; this build reads version " + std::to_string(kFormatVersion));
    }
    FATHOM_RETURN_IF_ERROR(r.Read(&flags));
    uint16_t factory_len;
    FATHOM_RETURN_IF_ERROR(r.Read(&factory_len));
    std::string factory(factory_len, '\0');
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(factory.data(), factory_len));
    uint64_t dim, count, body_len;
    uint8_t metric;
    FATHOM_RETURN_IF_ERROR(r.Read(&dim));
    FATHOM_RETURN_IF_ERROR(r.Read(&metric));
    FATHOM_RETURN_IF_ERROR(r.Read(&count));
    FATHOM_RETURN_IF_ERROR(r.Read(&body_len));
    const size_t body_start = r.position();
    if (r.remaining() < sizeof(uint32_t) || r.remaining() - sizeof(uint32_t) != body_len) {
      return Status::Corruption(what + " is truncated or has trailing bytes: header promises a " +
                                std::to_string(body_len) + "-byte body and checksum, file has " +
                                std::to_string(r.remaining()) + " bytes after the header");
    }
    uint32_t stored_crc;
    std::memcpy(&stored_crc, data.data() + data.size() - sizeof(uint32_t), sizeof(uint32_t));
    uint32_t actual_crc = Crc32(data.substr(0, data.size() - sizeof(uint32_t)));
    if (stored_crc != actual_crc) {
      return Status::Corruption(what + " is corrupted: checksum mismatch");
    }
    if (metric > static_cast<uint8_t>(Metric::kCosine)) {
      return Status::Corruption(what + " names unknown metric " + std::to_string(metric));
    }
    auto made = MakeIndex(factory, dim, static_cast<Metric>(metric));
    if (!made.ok()) {
      return Status::Corruption(what + " names an index this build cannot make: " +
                                made.status().message());
    }
    std::unique_ptr<Index> index = std::move(made).value();
    Status s = index->DeserializeBody(data.substr(body_start, body_len), count);
    if (!s.ok()) return Status(s.code(), what + ": " + s.message());
    return index;
  }
};

Status Index::Save(const std::string& path) const {
  std::string data;
  FATHOM_RETURN_IF_ERROR(IndexIO::Serialize(*this, &data));
  return WriteFileAtomic(path, data);
}

Result<std::unique_ptr<Index>> Index::Load(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
  return IndexIO::Parse(data, path);
}

}  // namespace fathom
