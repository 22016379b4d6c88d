#include "cli/import.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "cli/args.h"
#include "cli/progress.h"

namespace fathom::cli {
namespace {

using nlohmann::json;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsJsonLines(const std::string& path) {
  return path == "-" || EndsWith(path, ".jsonl") || EndsWith(path, ".ndjson");
}

bool IsMatrixFile(const std::string& path) {
  return EndsWith(path, ".fvecs") || EndsWith(path, ".bvecs") || EndsWith(path, ".npy") ||
         EndsWith(path, "ubyte") || EndsWith(path, "ubyte.gz");
}

std::string Quote(const std::string& path) {
  return path == "-" ? "<stdin>" : "'" + path + "'";
}

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, ";
// the line is always 1 here (we parse one line) and the tag means nothing to a user.
std::string CleanJsonError(const std::string& what) {
  std::string msg = what;
  if (!msg.empty() && msg[0] == '[') {
    size_t close = msg.find("] ");
    if (close != std::string::npos) msg = msg.substr(close + 2);
  }
  constexpr std::string_view kLinePrefix = "parse error at line 1, ";
  if (msg.rfind(kLinePrefix, 0) == 0) msg = "invalid JSON at " + msg.substr(kLinePrefix.size());
  return msg;
}

const char* JsonTypeName(const json& value) {
  if (value.is_number_float()) return "a float";
  if (value.is_number()) return "a negative integer";
  return value.type_name();
}

Result<std::vector<float>> JsonToVector(const json& value, const std::string& key) {
  if (!value.is_array()) {
    return Status::InvalidArgument("\"" + key + "\" must be an array of numbers, found " +
                                   std::string(value.type_name()));
  }
  std::vector<float> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const json& x = value[i];
    if (!x.is_number()) {
      return Status::InvalidArgument("\"" + key + "\"[" + std::to_string(i) + "] is " +
                                     std::string(x.type_name()) + ", not a number");
    }
    double d = x.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) {
      return Status::InvalidArgument("\"" + key + "\"[" + std::to_string(i) + "] = " + x.dump() +
                                     " is not a finite float32");
    }
    out.push_back(static_cast<float>(d));
  }
  return out;
}

Status CheckDimension(const CollectionSpec& spec, const VectorSpec& target, size_t dim) {
  if (target.dim != dim) {
    return Status::InvalidArgument(
        (target.name.empty() ? std::string("vector") : "vector '" + target.name + "'") + " has " +
        std::to_string(dim) + " dimensions, collection '" + spec.name + "' expects " +
        std::to_string(target.dim));
  }
  return Status::OK();
}

// Collects records into batches, replacing a repeated id in place (see import.h), and upserts.
class Batcher {
 public:
  // `dedupe` is off for matrix files, whose row ids are distinct by construction.
  Batcher(Collection& collection, size_t batch_size, bool dedupe)
      : collection_(collection), size_(batch_size), dedupe_(dedupe) {}

  bool IsFull() const { return records_.size() >= size_; }
  uint64_t Upserted() const { return upserted_; }

  void Add(Record record) {
    if (!dedupe_) {
      records_.push_back(std::move(record));
      return;
    }
    auto [it, inserted] = index_.try_emplace(record.id, records_.size());
    if (inserted) {
      records_.push_back(std::move(record));
    } else {
      records_[it->second] = std::move(record);
    }
  }

  // `what` ("lines 1-1000 of 'a.jsonl'") prefixes an error.
  Status Flush(const std::string& what) {
    if (records_.empty()) return Status::OK();
    Status s = collection_.Upsert(records_);
    if (!s.ok()) {
      return Status(s.code(), what + ": " + s.message() + " (" + std::to_string(upserted_) +
                                  " points were imported before this batch)");
    }
    upserted_ += records_.size();
    records_.clear();
    index_.clear();
    return Status::OK();
  }

 private:
  Collection& collection_;
  size_t size_;
  bool dedupe_;
  std::vector<Record> records_;
  std::map<PointId, size_t> index_;
  uint64_t upserted_ = 0;
};

