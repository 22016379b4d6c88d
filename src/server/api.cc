#include "server/api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "index/topk.h"
#include "server/metrics.h"
#include "server/snapshot_archive.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom::server {
namespace fs = std::filesystem;

namespace {

// Qdrant's names first, so responses look familiar to its users; ours are accepted too.
const char* DistanceName(Metric metric) {
  switch (metric) {
    case Metric::kL2: return "Euclid";
    case Metric::kInnerProduct: return "Dot";
    case Metric::kCosine: return "Cosine";
    case Metric::kL1: return "Manhattan";
  }
  return "Euclid";
}

Result<Metric> ParseDistance(const std::string& text, std::string_view what) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "cosine") return Metric::kCosine;
  if (lower == "euclid" || lower == "euclidean" || lower == "l2") return Metric::kL2;
  if (lower == "dot" || lower == "ip" || lower == "inner_product") return Metric::kInnerProduct;
  if (lower == "manhattan" || lower == "l1") return Metric::kL1;
  return Status::InvalidArgument(std::string(what) + ": unknown distance '" + text +
                                 "': use Cosine, Euclid, Dot or Manhattan (or cosine, l2, ip, l1)");
}

// Qdrant's "score": similarity for Cosine and Dot (higher is closer), the distance for Euclid and
// Manhattan (smaller is closer). The library's raw "smaller is closer" distance is returned
// next to it.
double Score(Metric metric, float distance) {
  switch (metric) {
    case Metric::kCosine: return 1.0 - distance;
    case Metric::kInnerProduct: return -static_cast<double>(distance);
    case Metric::kL2: return std::sqrt(std::max(0.0f, distance));
    case Metric::kL1: return distance;
  }
  return distance;
}

// Whether a smaller score is better (Euclid and Manhattan scores are distances).
bool SmallerIsBetter(Metric metric) { return metric == Metric::kL2 || metric == Metric::kL1; }

const VectorSpec* FindVector(const CollectionSpec& spec, const std::string& name) {
  for (const auto& v : spec.vectors) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

// A collection with one vector takes an unnamed vector as that one, whatever its name.
std::string DefaultVectorName(const CollectionSpec& spec) {
  return spec.vectors.size() == 1 ? spec.vectors[0].name : std::string();
}

bool IsUnnamedOnly(const CollectionSpec& spec) {
  return spec.vectors.size() == 1 && spec.vectors[0].name.empty();
}

// A record's vectors: a bare array when the collection has only the unnamed vector, else an
// object of named arrays.
// A stored vector as answers show it: a Cosine vector normalised (Qdrant stores and returns
// them so), others as written.
void AppendStoredVector(std::string* out, const CollectionSpec& spec, const std::string& name,
                        const std::vector<float>& values) {
  const VectorSpec* vs = FindVector(spec, name);
  if (vs == nullptr || vs->metric != Metric::kCosine) {
    AppendFloats(out, values);
    return;
  }
  std::vector<float> unit(values);
  simd::Normalize(unit.data(), unit.size());  // (a zero vector stays as it is)
  AppendFloats(out, unit);
}

void AppendVectors(std::string* out, const CollectionSpec& spec,
                   const std::map<std::string, std::vector<float>>& vectors) {
  if (IsUnnamedOnly(spec)) {
    auto it = vectors.find("");
    if (it != vectors.end()) {
      AppendStoredVector(out, spec, "", it->second);
    } else {
      *out += "null";
    }
    return;
  }
  out->push_back('{');
  bool first = true;
  for (const auto& [name, values] : vectors) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(out, name);
    out->push_back(':');
    AppendStoredVector(out, spec, name, values);
  }
  out->push_back('}');
}

// Qdrant's with_payload: true / false, a list of fields to include, or {"include": [...]} /
// {"exclude": [...]}. Returns whether to send a payload at all.
Result<bool> ParsePayloadSelector(const Json& body, std::string_view what, std::vector<std::string>* include,
                                  std::vector<std::string>* exclude, bool fallback) {
  auto it = body.find("with_payload");
  if (it == body.end() || it->is_null()) return fallback;
  if (it->is_boolean()) return it->get<bool>();
  auto names = [&](const Json& list, const std::string& field, std::vector<std::string>* out) -> Status {
    if (!list.is_array()) {
      return Status::InvalidArgument(std::string(what) + ": " + field + " must be an array of field names, got " +
                                     TypeName(list));
    }
    for (const auto& name : list) {
      if (!name.is_string()) {
        return Status::InvalidArgument(std::string(what) + ": " + field + " must hold field names (strings), got " +
                                       TypeName(name));
      }
      out->push_back(name.get<std::string>());
    }
    return Status::OK();
  };
  if (it->is_array()) {
    FATHOM_RETURN_IF_ERROR(names(*it, "with_payload", include));
    return true;
  }
  if (it->is_object()) {
    FATHOM_RETURN_IF_ERROR(CheckFields(*it, std::string(what) + " with_payload", {"include", "exclude"}));
    if (auto inc = it->find("include"); inc != it->end()) FATHOM_RETURN_IF_ERROR(names(*inc, "with_payload.include", include));
    if (auto exc = it->find("exclude"); exc != it->end()) FATHOM_RETURN_IF_ERROR(names(*exc, "with_payload.exclude", exclude));
    return true;
  }
  return Status::InvalidArgument(std::string(what) + ": with_payload must be true, false, a list of fields or "
                                 "{\"include\"|\"exclude\": [...]}, got " + TypeName(*it));
}

// The payload JSON text with only the selected top-level fields.
void AppendSelectedPayload(std::string* out, const std::string& payload, const std::vector<std::string>& include,
                           const std::vector<std::string>& exclude) {
  if (payload.empty()) {
    *out += "{}";
    return;
  }
  if (include.empty() && exclude.empty()) {
    *out += payload;
    return;
  }
  Json value = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!value.is_object()) {
    *out += payload;
    return;
  }
  Json selected = Json::object();
  for (auto& [key, field] : value.items()) {
    if (!include.empty() && std::find(include.begin(), include.end(), key) == include.end()) continue;
    if (std::find(exclude.begin(), exclude.end(), key) != exclude.end()) continue;
    selected[key] = std::move(field);
  }
  *out += Dump(selected);
}

void AppendSelectedPayload(std::string* out, const std::string& payload, const std::vector<std::string>& include,
                           const std::vector<std::string>& exclude);

void AppendRecord(std::string* out, const CollectionSpec& spec, const Record& record,
                  bool with_payload, bool with_vector, const std::vector<std::string>& include = {},
                  const std::vector<std::string>& exclude = {}) {
  *out += "{\"id\":";
  AppendPointId(out, record.id);
  if (with_payload) {
    *out += ",\"payload\":";
    AppendSelectedPayload(out, record.payload, include, exclude);
  }
  if (with_vector) {
    *out += ",\"vector\":";
    AppendVectors(out, spec, record.vectors);
  }
  out->push_back('}');
}

Json SpecToJson(const CollectionSpec& spec) {
  auto vector_json = [](const VectorSpec& v) {
    return Json{{"size", v.dim}, {"distance", DistanceName(v.metric)}, {"index", v.index}, {"on_disk", v.on_disk}};
  };
  Json vectors;
  if (IsUnnamedOnly(spec)) {
    vectors = vector_json(spec.vectors[0]);
  } else {
    vectors = Json::object();
    for (const auto& v : spec.vectors) vectors[v.name] = vector_json(v);
  }
  Json fields = Json::object();
  for (const auto& [name, type] : spec.indexed_fields) fields[name] = FieldTypeName(type);
  return Json{{"vectors", std::move(vectors)},
              {"indexed_fields", std::move(fields)},
              {"on_disk_payload", spec.on_disk_payload}};
}

Result<VectorSpec> ParseVectorSpec(const Json& value, const std::string& name, std::string_view what) {
  FATHOM_RETURN_IF_ERROR(CheckFields(value, what, {"size", "distance", "index", "on_disk", "hnsw_config",
                                                   "quantization_config", "datatype", "multivector_config"}));
  for (const char* field : {"hnsw_config", "quantization_config", "multivector_config"}) {
    if (auto it = value.find(field); it != value.end() && !it->is_null()) {
      return Status::InvalidArgument(std::string(what) + "." + field +
                                     " is not supported per vector; name the index with \"index\" (a factory "
                                     "string such as \"HNSW16,SQ8\") or set it for the collection");
    }
  }
  if (auto it = value.find("datatype"); it != value.end() && !it->is_null() && *it != "float32") {
    return Status::InvalidArgument(std::string(what) + ".datatype: only float32 vectors are stored (got " + it->dump() +
                                   "); name a compressed index such as \"HNSW32,FP16\" instead");
  }
  VectorSpec spec;
  spec.name = name;
  if (!value.contains("size")) {
    return Status::InvalidArgument(std::string(what) + ": field 'size' (the dimension) is required");
  }
  FATHOM_ASSIGN_OR_RETURN(uint64_t size, GetUint(value, "size", 0, what));
  constexpr uint64_t kMaxDim = 65536;
  if (size == 0 || size > kMaxDim) {
    return Status::InvalidArgument(std::string(what) + ": size must be between 1 and " +
                                   std::to_string(kMaxDim) + ", got " + std::to_string(size));
  }
  spec.dim = size;
  FATHOM_ASSIGN_OR_RETURN(std::string distance, GetString(value, "distance", what));
  FATHOM_ASSIGN_OR_RETURN(spec.metric, ParseDistance(distance, what));
  if (value.contains("index") && !value["index"].is_null()) {
    FATHOM_ASSIGN_OR_RETURN(spec.index, GetString(value, "index", what));
  }
  if (value.contains("on_disk") && !value["on_disk"].is_null()) {
    if (!value["on_disk"].is_boolean()) {
      return Status::InvalidArgument(std::string(what) + ".on_disk must be true or false, got " +
                                     TypeName(value["on_disk"]));
    }
    spec.on_disk = value["on_disk"].get<bool>();
  }
  return spec;
}

// Ids from a JSON array, at most `max` of them.
Result<std::vector<PointId>> ParseIds(const Json& value, std::string_view field, size_t max) {
  if (!value.is_array()) {
    return Status::InvalidArgument("field '" + std::string(field) + "' must be an array of ids, got " +
                                   TypeName(value));
  }
  if (value.size() > max) {
    return Status::InvalidArgument("field '" + std::string(field) + "' has " +
                                   std::to_string(value.size()) + " ids; the limit is " +
                                   std::to_string(max));
  }
  std::vector<PointId> ids;
  ids.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    FATHOM_ASSIGN_OR_RETURN(PointId id,
                            ParsePointId(value[i], std::string(field) + "[" + std::to_string(i) + "]"));
    ids.push_back(std::move(id));
  }
  return ids;
}

// "with_vector" is Qdrant's spelling in searches, "with_vectors" in some other calls: take both.
Result<bool> GetWithVector(const Json& body, std::string_view what) {
  FATHOM_ASSIGN_OR_RETURN(bool a, GetBool(body, "with_vector", false, what));
  FATHOM_ASSIGN_OR_RETURN(bool b, GetBool(body, "with_vectors", false, what));
  return a || b;
}

std::string IsoTime(fs::file_time_type t) {
  auto sys = std::chrono::time_point_cast<std::chrono::system_clock::duration>(std::chrono::file_clock::to_sys(t));
  std::time_t tt = std::chrono::system_clock::to_time_t(sys);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

uint64_t DirectorySize(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      uint64_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

Json SnapshotJson(const fs::path& dir, std::string_view collection) {
  std::error_code ec;
  auto time = fs::last_write_time(dir, ec);
  return Json{{"name", dir.filename().string()},
              {"collection", collection},
              {"creation_time", ec ? Json(nullptr) : Json(IsoTime(time))},
              {"size", DirectorySize(dir)}};
}

// Qdrant's write status: "acknowledged" for a client that asked not to wait (?wait=false),
// else "completed". Fathom's writes are durable and searchable before it answers either way.
std::string WriteStatus(const ApiRequest& req) {
  for (const auto& [key, value] : req.query) {
    if (key == "wait" && value == "false") return "acknowledged";
  }
  return "completed";
}

}  // namespace

// ---- Reply ---------------------------------------------------------------------------------

Reply::Reply(Status status) {
  if (status.ok()) {
    result = "true";
  } else {
    http_status = HttpStatusFor(status);
    error = status.message();
  }
}

Reply Reply::Ok(std::string result_json) {
  Reply r(Status::OK());
  r.result = std::move(result_json);
  return r;
}

Reply Reply::Error(int http_status, std::string message) {
  Reply r(Status::OK());
  r.http_status = http_status;
  r.result.clear();
  r.error = std::move(message);
  return r;
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk: return 200;
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kAlreadyExists: return 409;
    // Out of memory while evaluating a request: the server is fine, try again later.
    case Status::Code::kResourceExhausted: return 503;
    // Disk full: nothing was written; writes resume by themselves once space is freed.
    case Status::Code::kNoSpace: return 507;
    case Status::Code::kUnavailable: return 503;
    default: return 500;
  }
}

