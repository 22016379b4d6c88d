#include "cli/commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "cli/args.h"
#include "cli/import.h"
#include "cli/output.h"
#include "fathom/index.h"

namespace fathom::cli {

// ordered_json keeps keys in the order written (id before distance before payload) and payload
// keys in their stored order, instead of sorting them.
using json = nlohmann::ordered_json;

Result<std::unique_ptr<Database>> OpenDatabase(const Context& ctx, bool create) {
  std::error_code ec;
  if (!create && !std::filesystem::exists(ctx.data_dir, ec)) {
    return Status::NotFound("no database at '" + ctx.data_dir +
                            "' (create a collection first, or pass --data DIR)");
  }
  return Database::Open(ctx.data_dir, ctx.db_options);
}

namespace {

constexpr float kDisplayZero = 1e-6f;

// Invalid UTF-8 in a stored payload string must not abort the command with a json exception:
// it is printed with U+FFFD in its place.
std::string Dump(const json& value) {
  return value.dump(2, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

std::string VectorSummary(const VectorSpec& v) {
  return std::to_string(v.dim) + " " + MetricName(v.metric) + " " + v.index;
}

json SpecToJson(const CollectionSpec& spec) {
  json vectors = json::array();
  for (const VectorSpec& v : spec.vectors) {
    vectors.push_back({{"name", v.name},
                       {"dim", v.dim},
                       {"metric", MetricName(v.metric)},
                       {"index", v.index},
                       {"on_disk", v.on_disk}});
  }
  json fields = json::object();
  for (const auto& [name, type] : spec.indexed_fields) fields[name] = FieldTypeName(type);
  return {{"name", spec.name}, {"vectors", vectors}, {"fields", fields}, {"on_disk_payload", spec.on_disk_payload}};
}

Result<std::vector<PointId>> ParseIds(const std::vector<std::string>& texts, bool string_id) {
  std::vector<PointId> ids;
  for (const std::string& text : texts) {
    FATHOM_ASSIGN_OR_RETURN(PointId id, ParsePointId(text, string_id));
    ids.push_back(std::move(id));
  }
  return ids;
}

Status NotFoundIds(const std::vector<PointId>& ids, const std::string& collection) {
  std::string list;
  for (const PointId& id : ids) list += (list.empty() ? "" : ", ") + FormatPointId(id);
  return Status::NotFound((ids.size() == 1 ? "point " : "points ") + list +
                          " not found in collection '" + collection + "'");
}

// The query vector of `search`, from exactly one of its three sources.
Result<std::vector<float>> QueryVector(const Collection& collection, const VectorSpec& target,
                                       const SearchOptions& options) {
  int sources = !options.vector_file.empty() + !options.id.empty() + !options.vector.empty();
  if (sources != 1) {
    return Status::InvalidArgument(
        "give exactly one query: --vector-file FILE [--row R], --id ID or --vector \"x,y,...\"");
  }
  std::vector<float> query;
  if (!options.vector.empty()) {
    FATHOM_ASSIGN_OR_RETURN(query, ParseFloatList(options.vector));
  } else if (!options.vector_file.empty()) {
    FATHOM_ASSIGN_OR_RETURN(Matrix m, ReadInputVectors(options.vector_file, options.row + 1));
    if (m.rows <= options.row) {
      return Status::InvalidArgument("--row " + std::to_string(options.row) + ": '" +
                                     options.vector_file + "' has only " + std::to_string(m.rows) +
                                     " rows");
    }
    query.assign(m.row(options.row), m.row(options.row) + m.cols);
  } else {
    FATHOM_ASSIGN_OR_RETURN(PointId id, ParsePointId(options.id, options.string_id));
    FATHOM_ASSIGN_OR_RETURN(auto records, collection.Get({id}, /*with_vectors=*/true));
    if (records.empty() || !records[0]) return NotFoundIds({id}, collection.spec().name);
    auto it = records[0]->vectors.find(target.name);
    if (it == records[0]->vectors.end()) {
      return Status::NotFound("point " + FormatPointId(id) + " has no " +
                              DescribeVector(target.name));
    }
    query = it->second;
  }
  if (query.size() != target.dim) {
    return Status::InvalidArgument(
        "query has " + std::to_string(query.size()) + " dimensions, collection '" +
        collection.spec().name + "' expects " + std::to_string(target.dim) +
        (target.name.empty() ? "" : " for vector '" + target.name + "'"));
  }
  return query;
}

}  // namespace

Status RunCreate(const Context& ctx, const CreateOptions& options) {
  CollectionSpec spec;
  spec.name = options.name;
  if (options.dim > 0 && !options.vectors.empty()) {
    return Status::InvalidArgument(
        "give either --dim (one unnamed vector) or --vector (named "
        "vectors), not both");
  }
  if (options.dim == 0 && options.vectors.empty()) {
    return Status::InvalidArgument(
        "give --dim D, or --vector NAME:DIM[:METRIC[:INDEX]] for "
        "named vectors");
  }
  if (options.dim > 0) {
    VectorSpec v;
    v.dim = options.dim;
    FATHOM_ASSIGN_OR_RETURN(v.metric, ParseMetric(options.metric));
    v.index = options.index;
    spec.vectors.push_back(std::move(v));
  }
  std::set<std::string> seen;
  for (const std::string& text : options.vectors) {
    FATHOM_ASSIGN_OR_RETURN(VectorSpec v, ParseVectorSpec(text));
    if (!seen.insert(v.name).second) {
      return Status::InvalidArgument("vector '" + v.name + "' is given twice");
    }
    spec.vectors.push_back(std::move(v));
  }
  spec.on_disk_payload = options.on_disk_payload;
  if (!options.metadata.empty()) {
    json metadata = json::parse(options.metadata, nullptr, /*allow_exceptions=*/false);
    if (!metadata.is_object()) {
      return Status::InvalidArgument("--metadata must be a JSON object, such as "
                                     "'{\"model\": {\"name\": \"resnet50\", \"version\": \"2\"}}'");
    }
    spec.metadata = metadata.dump();
  }
  for (VectorSpec& v : spec.vectors) v.on_disk = options.on_disk;
  for (const std::string& text : options.fields) {
    FATHOM_ASSIGN_OR_RETURN(auto field, ParseFieldSpec(text));
    if (!spec.indexed_fields.emplace(field.first, field.second).second) {
      return Status::InvalidArgument("field '" + field.first + "' is given twice");
    }
  }
  // Building a throwaway empty index checks the factory string against the dimension and metric
  // before anything is written, with the index layer's own message.
  for (const VectorSpec& v : spec.vectors) {
    auto index = MakeIndex(v.index, v.dim, v.metric);
    if (!index.ok()) return index.status();
  }
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/true));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> collection, db->CreateCollection(spec));
  std::string vectors;
  for (const VectorSpec& v : collection->spec().vectors) {
    vectors += (vectors.empty() ? "" : "; ") + (v.name.empty() ? "" : v.name + ": ") + "dim " +
               std::to_string(v.dim) + ", " + MetricName(v.metric) + ", " + v.index;
  }
  *ctx.out << "created collection '" << spec.name << "' (" << vectors << ")\n";
  return db->Close();
}

