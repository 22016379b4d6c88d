#include "db/record_codec.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "storage/kv_store.h"
#include "util/file.h"

namespace fathom {

namespace {
constexpr uint8_t kRecordVersion = 1;
}  // namespace

std::string PointIdToString(const PointId& id) {
  if (const auto* n = std::get_if<uint64_t>(&id)) return std::to_string(*n);
  return "\"" + std::get<std::string>(id) + "\"";
}

namespace {
void AppendVectors(std::string* out, const std::map<std::string, std::vector<float>>& vectors) {
  AppendPod(out, static_cast<uint16_t>(vectors.size()));
  for (const auto& [name, values] : vectors) {
    AppendPod(out, static_cast<uint8_t>(name.size()));
    out->append(name);
    AppendPod(out, static_cast<uint32_t>(values.size()));
    AppendBytes(out, values.data(), values.size() * sizeof(float));
  }
}

Status ReadVectors(ByteReader& r, std::map<std::string, std::vector<float>>* vectors, bool keep,
                   uint16_t* count) {
  uint16_t nvec;
  FATHOM_RETURN_IF_ERROR(r.Read(&nvec));
  if (count != nullptr) *count = nvec;
  vectors->clear();
  for (uint16_t i = 0; i < nvec; ++i) {
    uint8_t name_len;
    FATHOM_RETURN_IF_ERROR(r.Read(&name_len));
    std::string name(name_len, '\0');
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(name.data(), name_len));
    uint32_t dim;
    FATHOM_RETURN_IF_ERROR(r.Read(&dim));
    if (keep) {
      std::vector<float> values(dim);
      FATHOM_RETURN_IF_ERROR(r.ReadBytes(values.data(), size_t{dim} * sizeof(float)));
      vectors->emplace(std::move(name), std::move(values));
    } else {
      FATHOM_RETURN_IF_ERROR(r.Skip(size_t{dim} * sizeof(float)));
    }
  }
  return Status::OK();
}
}  // namespace

std::string EncodeVectors(const std::map<std::string, std::vector<float>>& vectors) {
  std::string out;
  AppendPod(&out, kRecordVersion);
  AppendVectors(&out, vectors);
  return out;
}

Status DecodeVectors(std::string_view value, std::map<std::string, std::vector<float>>* vectors) {
  ByteReader r(value, "stored vectors");
  uint8_t version;
  FATHOM_RETURN_IF_ERROR(r.Read(&version));
  if (version != kRecordVersion) {
    return Status::Corruption("stored vectors have unknown version " + std::to_string(version));
  }
  FATHOM_RETURN_IF_ERROR(ReadVectors(r, vectors, true, nullptr));
  if (r.remaining() != 0) return Status::Corruption("stored vectors have trailing bytes");
  return Status::OK();
}