// ---- Api -----------------------------------------------------------------------------------

Api::Api(std::string data_dir, std::unique_ptr<Database> db, ApiLimits limits)
    : data_dir_(std::move(data_dir)),
      limits_(limits),
      db_(std::move(db)),
      search_slots_(limits.max_concurrent_searches != 0
                        ? limits.max_concurrent_searches
                        : std::max<size_t>(1, std::thread::hardware_concurrency())) {
  // What a recovery that a crash or kill interrupted left (never used again).
  std::error_code ec;
  fs::remove_all(IncomingDir(), ec);
}

Api::~Api() {
  Status s = Close();
  if (!s.ok()) spdlog::error("closing the database: {}", s.ToString());
}

Status Api::Close() {
  std::unique_lock lock(db_mutex_);
  if (!db_) return Status::OK();
  Status s = db_->Close();
  db_.reset();
  return s;
}

bool Api::ready() const {
  std::shared_lock lock(db_mutex_);
  return db_ != nullptr;
}

Result<std::shared_ptr<Collection>> Api::Find(std::string_view name) const {
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  if (!db_) return Status::Unavailable("the database is closed (the server is shutting down)");
  return db_->GetCollection(std::string(name));
}

std::string Api::SnapshotDir(std::string_view collection) const {
  return data_dir_ + "/snapshots/" + std::string(collection);
}
std::string Api::SnapshotArchive(std::string_view collection, std::string_view snapshot) const {
  return data_dir_ + "/snapshot-archives/" + std::string(collection) + "/" + std::string(snapshot) + ".tar";
}
std::string Api::IncomingDir() const { return data_dir_ + "/.recovering"; }
Result<std::string> Api::ExistingSnapshot(const std::string& collection, const std::string& snapshot) const {
  FATHOM_RETURN_IF_ERROR(ValidateName(collection, "collection name"));
  FATHOM_RETURN_IF_ERROR(ValidateName(snapshot, "snapshot name"));
  std::string path = SnapshotDir(collection) + "/" + snapshot;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return Status::NotFound("snapshot '" + snapshot + "' of collection '" + collection + "' does not exist");
  }
  return path;
}

Reply Api::ListCollections(const ApiRequest&) {
  std::shared_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  Json list = Json::array();
  for (const auto& name : db_->ListCollections()) list.push_back(Json{{"name", name}});
  return Reply::Ok(Dump(Json{{"collections", std::move(list)}}));
}

Reply Api::CreateCollection(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "create-collection request",
                                     {"vectors", "indexed_fields", "on_disk_payload", "hnsw_config",
                                      "optimizers_config", "wal_config", "shard_number", "replication_factor",
                                      "write_consistency_factor", "quantization_config", "sharding_method",
                                      "sparse_vectors", "init_from", "strict_mode_config", "metadata"}));
  CollectionSpec spec;
  spec.name = name;
  // Qdrant's options: one shard and one replica (a single node), no sparse vectors, no init_from;
  // optimizer and WAL settings have nothing to set here and are accepted.
  for (const char* field : {"shard_number", "replication_factor", "write_consistency_factor"}) {
    if (auto it = body.find(field); it != body.end() && !it->is_null() && !(it->is_number_unsigned() && *it == 1)) {
      return Status::InvalidArgument(std::string("field '") + field +
                                     "' must be 1: this server is a single node (distributed mode is not built yet)");
    }
  }
  for (const char* field : {"sparse_vectors", "init_from"}) {
    if (auto it = body.find(field); it != body.end() && !it->is_null()) {
      return Status::InvalidArgument(std::string("field '") + field + "' is not supported");
    }
  }
  // hnsw_config {m, ef_construct} and quantization_config {scalar: {type: int8}} shape the
  // index of every vector that does not name its own ("index": a factory string).
  std::string hnsw = "HNSW32";
  bool hnsw_given = false;
  bool sq8 = false;
  if (auto h = body.find("hnsw_config"); h != body.end() && !h->is_null()) {
    FATHOM_RETURN_IF_ERROR(CheckFields(*h, "hnsw_config",
                                       {"m", "ef_construct", "full_scan_threshold", "max_indexing_threads",
                                        "on_disk", "payload_m", "inline_storage"}));
    FATHOM_ASSIGN_OR_RETURN(uint64_t m, GetUint(*h, "m", 32, "hnsw_config"));
    FATHOM_ASSIGN_OR_RETURN(uint64_t efc, GetUint(*h, "ef_construct", 200, "hnsw_config"));
    if (m < 2 || m > 256) return Status::InvalidArgument("hnsw_config.m must be between 2 and 256, got " + std::to_string(m));
    if (efc < 1 || efc > 100000) {
      return Status::InvalidArgument("hnsw_config.ef_construct must be between 1 and 100000, got " + std::to_string(efc));
    }
    hnsw = "HNSW" + std::to_string(m);
    if (efc != 200) hnsw += ",efC=" + std::to_string(efc);
    hnsw_given = true;
  }
  if (auto q = body.find("quantization_config"); q != body.end() && !q->is_null()) {
    auto scalar = q->is_object() ? q->find("scalar") : q->end();
    if (scalar == q->end() || q->size() != 1 || !scalar->is_object() || scalar->value("type", "int8") != "int8") {
      return Status::InvalidArgument(
          "quantization_config: only {\"scalar\": {\"type\": \"int8\"}} is supported (Fathom's SQ8); name other "
          "codes with a vector's \"index\" factory string, e.g. \"HNSW32,RBQ\"");
    }
    sq8 = true;
  }
  auto default_index = [&](VectorSpec* v, const Json& value) {
    if (value.contains("index") && !value["index"].is_null()) return;
    if (!hnsw_given && !sq8 && !v->on_disk) return;  // the built-in default
    // Vectors on disk need codes in RAM to walk: Qdrant's on_disk becomes SQ8 traversal.
    const bool codes = sq8 || v->on_disk;
    std::string index = hnsw;
    if (codes) {
      auto comma = index.find(',');
      index.insert(comma == std::string::npos ? index.size() : comma, ",SQ8");
    }
    v->index = index;
  };
  if (auto p = body.find("on_disk_payload"); p != body.end() && !p->is_null()) {
    if (!p->is_boolean()) {
      return Status::InvalidArgument("field 'on_disk_payload' must be true or false, got " + TypeName(*p));
    }
    spec.on_disk_payload = p->get<bool>();
  }  // Qdrant's collection metadata: any JSON object, kept with the collection.
  if (auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return Status::InvalidArgument("field 'metadata' must be a JSON object, got " + TypeName(*m));
    spec.metadata = m->dump();
  }

  auto vectors = body.find("vectors");
  if (vectors == body.end() || !vectors->is_object()) {
    return Status::InvalidArgument(
        "field 'vectors' is required: {\"size\": N, \"distance\": \"Cosine\"} or an object of named "
        "vectors");
  }
  if (vectors->contains("size")) {
    FATHOM_ASSIGN_OR_RETURN(VectorSpec v, ParseVectorSpec(*vectors, "", "vectors"));
    default_index(&v, *vectors);
    spec.vectors.push_back(std::move(v));
  } else {
    if (vectors->empty()) return Status::InvalidArgument("field 'vectors' names no vector");
    for (const auto& [vector_name, value] : vectors->items()) {
      FATHOM_ASSIGN_OR_RETURN(VectorSpec v,
                              ParseVectorSpec(value, vector_name, "vectors." + vector_name));
      default_index(&v, value);
      spec.vectors.push_back(std::move(v));
    }
  }
  if (auto fields = body.find("indexed_fields"); fields != body.end() && !fields->is_null()) {
    if (!fields->is_object()) {
      return Status::InvalidArgument("field 'indexed_fields' must be an object of field types, got " +
                                     TypeName(*fields));
    }
    for (const auto& [field, type] : fields->items()) {
      if (!type.is_string()) {
        return Status::InvalidArgument("indexed_fields." + field + " must be a type name string, got " +
                                       TypeName(type));
      }
      FATHOM_ASSIGN_OR_RETURN(FieldType t, ParseFieldType(type.get<std::string>()));
      spec.indexed_fields[field] = t;
    }
  }
  std::shared_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  auto created = db_->CreateCollection(spec);
  if (!created.ok()) return created.status();
  return Status::OK();
}

Reply Api::GetCollection(const ApiRequest& req) {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  Json info = SpecToJson(c->spec());
  // Qdrant's shapes beside ours: config.params (vectors, shards, payload storage) and the
  // HNSW parameters of the first vector's index.
  const VectorSpec& first = c->spec().vectors.front();
  Json params{{"vectors", info["vectors"]},
              {"shard_number", 1},
              {"replication_factor", 1},
              {"write_consistency_factor", 1},
              {"on_disk_payload", c->spec().on_disk_payload}};
  info["params"] = std::move(params);
  int m = 0, ef_construct = 200;
  if (std::sscanf(first.index.c_str(), "HNSW%d", &m) == 1) {
    if (auto efc = first.index.find("efC="); efc != std::string::npos) ef_construct = std::atoi(first.index.c_str() + efc + 4);
    info["hnsw_config"] = Json{{"m", m}, {"ef_construct", ef_construct}, {"full_scan_threshold", 4000},
                               {"on_disk", false}};
  }
  info["optimizer_config"] = Json::object();
  info["wal_config"] = Json::object();
  info["metadata"] = Json::parse(c->metadata(), nullptr, /*allow_exceptions=*/false);
  if (!info["metadata"].is_object()) info["metadata"] = Json::object();
  Json schema = Json::object();
  for (const auto& [field, type] : c->spec().indexed_fields) schema[field] = Json{{"data_type", FieldTypeName(type)}};
  const size_t count = c->Count();
  const StorageUsage usage = c->usage();
  Json defaults = Json::object();  // what Tune chose, per vector
  for (const VectorSpec& v : c->spec().vectors) {
    const SearchDefaults d = c->search_defaults(v.name);
    if (d.target_recall == 0) continue;
    defaults[v.name] = Json{{"ef", d.ef}, {"nprobe", d.nprobe}, {"checks", d.checks},
                            {"target_recall", d.target_recall}, {"recall", d.recall}};
  }
  const RecallEstimate recall = c->recall_estimate();
  Json recall_json = Json{{"samples", recall.samples}, {"total_samples", recall.total_samples},
                          {"dropped", recall.dropped}, {"from_store", recall.from_store}};
  recall_json["recall"] = recall.samples > 0 ? Json(recall.recall) : Json(nullptr);
  Json out{{"name", c->spec().name},
           {"status", "green"},
           {"optimizer_status", "ok"},
           {"points_count", count},
           {"vectors_count", count * c->spec().vectors.size()},
           {"indexed_vectors_count", count * c->spec().vectors.size()},
           {"segments_count", 1},
           {"payload_schema", std::move(schema)},
           {"memory_bytes", usage.ram_bytes},
           {"recall_estimate", std::move(recall_json)},
           {"search_defaults", std::move(defaults)},
           {"storage",
            {{"ram_bytes", usage.ram_bytes},
             {"disk_bytes", usage.disk_bytes()},
             {"vectors_disk_bytes", usage.vectors_disk_bytes},
             {"records_disk_bytes", usage.records_disk_bytes},
             {"index_files_bytes", usage.index_files_bytes}}},
           {"config", std::move(info)}};
  return Reply::Ok(Dump(out));
}

Reply Api::CollectionExists(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  std::shared_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  const bool exists = db_->GetCollection(name).ok();  // a collection or an alias of one
  return Reply::Ok(Dump(Json{{"exists", exists}}));
}

// Qdrant's alias actions, applied in order, all or none: {"actions": [{"create_alias":
// {"collection_name", "alias_name"}}, {"delete_alias": {"alias_name"}}, {"rename_alias":
// {"old_alias_name", "new_alias_name"}}]}.
Reply Api::UpdateAliases(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<AliasOperation> operations, ParseAliasActions(req));
  std::shared_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  return db_->UpdateAliases(operations);
}