Status ImportJsonLines(Collection& collection, const ImportOptions& options,
                       ImportSummary* summary) {
  std::ifstream file;
  std::istream* in = &std::cin;
  uint64_t total_bytes = 0;
  if (options.path != "-") {
    file.open(options.path, std::ios::binary | std::ios::ate);
    if (!file) return Status::NotFound("cannot open " + Quote(options.path) + " for reading");
    total_bytes = static_cast<uint64_t>(file.tellg());
    file.seekg(0);
    in = &file;
  }
  const CollectionSpec& spec = collection.spec();
  Progress progress("import", total_bytes, options.progress ? stderr : nullptr);
  Batcher batcher(collection, options.batch, /*dedupe=*/true);
  std::string line;
  uint64_t line_no = 0, bytes = 0, records = 0, batch_first_line = 1;
  while (std::getline(*in, line)) {
    ++line_no;
    bytes += line.size() + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto record = ParseJsonRecord(line, spec, options.using_vector, options.id_start + records);
    if (!record.ok()) {
      summary->points = batcher.Upserted();
      return Status(record.status().code(),
                    Quote(options.path) + " line " + std::to_string(line_no) + ": " +
                        record.status().message() + " (" + std::to_string(batcher.Upserted()) +
                        " points were imported before this line)");
    }
    ++records;
    batcher.Add(std::move(record).value());
    if (batcher.IsFull()) {
      Status s = batcher.Flush("lines " + std::to_string(batch_first_line) + "-" +
                               std::to_string(line_no) + " of " + Quote(options.path));
      summary->points = batcher.Upserted();
      if (!s.ok()) return s;
      batch_first_line = line_no + 1;
      if (options.progress) progress.Update(bytes, batcher.Upserted());
    }
  }
  if (in->bad()) {
    summary->points = batcher.Upserted();
    return Status::IOError("read error in " + Quote(options.path) + " after line " +
                           std::to_string(line_no));
  }
  Status s = batcher.Flush("lines " + std::to_string(batch_first_line) + "-" +
                           std::to_string(line_no) + " of " + Quote(options.path));
  progress.Finish();
  summary->points = batcher.Upserted();
  summary->seconds = progress.ElapsedSeconds();
  return s;
}

Status ImportMatrix(Collection& collection, const ImportOptions& options, ImportSummary* summary) {
  const CollectionSpec& spec = collection.spec();
  auto target = ResolveVector(spec, options.using_vector);
  if (!target.ok()) return target.status();
  const VectorSpec& vspec = **target;
  auto start = std::chrono::steady_clock::now();
  // .npy streams a batch at a time (files larger than RAM); other formats are read whole.
  std::unique_ptr<NpyRowReader> stream;
  Result<Matrix> matrix = Matrix{};
  if (EndsWith(options.path, ".npy")) {
    auto opened = NpyRowReader::Open(options.path);
    if (!opened.ok()) {
      return opened.status().IsCorruption() ? Status::InvalidArgument(opened.status().message()) : opened.status();
    }
    stream = std::move(opened).value();
    matrix->rows = stream->rows();
    matrix->cols = stream->cols();
  } else {
    matrix = ReadInputVectors(options.path);
  }
  if (!matrix.ok()) return matrix.status();
  if (matrix->cols != vspec.dim) {
    return Status::InvalidArgument(Quote(options.path) + " has vectors of " +
                                   std::to_string(matrix->cols) + " dimensions, collection '" +
                                   spec.name + "' expects " + std::to_string(vspec.dim) +
                                   (vspec.name.empty() ? "" : " for vector '" + vspec.name + "'"));
  }
  if (matrix->rows > 0 &&
      options.id_start > std::numeric_limits<uint64_t>::max() - (matrix->rows - 1)) {
    return Status::InvalidArgument("--id-start " + std::to_string(options.id_start) + " + " +
                                   std::to_string(matrix->rows) + " rows overflows 64-bit ids");
  }
  Progress progress("import", matrix->rows, options.progress ? stderr : nullptr);
  Batcher batcher(collection, options.batch, /*dedupe=*/false);
  Matrix chunk;
  for (size_t first = 0; first < matrix->rows; first += options.batch) {
    size_t last = std::min<size_t>(matrix->rows, first + options.batch);
    const Matrix* rows = &*matrix;
    size_t offset = 0;
    if (stream) {
      FATHOM_RETURN_IF_ERROR(stream->Next(last - first, &chunk));
      rows = &chunk;
      offset = first;
    }
    for (size_t r = first; r < last; ++r) {
      Record record;
      record.id = options.id_start + r;
      record.vectors[vspec.name].assign(rows->row(r - offset), rows->row(r - offset) + rows->cols);
      batcher.Add(std::move(record));
    }
    Status s = batcher.Flush("rows " + std::to_string(first) + "-" + std::to_string(last - 1) +
                             " of " + Quote(options.path));
    summary->points = batcher.Upserted();
    if (!s.ok()) return s;
    if (options.progress) progress.Update(last, batcher.Upserted());
  }
  progress.Finish();
  summary->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::OK();
}

}  // namespace