Status RunDrop(const Context& ctx, const std::string& name) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_RETURN_IF_ERROR(db->DropCollection(name));
  *ctx.out << "dropped collection '" << name << "'\n";
  return db->Close();
}

Status RunRepair(const Context& ctx) {
  FATHOM_ASSIGN_OR_RETURN(RepairReport report, Database::Repair(ctx.data_dir));
  for (const auto& note : report.notes) *ctx.out << note << "\n";
  for (const auto& c : report.collections) {
    *ctx.out << "collection '" << c.name << "': " << c.records << " points recovered";
    if (c.checkpoint_points > c.records) {
      *ctx.out << ", about " << (c.checkpoint_points - c.records) << " lost (its last checkpoint had "
               << c.checkpoint_points << ")";
    } else if (c.checkpoint_points > 0) {
      *ctx.out << " (its last checkpoint had " << c.checkpoint_points << ")";
    }
    if (c.undecodable > 0) *ctx.out << "; " << c.undecodable << " damaged records removed";
    *ctx.out << "\n";
  }
  *ctx.out << "repaired '" << ctx.data_dir << "': indexes rebuilt from the records\n";
  return Status::OK();
}

Status RunList(const Context& ctx, bool as_json) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  std::vector<std::string> names = db->ListCollections();
  std::sort(names.begin(), names.end());
  json out = json::array();
  std::vector<std::vector<std::string>> rows;
  for (const std::string& name : names) {
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
    if (as_json) {
      json item = SpecToJson(c->spec());
      item["points"] = c->Count();
      out.push_back(std::move(item));
      continue;
    }
    std::string vectors;
    for (const VectorSpec& v : c->spec().vectors) {
      vectors +=
          (vectors.empty() ? "" : "; ") + (v.name.empty() ? "" : v.name + ": ") + VectorSummary(v);
    }
    rows.push_back({name, std::to_string(c->Count()), vectors});
  }
  if (as_json) {
    *ctx.out << Dump(out) << '\n';
  } else if (!rows.empty()) {
    PrintTable(*ctx.out, {"name", "points", "vectors (dim metric index)"}, rows,
               {false, true, false});
  }
  return db->Close();
}