Result<std::vector<AliasOperation>> Api::ParseAliasActions(const ApiRequest& req) const {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "alias request", {"actions"}));
  auto actions = body.find("actions");
  if (actions == body.end() || !actions->is_array()) {
    return Status::InvalidArgument("alias request: field 'actions' must be an array of create_alias, delete_alias "
                                   "or rename_alias actions");
  }
  std::vector<AliasOperation> operations;
  for (size_t i = 0; i < actions->size(); ++i) {
    const Json& action = (*actions)[i];
    const std::string what = "actions[" + std::to_string(i) + "]";
    if (!action.is_object() || action.size() != 1) {
      return Status::InvalidArgument(what + " must be an object with one of create_alias, delete_alias, rename_alias");
    }
    const auto& [kind, args] = *action.items().begin();
    AliasOperation op;
    if (kind == "create_alias") {
      FATHOM_RETURN_IF_ERROR(CheckFields(args, what + ".create_alias", {"collection_name", "alias_name"}));
      op.kind = AliasOperation::Kind::kCreate;
      FATHOM_ASSIGN_OR_RETURN(op.collection, GetString(args, "collection_name", what + ".create_alias"));
      FATHOM_ASSIGN_OR_RETURN(op.alias, GetString(args, "alias_name", what + ".create_alias"));
    } else if (kind == "delete_alias") {
      FATHOM_RETURN_IF_ERROR(CheckFields(args, what + ".delete_alias", {"alias_name"}));
      op.kind = AliasOperation::Kind::kDelete;
      FATHOM_ASSIGN_OR_RETURN(op.alias, GetString(args, "alias_name", what + ".delete_alias"));
    } else if (kind == "rename_alias") {
      FATHOM_RETURN_IF_ERROR(CheckFields(args, what + ".rename_alias", {"old_alias_name", "new_alias_name"}));
      op.kind = AliasOperation::Kind::kRename;
      FATHOM_ASSIGN_OR_RETURN(op.alias, GetString(args, "old_alias_name", what + ".rename_alias"));
      FATHOM_ASSIGN_OR_RETURN(op.new_alias, GetString(args, "new_alias_name", what + ".rename_alias"));
    } else {
      return Status::InvalidArgument(what + ": unknown action '" + kind +
                                     "': expected create_alias, delete_alias or rename_alias");
    }
    operations.push_back(std::move(op));
  }
  return operations;
}

namespace {
std::string AliasList(const std::map<std::string, std::string>& aliases, const std::string* collection) {
  Json list = Json::array();
  for (const auto& [alias, target] : aliases) {
    if (collection == nullptr || target == *collection) {
      list.push_back(Json{{"alias_name", alias}, {"collection_name", target}});
    }
  }
  return Dump(Json{{"aliases", std::move(list)}});
}
}  // namespace

Reply Api::ListAliases(const ApiRequest&) {
  std::shared_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  return Reply::Ok(AliasList(db_->ListAliases(), nullptr));
}

Reply Api::ListCollectionAliases(const ApiRequest& req) {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  return Reply::Ok(AliasList(db_->ListAliases(), &c->spec().name));
}

// Qdrant's PATCH /collections/{name}: Fathom has no optimizer or WAL settings to change, so
// those are accepted and change nothing; what would change the stored data (vectors, HNSW or
// quantization parameters) is refused with the way to get it.
Reply Api::UpdateCollection(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "update-collection request",
                                     {"optimizers_config", "params", "hnsw_config", "vectors",
                                      "quantization_config", "sparse_vectors", "strict_mode_config",
                                      "metadata"}));
  for (const char* field : {"params", "hnsw_config", "vectors", "quantization_config", "sparse_vectors"}) {
    if (auto it = body.find(field); it != body.end() && !it->is_null() && !(it->is_object() && it->empty())) {
      return Status::InvalidArgument(std::string("update-collection: changing '") + field +
                                     "' of a live collection is not supported; create a collection with the new "
                                     "settings and move the points (optimizers_config is accepted)");
    }
  }
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  // metadata merges into what is stored, key by key (Qdrant's rule); a key set to null is
  // removed (Fathom's).
  if (auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return Status::InvalidArgument("field 'metadata' must be a JSON object, got " + TypeName(*m));
    FATHOM_RETURN_IF_ERROR(db_->UpdateCollectionMetadata(c->spec().name, m->dump()).status());
  }
  return Status::OK();
}

Reply Api::Completed() {
  return Reply::Ok(Dump(Json{{"operation_id", next_operation_id_.fetch_add(1)}, {"status", "completed"}}));
}

Reply Api::CreateFieldIndex(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "create-index request", {"field_name", "field_schema", "field_type"}));
  FATHOM_ASSIGN_OR_RETURN(std::string field, GetString(body, "field_name", "create-index request"));
  // field_schema: a type name, or {"type": name, ...options}; field_type is its older name.
  const Json* schema = nullptr;
  for (const char* key : {"field_schema", "field_type"}) {
    if (auto it = body.find(key); it != body.end() && !it->is_null()) schema = &*it;
  }
  if (schema == nullptr) {
    return Status::InvalidArgument("create-index request: field 'field_schema' is required (keyword, integer, float, "
                                   "bool, datetime or uuid)");
  }
  if (schema->is_object()) {
    auto type = schema->find("type");
    if (type == schema->end()) return Status::InvalidArgument("create-index request: field_schema needs a 'type'");
    schema = &*type;
  }
  if (!schema->is_string()) {
    return Status::InvalidArgument("create-index request: field_schema must be a type name, got " + TypeName(*schema));
  }
  std::string type_name = schema->get<std::string>();
  if (type_name == "uuid") type_name = "keyword";  // (ids as text: equality, as keywords)
  if (type_name == "text" || type_name == "geo") {
    return Status::InvalidArgument("create-index request: '" + type_name + "' indexes are not supported: " +
                                   (type_name == "text" ? "match.text reads" : "geo filters read") +
                                   " payloads, with no index needed");
  }
  FATHOM_ASSIGN_OR_RETURN(FieldType type, ParseFieldType(type_name));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_RETURN_IF_ERROR(db_->CreatePayloadIndex(c->spec().name, field, type));
  return Completed();
}

Reply Api::DeleteFieldIndex(const ApiRequest& req) {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_RETURN_IF_ERROR(db_->DropPayloadIndex(c->spec().name, req.params.at(1)));
  return Completed();
}

Reply Api::DeleteCollection(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  std::unique_lock lock(db_mutex_);
  if (!db_) return Reply::Error(503, "the database is closed");
  return db_->DropCollection(name);
}

Reply Api::UpsertPoints(const ApiRequest& req) {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(std::vector<Record> records, ParseUpsertBody(req.body, c->spec()));
  FATHOM_RETURN_IF_ERROR(c->Upsert(records));
  return Reply::Ok(Dump(Json{{"operation_id", next_operation_id_.fetch_add(1)},
                             {"status", WriteStatus(req)},
                             {"upserted", records.size()}}));
}

Result<std::vector<Record>> Api::ParseUpsert(const ApiRequest& req) const {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(std::vector<Record> records, ParseUpsertBody(req.body, c->spec()));
  FATHOM_RETURN_IF_ERROR(c->ValidateUpsert(records));
  return records;
}

Result<std::vector<Record>> Api::ParseUpsertBody(std::string_view text, const CollectionSpec& spec) const {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(text, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "upsert request", {"points", "batch"}));
  const std::string default_vector = DefaultVectorName(spec);
  std::vector<Record> records;

  // One vector field: an array, a base64 string, or an object of named vectors.
  auto parse_vectors = [&](const Json& value, const std::string& what, Record* record) -> Status {
    if (value.is_object()) {
      for (const auto& [name, v] : value.items()) {
        FATHOM_RETURN_IF_ERROR(ParseVector(v, what + " vector '" + name + "'", &record->vectors[name]));
      }
      return Status::OK();
    }
    return ParseVector(value, what, &record->vectors[default_vector]);
  };
  auto parse_payload = [&](const Json& value, const std::string& what, Record* record) -> Status {
    if (value.is_null()) {
      record->payload = "{}";
      return Status::OK();
    }
    if (!value.is_object()) {
      return Status::InvalidArgument(what + ": payload must be a JSON object, got " + TypeName(value));
    }
    record->payload = Dump(value);
    return Status::OK();
  };

  if (auto points = body.find("points"); points != body.end()) {
    if (body.contains("batch")) {
      return Status::InvalidArgument("send either 'points' or 'batch', not both");
    }
    if (!points->is_array()) {
      return Status::InvalidArgument("field 'points' must be an array of points, got " + TypeName(*points));
    }
    if (points->size() > limits_.max_batch) {
      return Status::InvalidArgument("upsert has " + std::to_string(points->size()) +
                                     " points; the limit is " + std::to_string(limits_.max_batch));
    }
    records.resize(points->size());
    for (size_t i = 0; i < points->size(); ++i) {
      const Json& p = (*points)[i];
      std::string where = "points[" + std::to_string(i) + "]";
      FATHOM_RETURN_IF_ERROR(CheckFields(p, where, {"id", "vector", "payload"}));
      if (!p.contains("id")) return Status::InvalidArgument(where + ": field 'id' is required");
      FATHOM_ASSIGN_OR_RETURN(records[i].id, ParsePointId(p["id"], where));
      where = "point " + PointIdToString(records[i].id);
      if (!p.contains("vector")) return Status::InvalidArgument(where + ": field 'vector' is required");
      FATHOM_RETURN_IF_ERROR(parse_vectors(p["vector"], where, &records[i]));
      if (p.contains("payload")) FATHOM_RETURN_IF_ERROR(parse_payload(p["payload"], where, &records[i]));
    }
  } else if (auto batch = body.find("batch"); batch != body.end()) {
    FATHOM_RETURN_IF_ERROR(CheckFields(*batch, "batch", {"ids", "vectors", "payloads"}));
    if (!batch->contains("ids")) return Status::InvalidArgument("batch: field 'ids' is required");
    FATHOM_ASSIGN_OR_RETURN(std::vector<PointId> ids, ParseIds((*batch)["ids"], "batch.ids", limits_.max_batch));
    const size_t n = ids.size();
    records.resize(n);
    for (size_t i = 0; i < n; ++i) records[i].id = std::move(ids[i]);
    if (!batch->contains("vectors")) return Status::InvalidArgument("batch: field 'vectors' is required");
    // Vectors for one name: an array of n vectors, or one base64 string of n * dim floats.
    auto parse_column = [&](const Json& value, const std::string& name) -> Status {
      std::string what = name.empty() ? "batch.vectors" : "batch.vectors." + name;
      if (value.is_string()) {
        const VectorSpec* vs = FindVector(spec, name);
        if (vs == nullptr) {
          return Status::InvalidArgument("collection '" + spec.name + "' has no vector '" + name + "'");
        }
        std::vector<float> all;
        FATHOM_RETURN_IF_ERROR(DecodeBase64Floats(value.get_ref<const std::string&>(), what, &all));
        if (all.size() != n * vs->dim) {
          return Status::InvalidArgument(what + ": base64 holds " + std::to_string(all.size()) +
                                         " values, expected " + std::to_string(n) + " points x " +
                                         std::to_string(vs->dim) + " dimensions");
        }
        for (size_t i = 0; i < n; ++i) {
          records[i].vectors[name].assign(all.begin() + i * vs->dim, all.begin() + (i + 1) * vs->dim);
        }
        return Status::OK();
      }
      if (!value.is_array() || value.size() != n) {
        return Status::InvalidArgument(what + " must be an array of " + std::to_string(n) +
                                       " vectors (one per id) or a base64 string");
      }
      for (size_t i = 0; i < n; ++i) {
        FATHOM_RETURN_IF_ERROR(ParseVector(value[i], what + "[" + std::to_string(i) + "]",
                                           &records[i].vectors[name]));
      }
      return Status::OK();
    };
    const Json& vectors = (*batch)["vectors"];
    if (vectors.is_object()) {
      for (const auto& [name, value] : vectors.items()) FATHOM_RETURN_IF_ERROR(parse_column(value, name));
    } else {
      FATHOM_RETURN_IF_ERROR(parse_column(vectors, default_vector));
    }
    if (auto payloads = batch->find("payloads"); payloads != batch->end() && !payloads->is_null()) {
      if (!payloads->is_array() || payloads->size() != n) {
        return Status::InvalidArgument("batch.payloads must be an array of " + std::to_string(n) +
                                       " objects (one per id)");
      }
      for (size_t i = 0; i < n; ++i) {
        FATHOM_RETURN_IF_ERROR(parse_payload((*payloads)[i], "batch.payloads[" + std::to_string(i) + "]",
                                             &records[i]));
      }
    }
  } else {
    return Status::InvalidArgument("upsert request needs 'points' (a list of points) or 'batch'");
  }
  if (records.empty()) return Status::InvalidArgument("upsert batch is empty");
  return records;
}

Reply Api::GetPoints(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "get-points request",
                                     {"ids", "with_payload", "with_vector", "with_vectors"}));
  if (!body.contains("ids")) return Status::InvalidArgument("field 'ids' is required");
  FATHOM_ASSIGN_OR_RETURN(std::vector<PointId> ids, ParseIds(body["ids"], "ids", limits_.max_batch));
  std::vector<std::string> include, exclude;
  FATHOM_ASSIGN_OR_RETURN(bool with_payload, ParsePayloadSelector(body, "get-points request", &include, &exclude, true));
  FATHOM_ASSIGN_OR_RETURN(bool with_vector, GetWithVector(body, ""));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  std::string out = "[";
  if (!ids.empty()) {
    FATHOM_ASSIGN_OR_RETURN(auto records, c->Get(ids, with_vector));
    bool first = true;
    for (const auto& r : records) {
      if (!r) continue;
      if (!first) out.push_back(',');
      first = false;
      AppendRecord(&out, c->spec(), *r, with_payload, with_vector, include, exclude);
    }
  }
  out.push_back(']');
  return Reply::Ok(std::move(out));
}