std::string EncodeRecord(const Record& record, std::string_view payload, bool with_vectors) {
  std::string out;
  AppendPod(&out, kRecordVersion);
  if (const auto* n = std::get_if<uint64_t>(&record.id)) {
    AppendPod(&out, uint8_t{0});
    AppendPod(&out, *n);
  } else {
    const auto& s = std::get<std::string>(record.id);
    AppendPod(&out, uint8_t{1});
    AppendPod(&out, static_cast<uint16_t>(s.size()));
    out.append(s);
  }
  if (with_vectors) {
    AppendVectors(&out, record.vectors);
  } else {
    AppendPod(&out, uint16_t{0});
  }
  AppendPod(&out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

Status DecodeRecord(std::string_view value, Record* record, bool with_vectors, bool* inline_vectors) {
  ByteReader r(value, "stored record");
  uint8_t version, id_type;
  FATHOM_RETURN_IF_ERROR(r.Read(&version));
  if (version != kRecordVersion) {
    return Status::Corruption("stored record has unknown version " + std::to_string(version));
  }
  FATHOM_RETURN_IF_ERROR(r.Read(&id_type));
  if (id_type == 0) {
    uint64_t n;
    FATHOM_RETURN_IF_ERROR(r.Read(&n));
    record->id = n;
  } else {
    uint16_t len;
    FATHOM_RETURN_IF_ERROR(r.Read(&len));
    std::string s(len, '\0');
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(s.data(), len));
    record->id = std::move(s);
  }
  uint16_t nvec = 0;
  FATHOM_RETURN_IF_ERROR(ReadVectors(r, &record->vectors, with_vectors, &nvec));
  if (inline_vectors != nullptr) *inline_vectors = nvec > 0;
  uint32_t payload_len;
  FATHOM_RETURN_IF_ERROR(r.Read(&payload_len));
  record->payload.resize(payload_len);
  FATHOM_RETURN_IF_ERROR(r.ReadBytes(record->payload.data(), payload_len));
  return Status::OK();
}

std::string IdKey(const PointId& id) {
  std::string key;
  if (const auto* n = std::get_if<uint64_t>(&id)) {
    key.push_back('\0');
    AppendBigEndian64(&key, *n);
  } else {
    key.push_back('\1');
    key.append(std::get<std::string>(id));
  }
  return key;
}

std::string CollectionPrefix(uint32_t collection) {
  std::string key;
  AppendBigEndian32(&key, collection);
  return key;
}

std::string RecordKey(uint32_t collection, uint32_t slot) {
  std::string key = CollectionPrefix(collection);
  AppendBigEndian32(&key, slot);
  return key;
}

std::string OplogKey(uint32_t collection, uint64_t seq) {
  std::string key = CollectionPrefix(collection);
  AppendBigEndian64(&key, seq);
  return key;
}

std::string EncodeSpec(const CollectionSpec& spec, uint32_t collection_id) {
  nlohmann::json j;
  j["id"] = collection_id;
  j["name"] = spec.name;
  j["vectors"] = nlohmann::json::array();
  for (const auto& v : spec.vectors) {
    nlohmann::json vj = {{"name", v.name}, {"dim", v.dim}, {"metric", MetricName(v.metric)}, {"index", v.index}};
    if (v.on_disk) vj["on_disk"] = true;
    j["vectors"].push_back(std::move(vj));
  }
  if (spec.on_disk_payload) j["on_disk_payload"] = true;
  j["indexed_fields"] = nlohmann::json::object();
  for (const auto& [field, type] : spec.indexed_fields) j["indexed_fields"][field] = FieldTypeName(type);
  if (!spec.metadata.empty() && spec.metadata != "{}") {
    j["metadata"] = nlohmann::json::parse(spec.metadata, nullptr, /*allow_exceptions=*/false);
  }
  return j.dump();
}

Status DecodeSpec(std::string_view text, CollectionSpec* spec, uint32_t* collection_id) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("stored collection spec is not JSON");
  try {
    *collection_id = j.at("id").get<uint32_t>();
    spec->name = j.at("name").get<std::string>();
    spec->vectors.clear();
    for (const auto& v : j.at("vectors")) {
      VectorSpec vs;
      vs.name = v.at("name").get<std::string>();
      vs.dim = v.at("dim").get<size_t>();
      FATHOM_ASSIGN_OR_RETURN(vs.metric, ParseMetric(v.at("metric").get<std::string>()));
      vs.index = v.at("index").get<std::string>();
      vs.on_disk = v.value("on_disk", false);
      spec->vectors.push_back(std::move(vs));
    }
    spec->on_disk_payload = j.value("on_disk_payload", false);
    spec->metadata = "{}";
    if (auto m = j.find("metadata"); m != j.end()) {
      if (!m->is_object()) return Status::Corruption("stored collection metadata is not a JSON object");
      spec->metadata = m->dump();
    }
    spec->indexed_fields.clear();
    for (const auto& [field, type] : j.at("indexed_fields").items()) {
      FATHOM_ASSIGN_OR_RETURN(spec->indexed_fields[field], ParseFieldType(type.get<std::string>()));
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("stored collection spec is malformed: ") + e.what());
  }
  return Status::OK();
}

Status ValidateCollectionMetadata(const std::string& metadata) {
  if (metadata.size() > CollectionSpec::kMaxMetadataBytes) {
    return Status::InvalidArgument("collection metadata is " + std::to_string(metadata.size()) +
                                   " bytes of JSON; the limit is " +
                                   std::to_string(CollectionSpec::kMaxMetadataBytes));
  }
  auto j = nlohmann::json::parse(metadata, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument("collection metadata must be a JSON object");
  }
  return Status::OK();
}

Status ValidateCollectionName(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return Status::InvalidArgument("collection name '" + name + "' must be 1 to 64 characters");
  }
  if (name == "." || name == "..") {
    return Status::InvalidArgument("collection name '" + name + "' is not allowed");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) {
      return Status::InvalidArgument("collection name '" + name + "' contains '" + std::string(1, c) +
                                     "': use letters, digits, '_', '-' and '.'");
    }
  }
  return Status::OK();
}

}  // namespace fathom