Status RunInfo(const Context& ctx, const std::string& name, bool as_json) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
  const CollectionSpec& spec = c->spec();
  const StorageUsage usage = c->usage();
  if (as_json) {
    json out = SpecToJson(spec);
    out["metadata"] = json::parse(c->metadata(), nullptr, /*allow_exceptions=*/false);
    const RecallEstimate recall = c->recall_estimate();
    out["recall_estimate"] = recall.samples > 0 ? json{{"recall", recall.recall}, {"samples", recall.samples}}
                                                : json(nullptr);
    out["search_defaults"] = json::object();
    for (const VectorSpec& v : spec.vectors) {
      const SearchDefaults d = c->search_defaults(v.name);
      if (d.target_recall == 0) continue;
      out["search_defaults"][v.name] = {{"ef", d.ef}, {"nprobe", d.nprobe}, {"checks", d.checks},
                                        {"target_recall", d.target_recall}, {"recall", d.recall}};
    }
    out["points"] = c->Count();
    out["memory_bytes"] = usage.ram_bytes;
    out["storage"] = {{"ram_bytes", usage.ram_bytes},
                      {"disk_bytes", usage.disk_bytes()},
                      {"vectors_disk_bytes", usage.vectors_disk_bytes},
                      {"records_disk_bytes", usage.records_disk_bytes},
                      {"index_files_bytes", usage.index_files_bytes}};
    *ctx.out << Dump(out) << '\n';
    return db->Close();
  }
  std::vector<std::vector<std::string>> rows = {
      {"collection", spec.name},
      {"points", std::to_string(c->Count())},
      {"RAM", FormatBytes(usage.ram_bytes) + " (indexes, id maps, payload indexes" +
                  (spec.on_disk_payload ? std::string(")") : std::string(", payloads)"))},
      {"disk", FormatBytes(usage.disk_bytes()) + " (vectors " + FormatBytes(usage.vectors_disk_bytes) +
                   ", records " + FormatBytes(usage.records_disk_bytes) + ", index files " +
                   FormatBytes(usage.index_files_bytes) + ")"},
  };
  for (const VectorSpec& v : spec.vectors) {
    rows.push_back({"vector", (v.name.empty() ? "(unnamed)" : v.name) + ": dim " +
                                  std::to_string(v.dim) + ", metric " + MetricName(v.metric) +
                                  ", index " + v.index +
                                  (v.on_disk ? ", floats on disk (codes in RAM)" : ", floats in RAM")});
  }
  rows.push_back({"payloads", spec.on_disk_payload ? "on disk (record store only)" : "in RAM and the record store"});
  for (const auto& [field, type] : spec.indexed_fields) {
    rows.push_back({"field", field + ": " + FieldTypeName(type)});
  }
  if (const std::string metadata = c->metadata(); metadata != "{}") rows.push_back({"metadata", metadata});
  for (const VectorSpec& v : spec.vectors) {
    const SearchDefaults d = c->search_defaults(v.name);
    if (d.target_recall == 0) continue;
    char text[200];
    std::snprintf(text, sizeof(text), "%s%s=%d (fathom tune: target recall %.3f, measured %.4f)",
                  v.name.empty() ? "" : (v.name + ": ").c_str(), d.ef ? "ef" : d.nprobe ? "nprobe" : "checks",
                  d.ef ? d.ef : d.nprobe ? d.nprobe : d.checks, d.target_recall, d.recall);
    rows.push_back({"defaults", text});
  }
  if (const RecallEstimate recall = c->recall_estimate(); recall.samples > 0) {
    char text[160];
    std::snprintf(text, sizeof(text), "%.4f (recall@k of %llu sampled searches vs exact, %s)", recall.recall,
                  static_cast<unsigned long long>(recall.samples),
                  recall.from_store ? "kept from the last server run" : "this run");
    rows.push_back({"recall", text});
  }
  // A key/value listing reads better without a header row.
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row[0].size());
  for (const auto& row : rows) {
    *ctx.out << row[0] << std::string(width - row[0].size() + 2, ' ') << row[1] << '\n';
  }
  return db->Close();
}