Reply Api::GetPoint(const ApiRequest& req) {
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  PointId id = PointIdFromPath(req.params.at(1));
  FATHOM_ASSIGN_OR_RETURN(auto records, c->Get({id}, true));
  if (records.empty() || !records[0]) {
    return Status::NotFound("point " + PointIdToString(id) + " does not exist in collection '" +
                            c->spec().name + "'");
  }
  std::string out;
  AppendRecord(&out, c->spec(), *records[0], true, true);
  return Reply::Ok(std::move(out));
}

Status Api::ParsePointSelector(const Json& body, std::vector<PointId>* ids, std::string* filter,
                               std::string_view empty_filter) const {
  bool has_points = body.contains("points") && !body["points"].is_null();
  bool has_filter = body.contains("filter") && !body["filter"].is_null();
  if (has_points == has_filter) {
    return Status::InvalidArgument("send either 'points' (a list of ids) or 'filter', exactly one");
  }
  if (has_points) {
    FATHOM_ASSIGN_OR_RETURN(*ids, ParseIds(body["points"], "points", limits_.max_batch));
    return Status::OK();
  }
  FATHOM_ASSIGN_OR_RETURN(*filter, ParseFilter(body["filter"], limits_.max_filter_depth, limits_.max_filter_text));
  if (filter->empty()) return Status::InvalidArgument(std::string(empty_filter));
  return Status::OK();
}

Status Api::ParseDelete(const ApiRequest& req, std::vector<PointId>* ids, std::string* filter) const {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "delete-points request", {"points", "filter"}));
  return ParsePointSelector(body, ids, filter,
                            "an empty filter would delete every point; delete the collection instead");
}

Reply Api::DeletePoints(const ApiRequest& req) {
  std::vector<PointId> ids;
  std::string filter;
  FATHOM_RETURN_IF_ERROR(ParseDelete(req, &ids, &filter));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  size_t deleted = 0;
  if (!filter.empty()) {
    FATHOM_ASSIGN_OR_RETURN(deleted, c->DeleteByFilter(filter));
  } else if (!ids.empty()) {
    FATHOM_ASSIGN_OR_RETURN(deleted, c->Delete(ids));
  }
  return Reply::Ok(Dump(Json{{"operation_id", next_operation_id_.fetch_add(1)},
                             {"status", WriteStatus(req)},
                             {"deleted", deleted}}));
}

Reply Api::UpdatePayload(const ApiRequest& req, PayloadUpdate::Op op) {
  FATHOM_ASSIGN_OR_RETURN(PayloadUpdate update, ParsePayloadUpdate(req, op));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(size_t changed, c->UpdatePayload(update));
  return Reply::Ok(Dump(Json{{"operation_id", next_operation_id_.fetch_add(1)},
                             {"status", WriteStatus(req)},
                             {"updated", changed}}));
}

Result<PayloadUpdate> Api::ParsePayloadUpdate(const ApiRequest& req, PayloadUpdate::Op op) const {
  using Op = PayloadUpdate::Op;
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  if (op == Op::kSet || op == Op::kOverwrite) {
    FATHOM_RETURN_IF_ERROR(CheckFields(body, "payload request", {"points", "filter", "payload", "key"}));
  } else if (op == Op::kDeleteKeys) {
    FATHOM_RETURN_IF_ERROR(CheckFields(body, "delete-payload request", {"points", "filter", "keys"}));
  } else {
    FATHOM_RETURN_IF_ERROR(CheckFields(body, "clear-payload request", {"points", "filter"}));
  }
  PayloadUpdate update;
  update.op = op;
  if (op == Op::kSet || op == Op::kOverwrite) {
    auto payload = body.find("payload");
    if (payload == body.end() || !payload->is_object()) {
      return Status::InvalidArgument("'payload' must be a JSON object");
    }
    if (auto key = body.find("key"); key != body.end() && !key->is_null()) {
      return Status::InvalidArgument("'key' (a nested payload path) is not supported: set the top-level key instead");
    }
    update.payload = payload->dump();
  }
  if (op == Op::kDeleteKeys) {
    auto keys = body.find("keys");
    if (keys == body.end() || !keys->is_array() || keys->empty()) {
      return Status::InvalidArgument("'keys' must be a non-empty list of payload keys");
    }
    for (const Json& key : *keys) {
      if (!key.is_string()) return Status::InvalidArgument("'keys' must hold strings, got " + key.dump());
      update.keys.push_back(key.get<std::string>());
    }
  }
  FATHOM_RETURN_IF_ERROR(ParsePointSelector(
      body, &update.ids, &update.filter,
      "an empty filter would change every point; list the points or narrow the filter"));
  if (update.filter.empty() && update.ids.empty()) return Status::InvalidArgument("'points' is empty");
  return update;
}

Result<std::shared_ptr<Collection>> Api::LocalCollection(std::string_view name) const {
  std::shared_lock lock(db_mutex_);
  return Find(name);
}

Reply Api::SetPayload(const ApiRequest& req) { return UpdatePayload(req, PayloadUpdate::Op::kSet); }
Reply Api::OverwritePayload(const ApiRequest& req) { return UpdatePayload(req, PayloadUpdate::Op::kOverwrite); }
Reply Api::DeletePayload(const ApiRequest& req) { return UpdatePayload(req, PayloadUpdate::Op::kDeleteKeys); }
Reply Api::ClearPayload(const ApiRequest& req) { return UpdatePayload(req, PayloadUpdate::Op::kClear); }

Reply Api::CountPoints(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "count request", {"filter", "exact"}));
  FATHOM_ASSIGN_OR_RETURN(bool exact, GetBool(body, "exact", true, ""));
  (void)exact;  // counts are always exact; the field is accepted for Qdrant clients
  std::string filter;
  if (body.contains("filter")) {
    FATHOM_ASSIGN_OR_RETURN(filter, ParseFilter(body["filter"], limits_.max_filter_depth,
                                                limits_.max_filter_text));
  }
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  size_t count = 0;
  if (filter.empty()) {
    count = c->Count();
  } else {
    FATHOM_ASSIGN_OR_RETURN(count, c->CountByFilter(filter));
  }
  return Reply::Ok(Dump(Json{{"count", count}}));
}

// Qdrant's scroll: {filter, limit (10), offset (a point id), with_payload (true), with_vector}
// -> {points, next_page_offset}. Pages follow storage order (Qdrant's follow ids).
Reply Api::ScrollPoints(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body.empty() ? std::string_view("{}") : req.body,
                                               limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "scroll request",
                                     {"filter", "limit", "offset", "with_payload", "with_vector", "with_vectors",
                                      "order_by", "shard_key"}));
  if (auto o = body.find("order_by"); o != body.end() && !o->is_null()) {
    return Status::InvalidArgument("scroll request: order_by is not supported; pages follow storage order");
  }
  ScrollRequest request;
  FATHOM_ASSIGN_OR_RETURN(uint64_t limit, GetUint(body, "limit", 10, "scroll request"));
  if (limit == 0 || limit > limits_.max_batch) {
    return Status::InvalidArgument("scroll request: limit must be between 1 and " + std::to_string(limits_.max_batch) +
                                   ", got " + std::to_string(limit));
  }
  request.limit = limit;
  if (auto o = body.find("offset"); o != body.end() && !o->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(PointId offset, ParsePointId(*o, "scroll offset"));
    request.offset = std::move(offset);
  }
  if (auto f = body.find("filter"); f != body.end()) {
    FATHOM_ASSIGN_OR_RETURN(request.filter, ParseFilter(*f, limits_.max_filter_depth, limits_.max_filter_text));
  }
  std::vector<std::string> include, exclude;
  FATHOM_ASSIGN_OR_RETURN(request.with_payload, ParsePayloadSelector(body, "scroll request", &include, &exclude, true));
  FATHOM_ASSIGN_OR_RETURN(request.with_vectors, GetWithVector(body, "scroll request"));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(ScrollPage page, c->Scroll(request));
  std::string out = "{\"points\":[";
  for (size_t i = 0; i < page.points.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendRecord(&out, c->spec(), page.points[i], request.with_payload, request.with_vectors, include, exclude);
  }
  out += "],\"next_page_offset\":";
  if (page.next_offset) {
    AppendPointId(&out, *page.next_offset);
  } else {
    out += "null";
  }
  out.push_back('}');
  return Reply::Ok(std::move(out));
}

Status Api::ResolveSearchVector(const CollectionSpec& spec, std::string_view what, bool named,
                                ParsedSearch* out) const {
  if (!named) out->vector = DefaultVectorName(spec);
  const VectorSpec* vs = FindVector(spec, out->vector);
  if (vs == nullptr) {
    return Status::InvalidArgument("collection '" + spec.name + "' has no vector '" + out->vector + "'");
  }
  if (out->query.size() != vs->dim) {
    return Status::InvalidArgument(std::string(what) + ": the query vector has " +
                                   std::to_string(out->query.size()) + " dimensions, collection '" +
                                   spec.name + "' expects " + std::to_string(vs->dim));
  }
  out->metric = vs->metric;
  return Status::OK();
}

Status Api::CheckSearchLimit(uint64_t limit, uint64_t offset, std::string_view what) const {
  if (limit == 0 || limit > limits_.max_k || offset > limits_.max_k - limit) {
    return Status::InvalidArgument(std::string(what) + ": limit must be between 1 and " +
                                   std::to_string(limits_.max_k) + " (with offset), got limit " +
                                   std::to_string(limit) + " and offset " + std::to_string(offset));
  }
  return Status::OK();
}

Status Api::CheckSearchEf(uint64_t ef, std::string_view what) const {
  if (ef > static_cast<uint64_t>(limits_.max_ef)) {
    return Status::InvalidArgument(std::string(what) + ": params.ef must be at most " +
                                   std::to_string(limits_.max_ef) + ", got " + std::to_string(ef));
  }
  return Status::OK();
}

Result<Api::ParsedSearch> Api::ParseSearch(const Json& s, const CollectionSpec& spec,
                                           std::string_view what) const {
  FATHOM_RETURN_IF_ERROR(CheckFields(s, what,
                                     {"vector", "limit", "offset", "params", "filter", "with_payload",
                                      "with_vector", "with_vectors", "score_threshold", "shard_key"}));
  ParsedSearch out;
  auto vector = s.find("vector");
  if (vector == s.end() || vector->is_null()) {
    return Status::InvalidArgument(std::string(what) + ": field 'vector' is required");
  }
  if (vector->is_object()) {
    FATHOM_RETURN_IF_ERROR(CheckFields(*vector, std::string(what) + " vector", {"name", "vector"}));
    FATHOM_ASSIGN_OR_RETURN(out.vector, GetString(*vector, "name", std::string(what) + " vector"));
    if (!vector->contains("vector")) {
      return Status::InvalidArgument(std::string(what) + ": field 'vector.vector' is required");
    }
    FATHOM_RETURN_IF_ERROR(ParseVector((*vector)["vector"], what, &out.query));
  } else {
    FATHOM_RETURN_IF_ERROR(ParseVector(*vector, what, &out.query));
  }
  FATHOM_RETURN_IF_ERROR(ResolveSearchVector(spec, what, vector->is_object(), &out));
  FATHOM_ASSIGN_OR_RETURN(uint64_t limit, GetUint(s, "limit", 10, what));
  FATHOM_ASSIGN_OR_RETURN(uint64_t offset, GetUint(s, "offset", 0, what));
  FATHOM_RETURN_IF_ERROR(CheckSearchLimit(limit, offset, what));
  out.limit = limit;
  out.offset = offset;
  if (auto params = s.find("params"); params != s.end() && !params->is_null()) {
    FATHOM_RETURN_IF_ERROR(
        CheckFields(*params, std::string(what) + " params", {"ef", "hnsw_ef", "nprobe", "upper_ef", "checks", "exact", "quantization"}));
    FATHOM_ASSIGN_OR_RETURN(uint64_t ef, GetUint(*params, "ef", 0, "params"));
    FATHOM_ASSIGN_OR_RETURN(uint64_t hnsw_ef, GetUint(*params, "hnsw_ef", 0, "params"));
    ef = std::max(ef, hnsw_ef);
    FATHOM_RETURN_IF_ERROR(CheckSearchEf(ef, what));
    out.ef = static_cast<int>(ef);
    FATHOM_ASSIGN_OR_RETURN(uint64_t nprobe, GetUint(*params, "nprobe", 0, "params"));
    if (nprobe > (1u << 20)) return Status::InvalidArgument("params.nprobe must be at most 1048576");
    out.nprobe = static_cast<int>(nprobe);
    FATHOM_ASSIGN_OR_RETURN(uint64_t upper_ef, GetUint(*params, "upper_ef", 0, "params"));
    if (upper_ef > static_cast<uint64_t>(limits_.max_ef)) {
      return Status::InvalidArgument(std::string(what) + ": params.upper_ef must be at most " +
                                     std::to_string(limits_.max_ef) + ", got " + std::to_string(upper_ef));
    }
    out.upper_ef = static_cast<int>(upper_ef);
    FATHOM_ASSIGN_OR_RETURN(uint64_t checks, GetUint(*params, "checks", 0, "params"));
    if (checks > (1u << 30)) return Status::InvalidArgument("params.checks must be at most 1073741824");
    out.checks = static_cast<int>(checks);
    FATHOM_ASSIGN_OR_RETURN(out.exact, GetBool(*params, "exact", false, "params"));
    // Qdrant's quantization params: re-rank oversampling x limit candidates with exact
    // distances (rescore false or ignore true: the default depth).
    if (auto q = params->find("quantization"); q != params->end() && !q->is_null()) {
      FATHOM_RETURN_IF_ERROR(CheckFields(*q, "params.quantization", {"ignore", "rescore", "oversampling"}));
      FATHOM_ASSIGN_OR_RETURN(bool ignore, GetBool(*q, "ignore", false, "params.quantization"));
      FATHOM_ASSIGN_OR_RETURN(bool rescore, GetBool(*q, "rescore", true, "params.quantization"));
      if (auto o = q->find("oversampling"); o != q->end() && !o->is_null() && !ignore && rescore) {
        if (!o->is_number() || !(o->get<double>() >= 1.0) || o->get<double>() > 100.0) {
          return Status::InvalidArgument("params.quantization.oversampling must be a number from 1 to 100");
        }
        const double depth = std::ceil(o->get<double>() * double(limit + offset));
        out.rerank = static_cast<int>(std::min(depth, 100000.0));
      }
    }
  }
  if (auto filter = s.find("filter"); filter != s.end()) {
    FATHOM_ASSIGN_OR_RETURN(out.filter, ParseFilter(*filter, limits_.max_filter_depth, limits_.max_filter_text));
  }
  FATHOM_ASSIGN_OR_RETURN(out.with_payload,
                          ParsePayloadSelector(s, what, &out.payload_include, &out.payload_exclude, false));
  FATHOM_ASSIGN_OR_RETURN(out.with_vector, GetWithVector(s, what));
  if (auto t = s.find("score_threshold"); t != s.end() && !t->is_null()) {
    if (!t->is_number() || !std::isfinite(t->get<double>())) {
      return Status::InvalidArgument(std::string(what) + ": score_threshold must be a number, got " + TypeName(*t));
    }
    out.score_threshold = t->get<double>();
  }
  return out;
}