Result<Matrix> ReadInputVectors(const std::string& path, size_t max_rows) {
  auto m = ReadVectors(path, max_rows);
  if (!m.ok() && m.status().IsCorruption()) return Status::InvalidArgument(m.status().message());
  return m;
}

Result<IntMatrix> ReadInputIds(const std::string& path, size_t max_rows) {
  auto m = ReadIntVectors(path, max_rows);
  if (!m.ok() && m.status().IsCorruption()) return Status::InvalidArgument(m.status().message());
  return m;
}

Result<Record> ParseJsonRecord(std::string_view line, const CollectionSpec& spec,
                               const std::string& using_vector, uint64_t default_id) {
  try {
    json value = json::parse(line);
    if (!value.is_object()) {
      return Status::InvalidArgument("expected a JSON object, found " +
                                     std::string(value.type_name()));
    }
    Record record;
    record.id = default_id;
    bool has_vector = false;
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string& key = it.key();
      const json& v = it.value();
      if (key == "id") {
        if (v.is_number_unsigned()) {
          record.id = v.get<uint64_t>();
        } else if (v.is_string()) {
          record.id = v.get<std::string>();
        } else {
          return Status::InvalidArgument(
              "\"id\" must be a non-negative integer or a string, found " +
              std::string(JsonTypeName(v)) + " (" + v.dump() + ")");
        }
      } else if (key == "vector") {
        auto vec = JsonToVector(v, "vector");
        if (!vec.ok()) return vec.status();
        auto target = ResolveVector(spec, using_vector);
        if (!target.ok()) return target.status();
        FATHOM_RETURN_IF_ERROR(CheckDimension(spec, **target, vec->size()));
        record.vectors[(*target)->name] = std::move(vec).value();
        has_vector = true;
      } else if (key == "vectors") {
        if (!v.is_object()) {
          return Status::InvalidArgument("\"vectors\" must be an object of named vectors, found " +
                                         std::string(v.type_name()));
        }
        for (auto vit = v.begin(); vit != v.end(); ++vit) {
          // Exact lookup: "" names the unnamed vector here, it does not mean "the only one".
          auto target = FindVector(spec, vit.key());
          if (!target.ok()) return target.status();
          auto vec = JsonToVector(vit.value(), "vectors." + vit.key());
          if (!vec.ok()) return vec.status();
          FATHOM_RETURN_IF_ERROR(CheckDimension(spec, **target, vec->size()));
          record.vectors[vit.key()] = std::move(vec).value();
        }
        has_vector = has_vector || !v.empty();
      } else if (key == "payload") {
        if (v.is_null()) continue;
        if (!v.is_object()) {
          return Status::InvalidArgument("\"payload\" must be a JSON object, found " +
                                         std::string(v.type_name()));
        }
        record.payload = v.dump();
      } else {
        return Status::InvalidArgument("unknown key \"" + key +
                                       "\" (expected id, vector, vectors, payload)");
      }
    }
    if (value.contains("vector") && value.contains("vectors")) {
      return Status::InvalidArgument("give either \"vector\" or \"vectors\", not both");
    }
    if (!has_vector) return Status::InvalidArgument("no \"vector\" (or \"vectors\") in the record");
    return record;
  } catch (const json::exception& e) {
    return Status::InvalidArgument(CleanJsonError(e.what()));
  }
}

Status Import(Collection& collection, const ImportOptions& options, ImportSummary* summary) {
  *summary = {};
  if (options.batch == 0) return Status::InvalidArgument("--batch must be at least 1");
  const bool json_lines = IsJsonLines(options.path);
  if (!json_lines && !IsMatrixFile(options.path)) {
    return Status::InvalidArgument(Quote(options.path) +
                                   ": unknown file type: expected a name ending in .jsonl, "
                                   ".ndjson, .fvecs, .bvecs, .npy, -ubyte or -ubyte.gz (or - for "
                                   "JSON Lines on stdin)");
  }
  std::error_code ec;
  if (options.path != "-" && !std::filesystem::exists(options.path, ec)) {
    return Status::NotFound("no such file " + Quote(options.path));
  }
  return json_lines ? ImportJsonLines(collection, options, summary)
                    : ImportMatrix(collection, options, summary);
}

}  // namespace fathom::cli