Status RunImport(const Context& ctx, const std::string& name, const ImportOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
  ImportOptions import_options = options;
  import_options.progress = ctx.progress;
  ImportSummary summary;
  FATHOM_RETURN_IF_ERROR(Import(*c, import_options, &summary));
  // Close checkpoints the indexes; it belongs to the cost of an import, so it is timed too.
  auto close_start = std::chrono::steady_clock::now();
  FATHOM_RETURN_IF_ERROR(db->Close());
  double seconds =
      summary.seconds +
      std::chrono::duration<double>(std::chrono::steady_clock::now() - close_start).count();
  char line[160];
  std::snprintf(line, sizeof(line), "imported %llu points in %.2f s (%.0f points/s)",
                static_cast<unsigned long long>(summary.points), seconds,
                seconds > 0 ? static_cast<double>(summary.points) / seconds : 0.0);
  *ctx.out << line << '\n';
  return Status::OK();
}

// A search's or recommendation's hits: a table, or JSON with the strategy (and, for searches,
// how many points the filter allowed).
void PrintHits(const Context& ctx, const std::string& collection, const std::vector<ScoredPoint>& hits,
               const std::string& strategy, const size_t* allowed, bool with_payload, bool with_vectors,
               bool as_json) {
  if (as_json) {
    json items = json::array();
    for (const ScoredPoint& p : hits) {
      json item = {{"id", PointIdToJson(p.id)}, {"distance", FloatForJson(p.distance)}};
      if (with_payload) item["payload"] = PayloadToJson(p.payload);
      if (with_vectors) item["vectors"] = VectorsToJson(p.vectors);
      items.push_back(std::move(item));
    }
    json out = {{"collection", collection}, {"strategy", strategy}};
    if (allowed != nullptr) out["allowed"] = *allowed;
    out["results"] = std::move(items);
    *ctx.out << Dump(out) << '\n';
    return;
  }
  std::vector<std::string> headers = {"rank", "id", "distance"};
  if (with_payload) headers.push_back("payload");
  if (with_vectors) headers.push_back("vector");
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < hits.size(); ++i) {
    // A point's distance to itself under cosine or ip comes out as +-1e-7 from float rounding;
    // the table shows 0 so "more like this" reads right, --json keeps the raw value.
    float distance = std::fabs(hits[i].distance) < kDisplayZero ? 0.0f : hits[i].distance;
    std::vector<std::string> row = {std::to_string(i + 1), FormatPointId(hits[i].id), FormatFloat(distance)};
    if (with_payload) row.push_back(hits[i].payload);
    if (with_vectors) row.push_back(VectorsPreview(hits[i].vectors));
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    *ctx.out << "no results\n";
  } else {
    PrintTable(*ctx.out, headers, rows, {true, false, true});
  }
}