namespace {

// Whether a hit scored `score` (in `metric`'s score) is worse than the threshold: Euclid
// scores are distances, smaller is better.
bool BeyondThreshold(Metric metric, double score, double threshold) {
  return SmallerIsBetter(metric) ? score > threshold : score < threshold;
}

// `S` is Api::ParsedSearch (private to Api).
template <class S>
void AppendHits(std::string* out, const CollectionSpec& spec, const S& s, const std::vector<ScoredPoint>& hits) {
  const Metric metric = s.metric;
  out->push_back('[');
  bool first = true;
  for (size_t i = s.offset; i < hits.size(); ++i) {
    const ScoredPoint& p = hits[i];
    const double score = Score(metric, p.distance);
    if (s.score_threshold && BeyondThreshold(metric, score, *s.score_threshold)) {
      break;  // hits come best first: the rest score worse
    }
    if (!first) out->push_back(',');
    first = false;
    *out += "{\"id\":";
    AppendPointId(out, p.id);
    *out += ",\"score\":";
    AppendNumber(out, score);
    *out += ",\"distance\":";
    AppendNumber(out, p.distance);
    if (s.with_payload) {
      *out += ",\"payload\":";
      AppendSelectedPayload(out, p.payload, s.payload_include, s.payload_exclude);
    }
    if (s.with_vector) {
      *out += ",\"vector\":";
      AppendVectors(out, spec, p.vectors);
    }
    out->push_back('}');
  }
  out->push_back(']');
}

}  // namespace

Result<const Json*> Api::BatchSearches(const Json& body, std::string_view kind) const {
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "batch " + std::string(kind) + " request", {"searches"}));
  auto searches = body.find("searches");
  if (searches == body.end() || !searches->is_array()) {
    return Status::InvalidArgument("field 'searches' must be an array of " + std::string(kind) + " requests");
  }
  if (searches->size() > limits_.max_batch) {
    return Status::InvalidArgument("batch has " + std::to_string(searches->size()) + " searches; the limit is " +
                                   std::to_string(limits_.max_batch));
  }
  return &*searches;
}

Result<std::string> Api::RunRecommend(Collection* c, const Json& body, std::string_view what) {
  FATHOM_ASSIGN_OR_RETURN(QueryHits found, RecommendPoints(c, body, what));
  std::string out;
  AppendHits(&out, c->spec(), found.shape, found.hits);
  return out;
}

Result<Api::QueryHits> Api::RecommendPoints(Collection* c, const Json& body, std::string_view what) {
  FATHOM_RETURN_IF_ERROR(CheckFields(body, what,
                                     {"positive", "negative", "strategy", "filter", "params", "limit", "offset",
                                      "with_payload", "with_vector", "with_vectors", "score_threshold", "using",
                                      "lookup_from", "shard_key"}));
  if (auto l = body.find("lookup_from"); l != body.end() && !l->is_null()) {
    return Status::InvalidArgument(std::string(what) + ": lookup_from is not supported");
  }
  const CollectionSpec& spec = c->spec();
  RecommendRequest request;
  if (auto u = body.find("using"); u != body.end() && !u->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(request.vector, GetString(body, "using", what));
  } else {
    request.vector = DefaultVectorName(spec);
  }
  auto examples = [&](const char* field, std::vector<PointId>* ids, std::vector<std::vector<float>>* vectors) -> Status {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return Status::OK();
    if (!it->is_array()) {
      return Status::InvalidArgument(std::string(what) + ": " + field + " must be an array of point ids or vectors, got " +
                                     TypeName(*it));
    }
    if (it->size() > limits_.max_batch) {
      return Status::InvalidArgument(std::string(what) + ": " + field + " has more than " +
                                     std::to_string(limits_.max_batch) + " examples");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& e = (*it)[i];
      const std::string where = std::string(what) + " " + field + "[" + std::to_string(i) + "]";
      if (e.is_array()) {  // a vector; anything else is a point id
        vectors->emplace_back();
        FATHOM_RETURN_IF_ERROR(ParseVector(e, where, &vectors->back()));
      } else {
        FATHOM_ASSIGN_OR_RETURN(PointId id, ParsePointId(e, where));
        ids->push_back(std::move(id));
      }
    }
    return Status::OK();
  };
  FATHOM_RETURN_IF_ERROR(examples("positive", &request.positive_ids, &request.positive_vectors));
  FATHOM_RETURN_IF_ERROR(examples("negative", &request.negative_ids, &request.negative_vectors));
  std::string strategy;
  if (auto st = body.find("strategy"); st != body.end() && !st->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(strategy, GetString(body, "strategy", what));
  }
  if (strategy.empty() || strategy == "average_vector") {
    request.strategy = RecommendRequest::Strategy::kAverageVector;
  } else if (strategy == "best_score") {
    request.strategy = RecommendRequest::Strategy::kBestScore;
  } else {
    return Status::InvalidArgument(std::string(what) + ": strategy must be average_vector or best_score, got '" +
                                   strategy + "'");
  }
  // The rest reads as a search: limit, offset, params, filter, payload and vector selection,
  // score_threshold (ParseSearch's checks, with the first example as a stand-in query).
  Json as_search = Json::object();
  for (const char* field : {"limit", "offset", "params", "filter", "with_payload", "with_vector", "with_vectors",
                            "score_threshold"}) {
    if (auto it = body.find(field); it != body.end()) as_search[field] = *it;
  }
  const VectorSpec* vs = FindVector(spec, request.vector);
  if (vs == nullptr) {
    return Status::InvalidArgument("collection '" + spec.name + "' has no vector '" + request.vector + "'");
  }
  as_search["vector"] = Json{{"name", request.vector}, {"vector", std::vector<float>(vs->dim, 0.0f)}};
  FATHOM_ASSIGN_OR_RETURN(ParsedSearch s, ParseSearch(as_search, spec, what));
  request.k = s.limit + s.offset;
  request.ef = s.ef;
  request.exact = s.exact;
  request.filter = s.filter;
  request.with_payload = s.with_payload;
  request.with_vectors = s.with_vector;
  FATHOM_ASSIGN_OR_RETURN(std::vector<ScoredPoint> hits, c->Recommend(request));
  if (request.strategy == RecommendRequest::Strategy::kBestScore) {
    // Scores are the strategy's own (distance is minus the score): report them as they are.
    s.metric = Metric::kInnerProduct;
  }
  return QueryHits{std::move(s), std::move(hits)};
}

Reply Api::Recommend(const ApiRequest& req) { return RunOne(req, "recommend request", &Api::RunRecommend, "", ""); }

Reply Api::RunOne(const ApiRequest& req, std::string_view what,
                  Result<std::string> (Api::*run)(Collection*, const Json&, std::string_view),
                  std::string_view before, std::string_view after) {
  SearchSlot slot(&search_slots_);
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(std::string hits, (this->*run)(c.get(), body, what));
  return Reply::Ok(std::string(before).append(hits).append(after));
}

Reply Api::RecommendBatch(const ApiRequest& req) { return RunEach(req, "recommend", &Api::RunRecommend, "", ""); }

Reply Api::RunEach(const ApiRequest& req, std::string_view kind,
                   Result<std::string> (Api::*run)(Collection*, const Json&, std::string_view),
                   std::string_view before, std::string_view after) {
  SearchSlot slot(&search_slots_);
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_ASSIGN_OR_RETURN(const Json* searches, BatchSearches(body, kind));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  std::string out = "[";
  for (size_t i = 0; i < searches->size(); ++i) {
    if (std::chrono::steady_clock::now() > req.deadline) {
      return Reply::Error(408, std::string(kind) + "-batch request timed out");
    }
    FATHOM_ASSIGN_OR_RETURN(std::string hits, (this->*run)(c.get(), (*searches)[i], "searches[" + std::to_string(i) + "]"));
    if (i > 0) out.push_back(',');
    out.append(before).append(hits).append(after);
  }
  out.push_back(']');
  return Reply::Ok(std::move(out));
}

Reply Api::Search(const ApiRequest& req) {
  SearchSlot slot(&search_slots_);  // parsing, searching, the answer: all CPU
  if (req.fast_parse) {
    std::shared_lock lock(db_mutex_);
    std::vector<ParsedSearch> parsed;
    auto c = Find(req.params.at(0));
    if (c.ok() && FastParseSearches(req.body, (*c)->spec(), /*batch=*/false, &parsed)) {
      return RunSearch(c->get(), std::move(parsed.at(0)));
    }
  }
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(ParsedSearch s, ParseSearch(body, c->spec(), "search request"));
  return RunSearch(c.get(), std::move(s));
}

Reply Api::RunSearch(Collection* c, ParsedSearch s) {
  FATHOM_ASSIGN_OR_RETURN(std::string out, SearchHits(c, std::move(s)));
  return Reply::Ok(std::move(out));
}

Result<std::string> Api::SearchHits(Collection* c, ParsedSearch s) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<ScoredPoint> hits, SearchPoints(c, s));
  std::string out;
  AppendHits(&out, c->spec(), s, hits);
  return out;
}

Result<std::vector<ScoredPoint>> Api::SearchPoints(Collection* c, const ParsedSearch& s) {
  SearchRequest request;
  request.vector = s.vector;
  request.queries = s.query;
  request.k = s.limit + s.offset;
  request.ef = s.ef;
  request.rerank = s.rerank;
  request.nprobe = s.nprobe;
  request.upper_ef = s.upper_ef;
  request.checks = s.checks;
  request.exact = s.exact;
  request.filter = s.filter;
  request.with_payload = s.with_payload;
  request.with_vectors = s.with_vector;
  FATHOM_ASSIGN_OR_RETURN(auto results, c->Search(request));
  return std::move(results.at(0));
}

namespace {

// `a` AND `b`, filters in either form (a JSON object or the text language); null when neither
// is given. Qdrant ANDs a query's filter into every prefetch below it.
Result<Json> AndFilters(const Json& a, const Json& b) {
  if (a.is_null()) return b;
  if (b.is_null()) return a;
  if (a.is_object() && b.is_object()) return Json{{"must", Json::array({a, b})}};
  if (a.is_string() && b.is_string()) {
    return Json("(" + a.get<std::string>() + ") and (" + b.get<std::string>() + ")");
  }
  return Status::InvalidArgument("a query's filter and the filters of its prefetches must be all JSON or all text "
                                 "to be combined");
}

constexpr int kMaxPrefetchDepth = 4;     // levels of nested prefetches
constexpr size_t kMaxPrefetches = 16;    // prefetches on one level
constexpr size_t kMaxPrefetchTotal = 64;  // prefetches in one request, all levels

}  // namespace

Result<std::string> Api::RunQuery(Collection* c, const Json& body, std::string_view what) {
  // Every prefetch is a search: a request may hold at most kMaxPrefetchTotal of them in all.
  std::function<size_t(const Json&)> count = [&](const Json& q) -> size_t {
    auto p = q.is_object() ? q.find("prefetch") : q.end();
    if (!q.is_object() || p == q.end()) return 0;
    size_t n = 0;
    if (p->is_object()) n = 1 + count(*p);
    if (p->is_array()) {
      for (const Json& child : *p) n += 1 + count(child);
    }
    return n;
  };
  if (const size_t n = count(body); n > kMaxPrefetchTotal) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(n) + " prefetches in all; the limit is " +
                                   std::to_string(kMaxPrefetchTotal));
  }
  FATHOM_ASSIGN_OR_RETURN(QueryHits found, QueryPoints(c, body, what, Json(), 0));
  std::string out;
  AppendHits(&out, c->spec(), found.shape, found.hits);
  return out;
}

Result<Api::QueryHits> Api::QueryPoints(Collection* c, const Json& body, std::string_view what, const Json& inherited,
                                        int depth) {
  FATHOM_RETURN_IF_ERROR(CheckFields(body, what,
                                     {"query", "using", "filter", "params", "limit", "offset", "with_payload",
                                      "with_vector", "with_vectors", "score_threshold", "prefetch", "lookup_from",
                                      "shard_key"}));
  if (auto it = body.find("lookup_from"); it != body.end() && !it->is_null()) {
    return Status::InvalidArgument(std::string(what) + ": 'lookup_from' is not supported");
  }
  Json own_filter;
  if (auto f = body.find("filter"); f != body.end()) own_filter = *f;
  FATHOM_ASSIGN_OR_RETURN(Json filter, AndFilters(inherited, own_filter));
  if (auto p = body.find("prefetch"); p != body.end() && !p->is_null()) {
    return QueryOverPrefetch(c, body, what, filter, depth);
  }
  auto query = body.find("query");
  if (query == body.end() || query->is_null()) {
    return Status::InvalidArgument(std::string(what) + ": field 'query' is required (to list points, use scroll)");
  }
  const Json* q = &*query;
  if (q->is_object() && q->contains("nearest")) {
    if (q->size() != 1) return Status::InvalidArgument(std::string(what) + ": 'nearest' takes no other fields");
    q = &(*q)["nearest"];
  }
  // What every form shares: the search's own fields.
  Json common = Json::object();
  for (const char* field : {"params", "limit", "offset", "with_payload", "with_vector", "with_vectors",
                            "score_threshold"}) {
    if (auto it = body.find(field); it != body.end()) common[field] = *it;
  }
  if (!filter.is_null()) common["filter"] = filter;
  const CollectionSpec& spec = c->spec();
  std::string using_name = DefaultVectorName(spec);
  if (auto u = body.find("using"); u != body.end() && !u->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(using_name, GetString(body, "using", what));
  }
  if (q->is_array()) {  // a vector: nearest neighbours
    Json search = common;
    search["vector"] = Json{{"name", using_name}, {"vector", *q}};
    FATHOM_ASSIGN_OR_RETURN(ParsedSearch s, ParseSearch(search, spec, what));
    FATHOM_ASSIGN_OR_RETURN(std::vector<ScoredPoint> hits, SearchPoints(c, s));
    return QueryHits{std::move(s), std::move(hits)};
  }
  Json recommend = common;
  recommend["using"] = using_name;
  if (q->is_number_integer() || q->is_string()) {
    // A point id: the nearest neighbours of its vector, itself excluded (as a recommend with one
    // positive example).
    recommend["positive"] = Json::array({*q});
  } else if (q->is_object() && q->contains("recommend")) {
    if (q->size() != 1) return Status::InvalidArgument(std::string(what) + ": 'recommend' takes no other fields");
    const Json& r = (*q)["recommend"];
    FATHOM_RETURN_IF_ERROR(CheckFields(r, std::string(what) + " recommend", {"positive", "negative", "strategy"}));
    for (const char* field : {"positive", "negative", "strategy"}) {
      if (auto it = r.find(field); it != r.end()) recommend[field] = *it;
    }
  } else if (q->is_object() && (q->contains("fusion") || q->contains("rrf"))) {
    return Status::InvalidArgument(std::string(what) + ": query '" + q->begin().key() +
                                   "' fuses the results of prefetches: give 'prefetch'");
  } else if (q->is_object() && !q->empty()) {
    return Status::InvalidArgument(std::string(what) + ": query '" + q->begin().key() +
                                   "' is not supported (a vector, a point id, nearest, recommend, or with prefetch "
                                   "fusion are)");
  } else {
    return Status::InvalidArgument(std::string(what) + ": 'query' must be a vector, a point id or an object, got " +
                                   TypeName(*q));
  }
  return RecommendPoints(c, recommend, what);
}

Result<Api::QueryHits> Api::QueryOverPrefetch(Collection* c, const Json& body, std::string_view what,
                                              const Json& filter, int depth) {
  const std::string where(what);
  if (depth >= kMaxPrefetchDepth) {
    return Status::InvalidArgument(where + ": prefetches nest more than " + std::to_string(kMaxPrefetchDepth) +
                                   " levels deep");
  }
  const Json& prefetch = body["prefetch"];
  std::vector<const Json*> items;
  if (prefetch.is_object()) {
    items.push_back(&prefetch);
  } else if (prefetch.is_array() && !prefetch.empty()) {
    for (const Json& p : prefetch) items.push_back(&p);
  } else {
    return Status::InvalidArgument(where + ": 'prefetch' must be a query object or a non-empty array of them, got " +
                                   TypeName(prefetch));
  }
  if (items.size() > kMaxPrefetches) {
    return Status::InvalidArgument(where + ": " + std::to_string(items.size()) + " prefetches; the limit is " +
                                   std::to_string(kMaxPrefetches));
  }
  // Each prefetch's ranked hits (ids and scores only: payloads are read for the final hits).
  std::vector<QueryHits> lists;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string child_what = where + " prefetch[" + std::to_string(i) + "]";
    if (!items[i]->is_object()) {
      return Status::InvalidArgument(child_what + " must be an object, got " + TypeName(*items[i]));
    }
    FATHOM_RETURN_IF_ERROR(CheckFields(*items[i], child_what,
                                       {"prefetch", "query", "using", "filter", "params", "score_threshold", "limit",
                                        "lookup_from"}));
    Json child = *items[i];
    child["with_payload"] = false;
    FATHOM_ASSIGN_OR_RETURN(QueryHits found, QueryPoints(c, child, child_what, filter, depth + 1));
    if (const auto& t = found.shape.score_threshold) {
      auto& hits = found.hits;
      auto beyond = std::find_if(hits.begin(), hits.end(), [&](const ScoredPoint& p) {
        return BeyondThreshold(found.shape.metric, Score(found.shape.metric, p.distance), *t);
      });
      hits.erase(beyond, hits.end());
    }
    lists.push_back(std::move(found));
  }

  auto query = body.find("query");
  if (query == body.end() || query->is_null()) {
    return Status::InvalidArgument(where + ": with 'prefetch', 'query' says what to do with their results: a fusion "
                                   "({\"fusion\": \"rrf\"} or \"dbsf\"), a vector or a point id");
  }
  const CollectionSpec& spec = c->spec();
  std::string using_name = DefaultVectorName(spec);
  if (auto u = body.find("using"); u != body.end() && !u->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(using_name, GetString(body, "using", what));
  }
  const Json* q = &*query;
  if (q->is_object() && q->contains("nearest")) {
    if (q->size() != 1) return Status::InvalidArgument(where + ": 'nearest' takes no other fields");
    q = &(*q)["nearest"];
  }
  const bool fusion = q->is_object() && (q->contains("fusion") || q->contains("rrf"));
  const VectorSpec* vs = FindVector(spec, using_name);
  if (vs == nullptr && fusion && !body.contains("using")) vs = &spec.vectors.front();  // (only named vectors)
  if (vs == nullptr) return Status::InvalidArgument("collection '" + spec.name + "' has no vector '" + using_name + "'");
  using_name = vs->name;
  // limit, offset, params, payload and vector selection, score_threshold, read as a search's.
  Json as_search = Json::object();
  for (const char* field : {"limit", "offset", "params", "with_payload", "with_vector", "with_vectors",
                            "score_threshold"}) {
    if (auto it = body.find(field); it != body.end()) as_search[field] = *it;
  }
  as_search["vector"] = Json{{"name", using_name}, {"vector", std::vector<float>(vs->dim, 0.0f)}};
  FATHOM_ASSIGN_OR_RETURN(ParsedSearch s, ParseSearch(as_search, spec, what));
  const size_t keep = s.limit + s.offset;
  std::vector<ScoredPoint> hits;
  if (fusion) {
    if (q->size() != 1) return Status::InvalidArgument(where + ": a fusion query takes one field");
    // RRF: each list adds weight-scaled 1 / (k + rank) (rank from 0; Qdrant's default k = 2).
    // DBSF: each list's scores (higher is better) mapped linearly from [mean - 3 sd, mean + 3 sd]
    // onto [0, 1], clamped, then summed.
    bool rrf = true;
    double k = 2;
    std::vector<double> weights(lists.size(), 1.0);
    if (q->contains("fusion")) {
      const Json& f = (*q)["fusion"];
      if (!f.is_string() || (f != "rrf" && f != "dbsf")) {
        return Status::InvalidArgument(where + ": 'fusion' must be \"rrf\" or \"dbsf\", got " + Dump(f));
      }
      rrf = f == "rrf";
    } else {
      const Json& r = (*q)["rrf"];
      if (!r.is_object()) return Status::InvalidArgument(where + ": 'rrf' must be an object, got " + TypeName(r));
      FATHOM_RETURN_IF_ERROR(CheckFields(r, where + " rrf", {"k", "weights"}));
      if (auto kk = r.find("k"); kk != r.end() && !kk->is_null()) {
        if (!kk->is_number_integer() || kk->get<int64_t>() < 1 || kk->get<int64_t>() > 1000000) {
          return Status::InvalidArgument(where + ": rrf 'k' must be an integer from 1 to 1000000, got " + Dump(*kk));
        }
        k = double(kk->get<int64_t>());
      }
      if (auto w = r.find("weights"); w != r.end() && !w->is_null()) {
        if (!w->is_array() || w->size() != lists.size()) {
          return Status::InvalidArgument(where + ": rrf 'weights' must be an array of one number per prefetch (" +
                                         std::to_string(lists.size()) + ")");
        }
        for (size_t i = 0; i < lists.size(); ++i) {
          const Json& wi = (*w)[i];
          if (!wi.is_number() || !(wi.get<double>() > 0) || !std::isfinite(wi.get<double>())) {
            return Status::InvalidArgument(where + ": rrf weights must be positive numbers, got " + Dump(wi));
          }
          weights[i] = wi.get<double>();
        }
      }
    }
    std::unordered_map<PointId, size_t> slot;  // id -> index in `fused`
    std::vector<std::pair<double, PointId>> fused;
    for (size_t l = 0; l < lists.size(); ++l) {
      const auto& list = lists[l].hits;
      // DBSF reads the scores the prefetch reports (Euclid: the distance, smaller better, so
      // negated), so that its normalisation is of the numbers a client sees.
      const Metric list_metric = lists[l].shape.metric;
      auto goodness = [&](const ScoredPoint& p) {
        const double score = Score(list_metric, p.distance);
        return SmallerIsBetter(list_metric) ? -score : score;
      };
      double mean = 0, var = 0;
      if (!rrf && !list.empty()) {
        for (const auto& p : list) mean += goodness(p);
        mean /= double(list.size());
        for (const auto& p : list) var += (goodness(p) - mean) * (goodness(p) - mean);
        var /= double(list.size());
      }
      const double sd = std::sqrt(var);
      for (size_t rank = 0; rank < list.size(); ++rank) {
        double add;
        if (rrf) {
          add = 1.0 / ((double(rank) + 1.0) / weights[l] + k - 1.0);
        } else {
          add = sd > 0 ? std::clamp((goodness(list[rank]) - (mean - 3 * sd)) / (6 * sd), 0.0, 1.0) : 0.5;
        }
        auto [it, inserted] = slot.try_emplace(list[rank].id, fused.size());
        if (inserted) fused.emplace_back(0.0, list[rank].id);
        fused[it->second].first += add;
      }
    }
    // Best first; ties in the order first found (stable).
    std::stable_sort(fused.begin(), fused.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    if (fused.size() > keep) fused.resize(keep);
    s.metric = Metric::kInnerProduct;  // (a distance is minus its score)
    for (auto& [score, id] : fused) {
      ScoredPoint p;
      p.id = std::move(id);
      p.distance = float(-score);
      hits.push_back(std::move(p));
    }
    if ((s.with_payload || s.with_vector) && !hits.empty()) {
      std::vector<PointId> ids;
      for (const auto& p : hits) ids.push_back(p.id);
      FATHOM_ASSIGN_OR_RETURN(auto records, c->Get(ids, s.with_vector));
      for (size_t i = 0; i < hits.size(); ++i) {
        if (!records[i]) continue;  // (deleted since its prefetch: kept, without a payload)
        hits[i].payload = std::move(records[i]->payload);
        hits[i].vectors = std::move(records[i]->vectors);
      }
    }
    return QueryHits{std::move(s), std::move(hits)};
  }

  // A vector, or a point's vector (the point itself left out): the prefetches' points re-scored
  // exactly with it on `using`.
  std::vector<float> v;
  std::optional<PointId> self;
  if (q->is_array()) {
    FATHOM_RETURN_IF_ERROR(ParseVector(*q, where + " query", &v));
  } else if (q->is_number_integer() || q->is_string()) {
    FATHOM_ASSIGN_OR_RETURN(PointId id, ParsePointId(*q, where + " query"));
    FATHOM_ASSIGN_OR_RETURN(auto records, c->Get({id}, true));
    if (!records[0]) return Status::NotFound("point " + PointIdToString(id) + " not found");
    auto it = records[0]->vectors.find(using_name);
    if (it == records[0]->vectors.end()) {
      return Status::InvalidArgument("point " + PointIdToString(id) + " has no vector '" + using_name + "'");
    }
    v = it->second;
    self = std::move(id);
  } else if (q->is_object() && !q->empty()) {
    return Status::InvalidArgument(where + ": query '" + q->begin().key() +
                                   "' over prefetch results is not supported (a fusion, a vector or a point id is)");
  } else {
    return Status::InvalidArgument(where + ": 'query' must be a fusion, a vector or a point id, got " + TypeName(*q));
  }
  if (v.size() != vs->dim) {
    return Status::InvalidArgument(where + ": query vector has " + std::to_string(v.size()) + " dimensions; vector '" +
                                   using_name + "' has " + std::to_string(vs->dim));
  }
  if (vs->metric == Metric::kCosine) simd::Normalize(v.data(), v.size());
  std::vector<PointId> ids;
  {
    std::unordered_map<PointId, bool> seen;
    for (const auto& list : lists) {
      for (const auto& p : list.hits) {
        if ((!self || p.id != *self) && seen.try_emplace(p.id, true).second) ids.push_back(p.id);
      }
    }
  }
  FATHOM_ASSIGN_OR_RETURN(auto records, c->Get(ids, true));
  std::vector<float> x;
  for (auto& r : records) {
    if (!r) continue;  // (deleted since its prefetch)
    auto it = r->vectors.find(using_name);
    if (it == r->vectors.end() || it->second.size() != v.size()) continue;
    x = it->second;
    if (vs->metric == Metric::kCosine) simd::Normalize(x.data(), x.size());
    ScoredPoint p;
    p.id = std::move(r->id);
    p.distance = MetricDistance(vs->metric, v.data(), x.data(), x.size());
    if (s.with_payload) p.payload = std::move(r->payload);
    if (s.with_vector) p.vectors = std::move(r->vectors);
    hits.push_back(std::move(p));
  }
  std::stable_sort(hits.begin(), hits.end(), [](const ScoredPoint& a, const ScoredPoint& b) { return a.distance < b.distance; });
  if (hits.size() > keep) hits.resize(keep);
  s.metric = vs->metric;
  return QueryHits{std::move(s), std::move(hits)};
}