Status RunSearch(const Context& ctx, const SearchOptions& options) {
  if (options.k == 0) return Status::InvalidArgument("-k must be at least 1");
  if (options.ef < 0) return Status::InvalidArgument("--ef must be >= 0 (0 = index default)");
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  FATHOM_ASSIGN_OR_RETURN(const VectorSpec* target, ResolveVector(c->spec(), options.using_vector));
  SearchRequest request;
  request.vector = target->name;
  FATHOM_ASSIGN_OR_RETURN(request.queries, QueryVector(*c, *target, options));
  request.k = options.k;
  request.ef = options.ef;
  request.rerank = options.rerank;
  request.nprobe = options.nprobe;
  request.upper_ef = options.upper_ef;
  request.checks = options.checks;
  request.filter = options.filter;
  request.with_payload = !options.no_payload;
  request.with_vectors = options.with_vectors;
  SearchStats stats;
  FATHOM_ASSIGN_OR_RETURN(auto results, c->Search(request, &stats));
  const std::vector<ScoredPoint> empty;
  PrintHits(ctx, options.name, results.empty() ? empty : results[0], stats.strategy, &stats.allowed,
            request.with_payload, request.with_vectors, options.json);
  return db->Close();
}

Status RunRecommend(const Context& ctx, const RecommendOptions& options) {
  if (options.k == 0) return Status::InvalidArgument("-k must be at least 1");
  if (options.ef < 0) return Status::InvalidArgument("--ef must be >= 0 (0 = index default)");
  RecommendRequest request;
  FATHOM_ASSIGN_OR_RETURN(request.positive_ids, ParseIds(options.positive, options.string_id));
  FATHOM_ASSIGN_OR_RETURN(request.negative_ids, ParseIds(options.negative, options.string_id));
  if (options.strategy == "average_vector") {
    request.strategy = RecommendRequest::Strategy::kAverageVector;
  } else if (options.strategy == "best_score") {
    request.strategy = RecommendRequest::Strategy::kBestScore;
  } else {
    return Status::InvalidArgument("--strategy must be average_vector or best_score, got '" + options.strategy + "'");
  }
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  FATHOM_ASSIGN_OR_RETURN(const VectorSpec* target, ResolveVector(c->spec(), options.using_vector));
  request.vector = target->name;
  request.k = options.k;
  request.ef = options.ef;
  request.filter = options.filter;
  request.with_payload = !options.no_payload;
  request.with_vectors = options.with_vectors;
  FATHOM_ASSIGN_OR_RETURN(auto hits, c->Recommend(request));
  PrintHits(ctx, options.name, hits, options.strategy, nullptr, request.with_payload, request.with_vectors,
            options.json);
  return db->Close();
}

Status RunGet(const Context& ctx, const PointsOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<PointId> ids, ParseIds(options.ids, options.string_id));
  if (ids.empty()) return Status::InvalidArgument("give at least one id");
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  FATHOM_ASSIGN_OR_RETURN(auto records, c->Get(ids, /*with_vectors=*/true));
  std::vector<PointId> missing;
  json items = json::array();
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i >= records.size() || !records[i]) {
      missing.push_back(ids[i]);
      continue;
    }
    const Record& r = *records[i];
    if (options.json) {
      items.push_back({{"id", PointIdToJson(r.id)},
                       {"payload", PayloadToJson(r.payload)},
                       {"vectors", VectorsToJson(r.vectors)}});
    } else {
      rows.push_back({FormatPointId(r.id), r.payload, VectorsPreview(r.vectors)});
    }
  }
  if (options.json) {
    *ctx.out << Dump(items) << '\n';
  } else if (!rows.empty()) {
    PrintTable(*ctx.out, {"id", "payload", "vector"}, rows);
  }
  ctx.out->flush();
  FATHOM_RETURN_IF_ERROR(db->Close());
  // Found points are still printed so one bad id in a list does not hide the rest.
  if (!missing.empty()) return NotFoundIds(missing, options.name);
  return Status::OK();
}