Reply Api::Query(const ApiRequest& req) { return RunOne(req, "query request", &Api::RunQuery, "{\"points\":", "}"); }

Reply Api::QueryBatch(const ApiRequest& req) { return RunEach(req, "query", &Api::RunQuery, "{\"points\":", "}"); }

Reply Api::SearchBatch(const ApiRequest& req) {
  SearchSlot slot(&search_slots_);  // parsing, searching, the answer: all CPU
  if (req.fast_parse) {
    std::shared_lock lock(db_mutex_);
    std::vector<ParsedSearch> parsed;
    auto c = Find(req.params.at(0));
    if (c.ok() && FastParseSearches(req.body, (*c)->spec(), /*batch=*/true, &parsed)) {
      return RunSearchBatch(c->get(), std::move(parsed), req.deadline);
    }
  }
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_ASSIGN_OR_RETURN(const Json* searches, BatchSearches(body, "search"));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  const CollectionSpec& spec = c->spec();
  std::vector<ParsedSearch> parsed;
  parsed.reserve(searches->size());
  for (size_t i = 0; i < searches->size(); ++i) {
    FATHOM_ASSIGN_OR_RETURN(ParsedSearch s,
                            ParseSearch((*searches)[i], spec, "searches[" + std::to_string(i) + "]"));
    parsed.push_back(std::move(s));
  }
  return RunSearchBatch(c.get(), std::move(parsed), req.deadline);
}

Reply Api::RunSearchBatch(Collection* c, std::vector<ParsedSearch> parsed,
                          std::chrono::steady_clock::time_point deadline) {
  const CollectionSpec& spec = c->spec();
  size_t total_results = 0;
  for (const ParsedSearch& s : parsed) total_results += s.limit + s.offset;
  if (total_results > limits_.max_batch_results) {
    return Status::InvalidArgument("batch asks for " + std::to_string(total_results) +
                                   " results in all; the limit is " +
                                   std::to_string(limits_.max_batch_results));
  }
  // Searches that differ only in their query vector run as one library call, which searches
  // them together (the fast path for clients batching many queries).
  using Key = std::tuple<std::string, size_t, int, std::string, bool, bool, int, bool, int, int, int>;
  std::map<Key, std::vector<size_t>> groups;
  for (size_t i = 0; i < parsed.size(); ++i) {
    const ParsedSearch& s = parsed[i];
    groups[Key{s.vector, s.limit + s.offset, s.ef, s.filter, s.with_payload, s.with_vector, s.rerank, s.exact, s.nprobe, s.upper_ef, s.checks}]
        .push_back(i);
  }
  std::vector<std::vector<ScoredPoint>> results(parsed.size());
  size_t done = 0;
  for (const auto& [key, members] : groups) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Reply::Error(408, "batch search ran past the request time limit after " +
                                   std::to_string(done) + " of " + std::to_string(parsed.size()) +
                                   " searches; send smaller batches");
    }
    const ParsedSearch& first = parsed[members.front()];
    SearchRequest request;
    request.vector = first.vector;
    request.k = first.limit + first.offset;
    request.ef = first.ef;
    request.rerank = first.rerank;
    request.nprobe = first.nprobe;
    request.upper_ef = first.upper_ef;
    request.checks = first.checks;
    request.exact = first.exact;
    request.filter = first.filter;
    request.with_payload = first.with_payload;
    request.with_vectors = first.with_vector;
    request.queries.reserve(members.size() * first.query.size());
    for (size_t i : members) {
      request.queries.insert(request.queries.end(), parsed[i].query.begin(), parsed[i].query.end());
    }
    FATHOM_ASSIGN_OR_RETURN(auto group_results, c->Search(request));
    for (size_t j = 0; j < members.size() && j < group_results.size(); ++j) {
      results[members[j]] = std::move(group_results[j]);
    }
    done += members.size();
  }
  std::string out = "[";
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (i) out.push_back(',');
    const ParsedSearch& s = parsed[i];
    AppendHits(&out, spec, s, results[i]);
  }
  out.push_back(']');
  return Reply::Ok(std::move(out));
}

// POST /collections/{name}/tune: the cheapest search setting that reaches target_recall becomes
// the collection's default (Collection::Tune).
Reply Api::Tune(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "tune request",
                                     {"target_recall", "k", "limit", "sample", "using", "queries", "values", "store"}));
  TuneRequest request;
  const auto target = body.find("target_recall");
  if (target == body.end() || !target->is_number() || !(target->get<double>() > 0) || target->get<double>() > 1) {
    return Status::InvalidArgument("tune request: 'target_recall' is required, a number in (0, 1] such as 0.95");
  }
  request.target_recall = target->get<double>();
  FATHOM_ASSIGN_OR_RETURN(uint64_t k, GetUint(body, body.contains("limit") ? "limit" : "k", 10, "tune request"));
  FATHOM_ASSIGN_OR_RETURN(uint64_t sample, GetUint(body, "sample", 500, "tune request"));
  request.k = k;
  request.sample = sample;
  if (auto u = body.find("using"); u != body.end() && !u->is_null()) {
    FATHOM_ASSIGN_OR_RETURN(request.vector, GetString(body, "using", "tune request"));
  }
  if (auto values = body.find("values"); values != body.end() && !values->is_null()) {
    if (!values->is_array() || values->empty()) {
      return Status::InvalidArgument("tune request: 'values' must be a non-empty array of settings such as [16, 64]");
    }
    for (const Json& value : *values) {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1000000) {
        return Status::InvalidArgument("tune request: 'values' must hold integers from 1 to 1000000");
      }
      request.values.push_back(static_cast<int>(value.get<int64_t>()));
    }
  }
  if (auto store = body.find("store"); store != body.end() && !store->is_null()) {
    if (!store->is_boolean()) return Status::InvalidArgument("tune request: 'store' must be true or false");
    request.store = store->get<bool>();
  }
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  if (auto q = body.find("queries"); q != body.end() && !q->is_null()) {
    if (!q->is_array() || q->empty()) return Status::InvalidArgument("tune request: 'queries' must be a non-empty array of vectors");
    for (size_t i = 0; i < q->size(); ++i) {
      std::vector<float> v;
      FATHOM_RETURN_IF_ERROR(ParseVector((*q)[i], "tune request: queries[" + std::to_string(i) + "]", &v));
      request.queries.insert(request.queries.end(), v.begin(), v.end());
    }
  }
  FATHOM_ASSIGN_OR_RETURN(TuneResult result, c->Tune(request));
  Json tried = Json::array();
  for (const auto& [value, recall] : result.tried) tried.push_back(Json{{"value", value}, {"recall", recall}});
  return Reply::Ok(Dump(Json{{"knob", result.knob}, {"value", result.value}, {"recall", result.recall},
                             {"reached", result.reached}, {"queries", result.queries}, {"tried", std::move(tried)}}));
}

// DELETE /collections/{name}/tune[?using=VECTOR]: forgets the tuned default (searches use the
// index's own again); {"reset": false} when there was none.
Reply Api::ResetTune(const ApiRequest& req) {
  std::string vector;
  for (const auto& [key, value] : req.query) {
    if (key != "using") return Status::InvalidArgument("tune reset: unknown parameter '" + key + "': expected using");
    vector = value;
  }
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(req.params.at(0)));
  FATHOM_ASSIGN_OR_RETURN(bool reset, c->ResetSearchDefaults(vector));
  return Reply::Ok(Dump(Json{{"reset", reset}}));
}

Reply Api::CreateSnapshot(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(name));
  std::lock_guard snapshot_lock(snapshot_mutex_);
  FATHOM_ASSIGN_OR_RETURN(const std::string path, NewSnapshotPath(name));
  const std::string snapshot = fs::path(path).filename().string();
  std::error_code ec;
  Status s = c->Snapshot(path);
  if (!s.ok()) {
    fs::remove_all(path, ec);
    return s;
  }
  spdlog::info("snapshot '{}' of collection '{}' written to {}", snapshot, name, path);
  return Reply::Ok(Dump(SnapshotJson(path, name)));
}

Reply Api::ListSnapshots(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  // Snapshots outlive their collection (that is what they are for), so a dropped collection's
  // snapshots are still listed.
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(SnapshotDir(name), ec)) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  Json list = Json::array();
  for (const auto& d : dirs) list.push_back(SnapshotJson(d, name));
  return Reply::Ok(Dump(list));
}

Reply Api::DeleteSnapshot(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  const std::string& snapshot = req.params.at(1);
  std::lock_guard lock(snapshot_mutex_);  // (a download publishing its archive waits)
  FATHOM_ASSIGN_OR_RETURN(const std::string path, ExistingSnapshot(name, snapshot));
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Status::IOError("cannot delete '" + path + "': " + ec.message());
  fs::remove(SnapshotArchive(name, snapshot), ec);
  return Status::OK();
}

Reply Api::DownloadSnapshot(const ApiRequest& req) {
  const std::string& name = req.params.at(0);
  const std::string& snapshot = req.params.at(1);
  FATHOM_ASSIGN_OR_RETURN(const std::string path, ExistingSnapshot(name, snapshot));
  std::error_code ec;
  const std::string archive = SnapshotArchive(name, snapshot);
  if (!fs::exists(archive, ec)) {
    // Made outside any lock (it can take minutes), then published unless the snapshot was
    // deleted meanwhile (DeleteSnapshot holds the same lock).
    static std::atomic<uint64_t> counter{0};
    const std::string made = archive + "." + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    fs::create_directories(fs::path(archive).parent_path(), ec);
    FATHOM_RETURN_IF_ERROR(WriteSnapshotArchive(path, made));
    std::lock_guard lock(snapshot_mutex_);
    if (Status still = ExistingSnapshot(name, snapshot).status(); !still.ok()) {
      fs::remove(made, ec);
      return still;
    }
    fs::rename(made, archive, ec);
    if (ec) return Status::IOError("cannot publish the snapshot archive: " + ec.message());
  }
  Reply reply(Status::OK());
  reply.file = archive;
  reply.content_type = "application/x-tar";
  reply.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + name + "-" + snapshot + ".tar\"");
  return reply;
}