Status RunDelete(const Context& ctx, const PointsOptions& options) {
  if (options.ids.empty() && options.filter.empty()) {
    return Status::InvalidArgument("give the ids to delete, or --filter F");
  }
  if (!options.ids.empty() && !options.filter.empty()) {
    return Status::InvalidArgument("give either ids or --filter F to delete, not both");
  }
  FATHOM_ASSIGN_OR_RETURN(std::vector<PointId> ids, ParseIds(options.ids, options.string_id));
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  size_t deleted = 0;
  if (!ids.empty()) {
    FATHOM_ASSIGN_OR_RETURN(deleted, c->Delete(ids));
  } else {
    FATHOM_ASSIGN_OR_RETURN(deleted, c->DeleteByFilter(options.filter));
  }
  *ctx.out << "deleted " << deleted << (deleted == 1 ? " point\n" : " points\n");
  return db->Close();
}

Status RunPayload(const Context& ctx, const PayloadOptions& options) {
  if (options.ids.empty() == options.filter.empty()) {
    return Status::InvalidArgument("give the ids of the points to change, or --filter F (one of the two)");
  }
  const int ops = int(!options.set.empty()) + int(!options.overwrite.empty()) + int(!options.delete_keys.empty()) +
                  int(options.clear);
  if (ops != 1) {
    return Status::InvalidArgument("give exactly one of --set JSON, --overwrite JSON, --delete-keys K1,K2 or --clear");
  }
  PayloadUpdate update;
  if (!options.set.empty()) {
    update.op = PayloadUpdate::Op::kSet;
    update.payload = options.set;
  } else if (!options.overwrite.empty()) {
    update.op = PayloadUpdate::Op::kOverwrite;
    update.payload = options.overwrite;
  } else if (!options.delete_keys.empty()) {
    update.op = PayloadUpdate::Op::kDeleteKeys;
    update.keys = options.delete_keys;
  } else {
    update.op = PayloadUpdate::Op::kClear;
  }
  FATHOM_ASSIGN_OR_RETURN(update.ids, ParseIds(options.ids, options.string_id));
  update.filter = options.filter;
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  FATHOM_ASSIGN_OR_RETURN(size_t changed, c->UpdatePayload(update));
  *ctx.out << "updated " << changed << (changed == 1 ? " point\n" : " points\n");
  return db->Close();
}

Status RunCount(const Context& ctx, const std::string& name, const std::string& filter) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
  size_t count = 0;
  if (filter.empty()) {
    count = c->Count();
  } else {
    FATHOM_ASSIGN_OR_RETURN(count, c->CountByFilter(filter));
  }
  *ctx.out << count << '\n';
  return db->Close();
}

Status RunIndex(const Context& ctx, const std::string& name, const std::vector<std::string>& add,
                const std::vector<std::string>& drop) {
  if (add.empty() && drop.empty()) return Status::InvalidArgument("give --add NAME:TYPE or --drop NAME");
  std::vector<std::pair<std::string, FieldType>> fields;
  for (const std::string& text : add) {  // (all checked before anything changes)
    FATHOM_ASSIGN_OR_RETURN(auto field, ParseFieldSpec(text));
    fields.push_back(std::move(field));
  }
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_RETURN_IF_ERROR(db->GetCollection(name).status());
  for (const auto& [field, type] : fields) {
    FATHOM_RETURN_IF_ERROR(db->CreatePayloadIndex(name, field, type));
    *ctx.out << "indexed " << field << " (" << FieldTypeName(type) << ")\n";
  }
  for (const std::string& field : drop) {
    FATHOM_RETURN_IF_ERROR(db->DropPayloadIndex(name, field));
    *ctx.out << "dropped the index on " << field << "\n";
  }
  return db->Close();
}