Status Api::RecoverFromLocation(const std::string& location, const std::string& api_key, const std::string& target,
                                const Restore& restore) {
  {
    std::shared_lock lock(db_mutex_);
    if (db_ && db_->GetCollection(target).ok()) {
      return Status::AlreadyExists("collection '" + target + "' already exists: delete it first or recover under "
                                   "another \"name\"");
    }
  }
  std::error_code ec;
  fs::create_directories(IncomingDir(), ec);
  if (ec) return Status::IOError("cannot create '" + IncomingDir() + "': " + ec.message());
  static std::atomic<uint64_t> counter{0};
  const std::string base = IncomingDir() + "/" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const std::string archive = base + ".tar", unpacked = base + ".d";
  RemoveOnExit cleanup({archive, unpacked});
  std::string source;  // a snapshot directory to restore from
  if (location.rfind("http://", 0) == 0) {
    const size_t slash = location.find('/', 7);
    const std::string host = location.substr(0, slash);
    const std::string target_path = slash == std::string::npos ? "/" : location.substr(slash);
    httplib::Client client(host);
    client.set_connection_timeout(10);
    client.set_read_timeout(300);
    httplib::Headers headers;
    if (!api_key.empty()) headers.emplace("api-key", api_key);
    std::ofstream out(archive, std::ios::binary);
    if (!out) return Status::IOError("cannot create '" + archive + "'");
    int status = 0;
    uint64_t expected = 0, received = 0;
    Status space;
    auto result = client.Get(
        target_path, headers,
        [&](const httplib::Response& r) {
          status = r.status;
          if (r.has_header("Content-Length")) {
            expected = std::strtoull(r.get_header_value("Content-Length").c_str(), nullptr, 10);
            // Twice the archive (it, and what it unpacks to) must fit beside the data.
            space = CheckFreeSpace(IncomingDir(), 2 * expected, uint64_t{64} << 20);
          }
          return r.status == 200 && space.ok();
        },
        [&](const char* data, size_t n) {
          received += n;
          return bool(out.write(data, std::streamsize(n)));
        });
    out.close();
    FATHOM_RETURN_IF_ERROR(space);
    if (status != 0 && status != 200) {
      return Status::InvalidArgument("cannot download snapshot from '" + location + "': it answered HTTP " +
                                     std::to_string(status));
    }
    if (!result || (expected != 0 && received != expected)) {
      return Status::Unavailable("cannot download snapshot from '" + location + "': " +
                                 (!result ? httplib::to_string(result.error())
                                          : "the connection ended after " + std::to_string(received) + " of " +
                                                std::to_string(expected) + " bytes"));
    }
    if (!out) return Status::IOError("cannot write '" + archive + "' (disk full?)");
    FATHOM_RETURN_IF_ERROR(ExtractSnapshotArchive(archive, unpacked));
    source = unpacked;
  } else if (location.rfind("file://", 0) == 0) {
    // Only this server's own snapshot trees: a recover request must not read arbitrary files.
    const fs::path path = fs::weakly_canonical(location.substr(7), ec);
    auto inside = [&](const std::string& root) {
      const fs::path r = fs::weakly_canonical(root, ec);
      const std::string p = path.string(), rs = r.string() + "/";
      return p.rfind(rs, 0) == 0;
    };
    if (!inside(data_dir_ + "/snapshots") && !inside(data_dir_ + "/snapshot-archives")) {
      return Status::InvalidArgument("file locations must be under this server's snapshot directory ('" +
                                     data_dir_ + "/snapshots'), got '" + location + "'");
    }
    if (fs::is_directory(path, ec)) {
      source = path.string();
    } else if (fs::is_regular_file(path, ec)) {
      FATHOM_RETURN_IF_ERROR(ExtractSnapshotArchive(path.string(), unpacked));
      source = unpacked;
    } else {
      return Status::NotFound("snapshot location '" + location + "' does not exist");
    }
  } else {
    return Status::InvalidArgument("snapshot location must be an http:// or file:// URL, got '" + location + "'");
  }
  return restore(source, target);
}

Reply Api::RecoverSnapshot(const ApiRequest& req) {
  FATHOM_ASSIGN_OR_RETURN(const std::string target,
                          RecoverWith(req, [this](const std::string& dir, const std::string& name) {
                            return RestoreSnapshot(dir, name);
                          }));
  std::shared_lock lock(db_mutex_);
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, Find(target));
  return Reply::Ok(Dump(Json{{"name", target}, {"points_count", c->Count()}}));
}

Result<std::string> Api::RecoverWith(const ApiRequest& req, const Restore& restore) {
  const std::string& name = req.params.at(0);
  FATHOM_RETURN_IF_ERROR(ValidateName(name, "collection name"));
  FATHOM_ASSIGN_OR_RETURN(Json body, ParseBody(req.body, limits_.max_json_depth));
  FATHOM_RETURN_IF_ERROR(CheckFields(body, "recover request", {"snapshot", "name", "location", "priority", "checksum", "api_key"}));
  std::string target = name;
  if (body.contains("name") && !body["name"].is_null()) {
    FATHOM_ASSIGN_OR_RETURN(target, GetString(body, "name", ""));
    FATHOM_RETURN_IF_ERROR(ValidateName(target, "collection name"));
  }
  if (auto loc = body.find("location"); loc != body.end() && !loc->is_null()) {
    // Qdrant's form: recover collection {name} (or "name") from a snapshot file at a URL.
    if (auto c = body.find("checksum"); c != body.end() && !c->is_null()) {
      return Status::InvalidArgument("recover request: 'checksum' is not supported (the archive's entries are "
                                     "checked as it is unpacked)");
    }
    FATHOM_ASSIGN_OR_RETURN(std::string location, GetString(body, "location", "recover request"));
    std::string api_key;
    if (body.contains("api_key") && !body["api_key"].is_null()) {
      FATHOM_ASSIGN_OR_RETURN(api_key, GetString(body, "api_key", "recover request"));
    }
    FATHOM_RETURN_IF_ERROR(RecoverFromLocation(location, api_key, target, restore));
    spdlog::info("recovered collection '{}' from {}", target, location);
  } else {
    FATHOM_ASSIGN_OR_RETURN(std::string snapshot, GetString(body, "snapshot", ""));
    FATHOM_ASSIGN_OR_RETURN(const std::string path, ExistingSnapshot(name, snapshot));
    FATHOM_RETURN_IF_ERROR(restore(path, target));
    spdlog::info("recovered snapshot '{}' of collection '{}' as '{}'", snapshot, name, target);
  }
  return target;
}

Status Api::RestoreSnapshot(const std::string& snapshot_dir, const std::string& name) {
  std::shared_lock lock(db_mutex_);
  if (!db_) return Status::Unavailable("the database is closed (the server is shutting down)");
  if (db_->GetCollection(name).ok()) {
    return Status::AlreadyExists("collection '" + name +
                                 "' already exists: delete it first or recover under another "
                                 "\"name\"");
  }
  std::error_code ec;
  if (fs::exists(snapshot_dir + "/cluster.json", ec)) {
    return Status::InvalidArgument("this is a snapshot of a cluster collection (one folder per shard): recover it "
                                   "through a node of a cluster (fathom serve --cluster)");
  }
  return db_->RestoreSnapshot(snapshot_dir, name).status();
}

Result<std::string> Api::NewSnapshotPath(const std::string& collection) {
  FATHOM_RETURN_IF_ERROR(ValidateName(collection, "collection name"));
  const std::string dir = SnapshotDir(collection);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create '" + dir + "': " + ec.message());
  // UTC timestamps sort by time and say when; a suffix separates snapshots in the same second.
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  std::string snapshot = stamp;
  for (int i = 2; fs::exists(dir + "/" + snapshot, ec); ++i) snapshot = std::string(stamp) + "-" + std::to_string(i);
  return dir + "/" + snapshot;
}

Json Api::DescribeSnapshot(const std::string& path, const std::string& collection) const {
  return SnapshotJson(path, collection);
}

void Api::RenderMetrics(std::string* out) const {
  std::shared_lock lock(db_mutex_);
  if (!db_) return;
  std::vector<std::pair<std::string, std::shared_ptr<Collection>>> collections;
  for (const auto& name : db_->ListCollections()) {
    auto c = db_->GetCollection(name);
    if (c.ok()) collections.emplace_back(name, *c);
  }
  *out += "# HELP fathom_collection_points Live points per collection.\n";
  *out += "# TYPE fathom_collection_points gauge\n";
  for (const auto& [name, c] : collections) {
    *out += "fathom_collection_points{collection=\"" + PrometheusLabel(name) + "\"} " +
            std::to_string(c->Count()) + "\n";
  }
  *out += "# HELP fathom_collection_memory_bytes RAM held by a collection (indexes, id maps, payloads).\n";
  *out += "# TYPE fathom_collection_memory_bytes gauge\n";
  for (const auto& [name, c] : collections) {
    *out += "fathom_collection_memory_bytes{collection=\"" + PrometheusLabel(name) + "\"} " +
            std::to_string(c->memory_bytes()) + "\n";
  }
  *out += "# HELP fathom_collection_disk_bytes Disk held by a collection, by part (vectors, records, "
          "index_files).\n";
  *out += "# TYPE fathom_collection_disk_bytes gauge\n";
  for (const auto& [name, c] : collections) {
    const StorageUsage u = c->usage();
    const std::string label = PrometheusLabel(name);
    *out += "fathom_collection_disk_bytes{collection=\"" + label + "\",part=\"vectors\"} " +
            std::to_string(u.vectors_disk_bytes) + "\n";
    *out += "fathom_collection_disk_bytes{collection=\"" + label + "\",part=\"records\"} " +
            std::to_string(u.records_disk_bytes) + "\n";
    *out += "fathom_collection_disk_bytes{collection=\"" + label + "\",part=\"index_files\"} " +
            std::to_string(u.index_files_bytes) + "\n";
  }
  *out += "# HELP fathom_recall_estimate Share of the exact k nearest neighbours that recent sampled "
          "searches found (online recall monitoring; absent until a search was sampled).\n";
  *out += "# TYPE fathom_recall_estimate gauge\n";
  std::string samples_lines, dropped_lines;
  for (const auto& [name, c] : collections) {
    const RecallEstimate r = c->recall_estimate();
    const std::string label = "{collection=\"" + PrometheusLabel(name) + "\"} ";
    if (r.samples > 0) {
      *out += "fathom_recall_estimate" + label;
      AppendNumber(out, r.recall);
      *out += "\n";
    }
    samples_lines += "fathom_recall_samples" + label + std::to_string(r.samples) + "\n";
    dropped_lines += "fathom_recall_samples_dropped_total" + label + std::to_string(r.dropped) + "\n";
  }
  *out += "# HELP fathom_recall_samples Sampled searches fathom_recall_estimate is over.\n";
  *out += "# TYPE fathom_recall_samples gauge\n";
  *out += samples_lines;
  *out += "# HELP fathom_recall_samples_dropped_total Sampled searches not re-run: the monitor's CPU "
          "share was spent.\n";
  *out += "# TYPE fathom_recall_samples_dropped_total counter\n";
  *out += dropped_lines;
  *out += "# HELP fathom_checkpoint_age_seconds Seconds since a collection's indexes were last "
          "checkpointed (since it was opened, if not yet).\n";
  *out += "# TYPE fathom_checkpoint_age_seconds gauge\n";
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [name, c] : collections) {
    *out += "fathom_checkpoint_age_seconds{collection=\"" + PrometheusLabel(name) + "\"} ";
    AppendNumber(out, std::max(0.0, std::chrono::duration<double>(now - c->last_checkpoint()).count()));
    *out += "\n";
  }
  *out += "# HELP fathom_checkpoint_failures_total Automatic checkpoints that failed (retried with "
          "back-off; the writes that triggered them succeeded).\n";
  *out += "# TYPE fathom_checkpoint_failures_total counter\n";
  for (const auto& [name, c] : collections) {
    *out += "fathom_checkpoint_failures_total{collection=\"" + PrometheusLabel(name) + "\"} " +
            std::to_string(c->checkpoint_failures()) + "\n";
  }
  *out += "# HELP fathom_upsert_requests_total Upsert requests accepted for commit.\n";
  *out += "# TYPE fathom_upsert_requests_total counter\n";
  for (const auto& [name, c] : collections) {
    *out += "fathom_upsert_requests_total{collection=\"" + PrometheusLabel(name) + "\"} " +
            std::to_string(c->write_stats().upsert_requests) + "\n";
  }
  *out += "# HELP fathom_upsert_commits_total Log commits (one write and fsync each) that carried "
          "them: concurrent upserts share one (group commit).\n";
  *out += "# TYPE fathom_upsert_commits_total counter\n";
  for (const auto& [name, c] : collections) {
    *out += "fathom_upsert_commits_total{collection=\"" + PrometheusLabel(name) + "\"} " +
            std::to_string(c->write_stats().upsert_commits) + "\n";
  }
}

}  // namespace fathom::server