Status RunTune(const Context& ctx, const TuneOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  if (options.reset) {
    FATHOM_ASSIGN_OR_RETURN(bool reset, c->ResetSearchDefaults(options.vector));
    if (options.json) {
      *ctx.out << Dump(json{{"reset", reset}}) << '\n';
    } else {
      *ctx.out << (reset ? "tuned default forgotten: searches use the index's own default again\n"
                         : "nothing to forget: the collection was not tuned\n");
    }
    return db->Close();
  }
  TuneRequest request;
  request.target_recall = options.target_recall;
  request.k = options.k;
  request.sample = options.sample;
  request.vector = options.vector;
  request.values = options.values;
  std::sort(request.values.begin(), request.values.end());
  request.store = !options.dry_run;
  FATHOM_ASSIGN_OR_RETURN(TuneResult result, c->Tune(request));
  if (options.json) {
    json tried = json::array();
    for (const auto& [value, recall] : result.tried) tried.push_back({{"value", value}, {"recall", recall}});
    *ctx.out << Dump(json{{"knob", result.knob}, {"value", result.value}, {"recall", result.recall},
                          {"reached", result.reached}, {"queries", result.queries}, {"tried", tried}})
             << '\n';
    return db->Close();
  }
  if (result.knob.empty()) {
    *ctx.out << "index " << c->spec().vectors.front().index << " is exact: nothing to tune (recall 1)\n";
    return db->Close();
  }
  for (const auto& [value, recall] : result.tried) {
    char line[96];
    std::snprintf(line, sizeof(line), "%s %-6d recall@%zu %.4f\n", result.knob.c_str(), value, options.k, recall);
    *ctx.out << line;
  }
  char summary[200];
  std::snprintf(summary, sizeof(summary), "%s %s=%d (recall@%zu %.4f on %zu queries from the collection), %s\n",
                result.reached ? "target reached:" : "target NOT reached; the most accurate setting tried:",
                result.knob.c_str(), result.value, options.k, result.recall, result.queries,
                options.dry_run ? "not stored (--dry-run)" : "now its default");
  *ctx.out << summary;
  return db->Close();
}

Status RunSnapshot(const Context& ctx, const std::string& name, const std::string& dir) {
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    return Status::AlreadyExists("snapshot directory '" + dir +
                                 "' already exists: a snapshot goes into a new directory");
  }
  FATHOM_RETURN_IF_ERROR(c->Snapshot(dir));
  *ctx.out << "snapshot of collection '" << name << "' (" << c->Count() << " points) written to '"
           << dir << "'\n";
  return db->Close();
}

Status RunRestore(const Context& ctx, const std::string& snapshot_dir,
                  const std::string& new_name) {
  std::error_code ec;
  if (!std::filesystem::is_directory(snapshot_dir, ec)) {
    return Status::NotFound("no snapshot directory '" + snapshot_dir + "'");
  }
  // Restore needs the database closed, so the names before and after come from two short opens;
  // their difference is the restored collection when --name is not given.
  std::set<std::string> before;
  if (std::filesystem::exists(ctx.data_dir, ec)) {
    FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
    for (std::string& n : db->ListCollections()) before.insert(std::move(n));
    FATHOM_RETURN_IF_ERROR(db->Close());
  }
  FATHOM_RETURN_IF_ERROR(Database::Restore(snapshot_dir, ctx.data_dir, new_name));
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  std::string restored = new_name;
  if (restored.empty()) {
    for (const std::string& n : db->ListCollections()) {
      if (!before.count(n)) restored = n;
    }
  }
  if (restored.empty()) {
    *ctx.out << "restored '" << snapshot_dir << "' into '" << ctx.data_dir << "'\n";
  } else {
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(restored));
    *ctx.out << "restored collection '" << restored << "' (" << c->Count() << " points) into '"
             << ctx.data_dir << "'\n";
  }
  return db->Close();
}

}  // namespace fathom::cli
