// fathom._core: the compiled half of the Python package. python/fathom/ wraps these classes in a
// typed API; this file only converts between numpy/Python objects and the C++ library.
//
// Rules kept throughout:
//  - Vectors come in as float32 C-contiguous arrays without a copy; anything else (float64, a
//    list, a strided view) is converted once by numpy. Shapes are checked here, values (NaN,
//    dimension) by the library, whose Status becomes a Python exception from fathom.errors.
//  - The GIL is released around every call into the library that touches a batch, so Python
//    threads search and insert in parallel. Locks of our own are only ever waited for with the
//    GIL released (a thread holding the GIL never blocks on a thread that needs it).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fathom/database.h"
#include "fathom/index.h"
#include "fathom/status.h"
#include "spdlog/spdlog.h"

namespace py = pybind11;

namespace fathom::python {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LabelArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Largest k a search accepts: beyond it the output arrays alone are a memory hazard.
constexpr int64_t kMaxK = 100000;

// A failed Status on its way to Python; translated into the fathom.errors class for its code.
class StatusError : public std::runtime_error {
 public:
  explicit StatusError(const Status& status)
      : std::runtime_error(status.message()), code_(status.code()) {}
  Status::Code code() const { return code_; }

 private:
  Status::Code code_;
};

void Check(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}

template <class T>
T Check(Result<T> result) {
  if (!result.ok()) throw StatusError(result.status());
  return std::move(result).value();
}

[[noreturn]] void InvalidArgument(const std::string& message) {
  throw StatusError(Status::InvalidArgument(message));
}

const char* ErrorClassName(Status::Code code) {
  switch (code) {
    case Status::Code::kInvalidArgument: return "InvalidArgumentError";
    case Status::Code::kNotFound: return "NotFoundError";
    case Status::Code::kAlreadyExists: return "AlreadyExistsError";
    case Status::Code::kCorruption: return "CorruptionError";
    case Status::Code::kIOError: return "StorageError";
    case Status::Code::kNoSpace: return "StorageError";
    case Status::Code::kUnavailable: return "UnavailableError";
    case Status::Code::kNotSupported: return "NotSupportedError";
    case Status::Code::kFailedPrecondition: return "FailedPreconditionError";
    case Status::Code::kResourceExhausted: return "ResourceExhaustedError";
    default: return "Error";
  }
}

std::string ShapeString(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A row-major float32 view of n vectors of `dim` values, holding the (possibly converted) array.
struct Matrix {
  FloatArray array;
  size_t n = 0;
  size_t width = 0;
  const float* data = nullptr;
};

// Accepts an (n, dim) array or one (dim,) vector. dim 0 means "any width" (taken from the array).
Matrix AsMatrix(py::handle object, size_t dim, const std::string& what) {
  Matrix m;
  m.array = FloatArray::ensure(object);
  if (!m.array) {
    InvalidArgument(what + " must be a numeric array, got " +
                    std::string(py::str(py::type::handle_of(object).attr("__name__"))));
  }
  if (m.array.ndim() == 2) {
    m.n = static_cast<size_t>(m.array.shape(0));
    m.width = static_cast<size_t>(m.array.shape(1));
  } else if (m.array.ndim() == 1) {
    m.n = 1;
    m.width = static_cast<size_t>(m.array.shape(0));
  } else {
    InvalidArgument(what + " must be a 2-D array (n, dim) or one 1-D vector, got shape " +
                    ShapeString(m.array));
  }
  if (dim != 0 && m.width != dim && m.n != 0) {
    InvalidArgument(what + " have dimension " + std::to_string(m.width) + " (shape " +
                    ShapeString(m.array) + "), expected " + std::to_string(dim));
  }
  m.data = m.array.data();
  return m;
}

LabelArray AsLabels(py::handle object, size_t n, const std::string& what) {
  LabelArray labels = LabelArray::ensure(object);
  if (!labels || labels.ndim() != 1) {
    InvalidArgument(what + " must be a 1-D array of integers");
  }
  if (n != SIZE_MAX && static_cast<size_t>(labels.shape(0)) != n) {
    InvalidArgument(what + " has " + std::to_string(labels.shape(0)) + " entries for " +
                    std::to_string(n) + " vectors");
  }
  return labels;
}

// An output array given by the caller: must have exactly this dtype and shape and be writable.
template <class T>
py::array_t<T> OutputArray(py::object given, size_t n, size_t k, const char* name) {
  if (given.is_none()) {
    return py::array_t<T>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
  }
  auto array = py::reinterpret_borrow<py::array>(given);
  if (!py::isinstance<py::array>(given) || !array.dtype().is(py::dtype::of<T>()) ||
      array.ndim() != 2 || static_cast<size_t>(array.shape(0)) != n ||
      static_cast<size_t>(array.shape(1)) != k ||
      !(array.flags() & py::array::c_style) || !array.writeable()) {
    InvalidArgument(std::string(name) + " must be a writable C-contiguous " +
                    std::string(py::str(py::dtype::of<T>())) + " array of shape (" +
                    std::to_string(n) + ", " + std::to_string(k) + ")");
  }
  return py::reinterpret_borrow<py::array_t<T>>(given);
}

size_t CheckK(int64_t k) {
  if (k < 1 || k > kMaxK) {
    InvalidArgument("k must be between 1 and " + std::to_string(kMaxK) + ", got " + std::to_string(k));
  }
  return static_cast<size_t>(k);
}

// ---------------------------------------------------------------------------------------------
// Index

class PyIndex {
 public:
  PyIndex(int64_t dim, const std::string& factory, const std::string& metric) {
    if (dim < 1 || dim > 65536) {
      InvalidArgument("dim must be between 1 and 65536, got " + std::to_string(dim));
    }
    Metric m = Check(ParseMetric(metric));
    index_ = Check(MakeIndex(factory, static_cast<size_t>(dim), m));
  }
  explicit PyIndex(std::unique_ptr<Index> index) : index_(std::move(index)) {}

  static PyIndex Load(const std::string& path) {
    Result<std::unique_ptr<Index>> loaded = Status::Internal("not loaded");
    {
      py::gil_scoped_release release;
      loaded = Index::Load(path);
    }
    return PyIndex(Check(std::move(loaded)));
  }

  size_t dim() const { return index_->dim(); }
  size_t size() const { return index_->size(); }
  std::string metric() const { return MetricName(index_->metric()); }
  std::string factory() const { return index_->factory_string(); }
  size_t memory_bytes() const { return index_->memory_bytes(); }
  bool contains(int64_t label) const { return index_->Contains(label); }

  void Add(py::handle x, py::object ids, int threads) {
    Matrix m = AsMatrix(x, dim(), "vectors");
    LabelArray labels;
    const label_t* label_data = nullptr;
    if (!ids.is_none()) {
      labels = AsLabels(ids, m.n, "ids");
      label_data = labels.data();
    }
    if (m.n == 0) return;
    AddOptions options;
    options.threads = threads;
    Status status;
    {
      py::gil_scoped_release release;
      status = index_->Add(m.n, m.data, label_data, options);
    }
    Check(status);
  }

  void Train(py::handle x) {
    Matrix m = AsMatrix(x, dim(), "vectors");
    Status status;
    {
      py::gil_scoped_release release;
      status = index_->Train(m.n, m.data);
    }
    Check(status);
  }
  bool is_trained() const { return index_->is_trained(); }

  py::tuple Search(py::handle q, int64_t k_arg, int ef, int rerank, int nprobe, py::object distances_out,
                   py::object labels_out, int upper_ef, int checks) const {
    size_t k = CheckK(k_arg);
    Matrix m = AsMatrix(q, dim(), "queries");
    auto distances = OutputArray<float>(std::move(distances_out), m.n, k, "D");
    auto labels = OutputArray<int64_t>(std::move(labels_out), m.n, k, "I");
    SearchParams params;
    params.ef = ef;
    params.rerank = rerank;
    params.nprobe = nprobe;
    params.upper_ef = upper_ef;
    params.checks = checks;
    Status status;
    if (m.n > 0) {
      float* d = distances.mutable_data();
      int64_t* l = labels.mutable_data();
      py::gil_scoped_release release;
      status = index_->Search(m.n, m.data, k, d, l, params);
    }
    Check(status);
    return py::make_tuple(std::move(distances), std::move(labels));
  }

  size_t Remove(py::handle ids) {
    LabelArray labels = AsLabels(ids, SIZE_MAX, "ids");
    size_t removed = 0;
    Status status;
    {
      py::gil_scoped_release release;
      status = index_->Remove(static_cast<size_t>(labels.shape(0)), labels.data(), &removed);
    }
    Check(status);
    return removed;
  }

  py::array_t<float> Reconstruct(int64_t label) const {
    py::array_t<float> out(static_cast<py::ssize_t>(dim()));
    Check(index_->Reconstruct(label, out.mutable_data()));
    return out;
  }

  void Save(const std::string& path) const {
    Status status;
    {
      py::gil_scoped_release release;
      status = index_->Save(path);
    }
    Check(status);
  }

 private:
  std::unique_ptr<Index> index_;
};

// ---------------------------------------------------------------------------------------------
// Database and collections

// The open database shared by the Python Database object and every Collection handle taken from
// it. `mu` is held shared by each operation and exclusively by Close, so closing waits for
// operations in flight and a handle used after Close gets a clear error, never a dangling pointer.
struct DatabaseHandle {
  std::shared_mutex mu;
  std::unique_ptr<Database> db;
};

// Calls fn(db) -> Result<T> with the GIL released and the database held open; returns the T or
// raises the error (FailedPrecondition once the database is closed).
template <class Fn, class R = std::invoke_result_t<Fn&, Database*>>
auto RunOnDatabase(DatabaseHandle& handle, Fn&& fn) -> decltype(Check(std::declval<R>())) {
  std::optional<R> result;
  {
    py::gil_scoped_release release;
    std::shared_lock lock(handle.mu);
    if (handle.db) {
      result.emplace(fn(handle.db.get()));
    } else {
      result.emplace(Status::FailedPrecondition("the database is closed"));
    }
  }
  return Check(std::move(*result));
}

PointId ToPointId(py::handle id) {
  if (py::isinstance<py::str>(id)) return PointId(id.cast<std::string>());
  if (py::isinstance<py::bool_>(id)) InvalidArgument("point ids are integers or strings, got a bool");
  if (!py::hasattr(id, "__index__")) {
    InvalidArgument("point ids are integers or strings, got " +
                    std::string(py::str(py::type::handle_of(id).attr("__name__"))));
  }
  py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(id.ptr()));
  if (!value) throw py::error_already_set();
  if (value < py::int_(0) || value > py::int_(UINT64_MAX)) {
    InvalidArgument("integer point ids must be between 0 and 2**64-1, got " + std::string(py::str(id)));
  }
  return PointId(value.cast<uint64_t>());
}

std::vector<PointId> ToPointIds(py::handle ids) {
  std::vector<PointId> out;
  if (py::isinstance<py::str>(ids)) InvalidArgument("ids must be a sequence of ids, not one string");
  for (py::handle id : ids) out.push_back(ToPointId(id));
  return out;
}

py::object FromPointId(const PointId& id) {
  if (const auto* n = std::get_if<uint64_t>(&id)) return py::int_(*n);
  return py::str(std::get<std::string>(id));
}

py::dict VectorsToDict(const std::map<std::string, std::vector<float>>& vectors) {
  py::dict out;
  for (const auto& [name, v] : vectors) {
    py::array_t<float> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    out[py::str(name)] = std::move(a);
  }
  return out;
}

py::dict SpecToDict(const CollectionSpec& spec) {
  py::list vectors;
  for (const auto& v : spec.vectors) {
    py::dict d;
    d["name"] = v.name;
    d["dim"] = v.dim;
    d["metric"] = MetricName(v.metric);
    d["index"] = v.index;
    d["on_disk"] = v.on_disk;
    vectors.append(std::move(d));
  }
  py::dict fields;
  for (const auto& [name, type] : spec.indexed_fields) fields[py::str(name)] = FieldTypeName(type);
  py::dict out;
  out["name"] = spec.name;
  out["vectors"] = std::move(vectors);
  out["indexed_fields"] = std::move(fields);
  out["on_disk_payload"] = spec.on_disk_payload;
  return out;
}

class PyCollection {
 public:
  PyCollection(std::shared_ptr<DatabaseHandle> handle, std::string name)
      : handle_(std::move(handle)), name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  py::dict Spec() const {
    return SpecToDict(Run([](Collection* c) -> Result<CollectionSpec> { return c->spec(); }));
  }

  // The metadata's JSON text now; Database::UpdateCollectionMetadata (returns the result).
  std::string Metadata() const {
    return Run([](Collection* c) -> Result<std::string> { return c->metadata(); });
  }
  std::string UpdateMetadata(const std::string& changes) {
    return RunOnDatabase(*handle_, [&](Database* db) { return db->UpdateCollectionMetadata(name_, changes); });
  }
  // Database::CreatePayloadIndex / DropPayloadIndex on this collection.
  void CreatePayloadIndex(const std::string& field, const std::string& type) {
    const FieldType t = Check(ParseFieldType(type));
    RunOnDatabase(*handle_, [&](Database* db) { return db->CreatePayloadIndex(name_, field, t); });
  }
  void DeletePayloadIndex(const std::string& field) {
    RunOnDatabase(*handle_, [&](Database* db) { return db->DropPayloadIndex(name_, field); });
  }

  // ids: a sequence; vectors: {vector name: (n, dim) array}; payloads: None or n JSON texts.
  size_t Upsert(py::handle ids_arg, const py::dict& vectors, py::object payloads) {
    std::vector<PointId> ids = ToPointIds(ids_arg);
    std::vector<Record> records(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) records[i].id = std::move(ids[i]);
    for (auto [key, value] : vectors) {
      std::string vector_name = key.cast<std::string>();
      std::string what = vector_name.empty() ? "vectors" : "vectors['" + vector_name + "']";
      Matrix m = AsMatrix(value, 0, what);
      if (m.n != records.size()) {
        InvalidArgument(what + " has " + std::to_string(m.n) + " rows for " +
                        std::to_string(records.size()) + " ids");
      }
      for (size_t i = 0; i < m.n; ++i) {
        records[i].vectors[vector_name].assign(m.data + i * m.width, m.data + (i + 1) * m.width);
      }
    }
    if (!payloads.is_none()) {
      auto texts = payloads.cast<std::vector<std::optional<std::string>>>();
      if (texts.size() != records.size()) {
        InvalidArgument("payloads has " + std::to_string(texts.size()) + " entries for " +
                        std::to_string(records.size()) + " ids");
      }
      for (size_t i = 0; i < texts.size(); ++i) {
        if (texts[i]) records[i].payload = std::move(*texts[i]);
      }
    }
    Run([&](Collection* c) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(c->Upsert(records));
      return true;
    });
    return records.size();
  }

  // One entry per id: None, or (id, payload JSON text, {vector name: array}).
  py::list Get(py::handle ids_arg, bool with_vectors) const {
    std::vector<PointId> ids = ToPointIds(ids_arg);
    auto records = Run([&](Collection* c) { return c->Get(ids, with_vectors); });
    py::list out;
    for (const auto& r : records) {
      if (!r) {
        out.append(py::none());
        continue;
      }
      py::object vectors = with_vectors ? py::object(VectorsToDict(r->vectors)) : py::none();
      out.append(py::make_tuple(FromPointId(r->id), r->payload, std::move(vectors)));
    }
    return out;
  }

  size_t Delete(py::handle ids_arg) {
    std::vector<PointId> ids = ToPointIds(ids_arg);
    return Run([&](Collection* c) { return c->Delete(ids); });
  }

  size_t DeleteByFilter(const std::string& filter) {
    return Run([&](Collection* c) { return c->DeleteByFilter(filter); });
  }

  // op: "set", "overwrite", "delete" (keys) or "clear"; ids or a filter (the other empty).
  size_t UpdatePayload(const std::string& op, const std::string& payload, const std::vector<std::string>& keys,
                       py::handle ids_arg, const std::string& filter) {
    PayloadUpdate update;
    if (op == "set") {
      update.op = PayloadUpdate::Op::kSet;
    } else if (op == "overwrite") {
      update.op = PayloadUpdate::Op::kOverwrite;
    } else if (op == "delete") {
      update.op = PayloadUpdate::Op::kDeleteKeys;
    } else if (op == "clear") {
      update.op = PayloadUpdate::Op::kClear;
    } else {
      throw py::value_error("unknown payload operation '" + op + "'");
    }
    update.payload = payload;
    update.keys = keys;
    update.ids = ToPointIds(ids_arg);
    update.filter = filter;
    return Run([&](Collection* c) { return c->UpdatePayload(update); });
  }

  size_t Count(const std::string& filter) const {
    return Run([&](Collection* c) -> Result<size_t> {
      if (filter.empty()) return c->Count();
      return c->CountByFilter(filter);
    });
  }

  // A list per query of (id, distance, payload JSON text or None, vectors dict or None), and the
  // strategy the collection chose.
  py::tuple Search(py::handle queries, int64_t k, int ef, const std::string& filter,
                   bool with_payload, bool with_vectors, const std::string& vector_name, int rerank,
                   int nprobe, int upper_ef, int checks) const {
    SearchRequest request;
    request.vector = vector_name;
    request.k = CheckK(k);
    request.ef = ef;
    request.rerank = rerank;
    request.nprobe = nprobe;
    request.upper_ef = upper_ef;
    request.checks = checks;
    request.filter = filter;
    request.with_payload = with_payload;
    request.with_vectors = with_vectors;
    Matrix m = AsMatrix(queries, 0, "queries");
    request.queries.assign(m.data, m.data + m.array.size());
    SearchStats stats;
    auto results = Run([&](Collection* c) -> Result<std::vector<std::vector<ScoredPoint>>> {
      for (const auto& v : c->spec().vectors) {
        if (v.name != vector_name) continue;
        if (m.n != 0 && m.width != v.dim) {
          return Status::InvalidArgument(
              "queries have dimension " + std::to_string(m.width) + " (shape " +
              std::to_string(m.n) + " x " + std::to_string(m.width) + "), collection '" + name_ +
              "' " + (v.name.empty() ? "" : "vector '" + v.name + "' ") + "has dimension " +
              std::to_string(v.dim));
        }
      }
      if (m.n == 0) return std::vector<std::vector<ScoredPoint>>();
      return c->Search(request, &stats);
    });
    py::list out;
    for (const auto& hits : results) out.append(HitRows(hits, with_payload, with_vectors));
    return py::make_tuple(std::move(out), stats.strategy);
  }

  // Examples are ids (int or str) or vectors (sequences of numbers); returns one list of
  // (id, distance, payload JSON text or None, vectors dict or None).
  py::list Recommend(py::handle positive, py::handle negative, int64_t k, const std::string& strategy,
                     const std::string& filter, int ef, bool with_payload, bool with_vectors,
                     const std::string& vector_name) const {
    RecommendRequest request;
    request.vector = vector_name;
    request.k = CheckK(k);
    request.ef = ef;
    request.filter = filter;
    request.with_payload = with_payload;
    request.with_vectors = with_vectors;
    if (strategy == "average_vector") {
      request.strategy = RecommendRequest::Strategy::kAverageVector;
    } else if (strategy == "best_score") {
      request.strategy = RecommendRequest::Strategy::kBestScore;
    } else {
      InvalidArgument("strategy must be 'average_vector' or 'best_score', got '" + strategy + "'");
    }
    auto examples = [&](py::handle list, std::vector<PointId>* ids, std::vector<std::vector<float>>* vectors) {
      if (list.is_none()) return;
      for (py::handle e : list) {
        if (py::isinstance<py::int_>(e) || py::isinstance<py::str>(e)) {
          ids->push_back(ToPointId(e));
        } else {
          Matrix m = AsMatrix(e, 0, "example vector");
          vectors->emplace_back(m.data, m.data + m.array.size());
        }
      }
    };
    examples(positive, &request.positive_ids, &request.positive_vectors);
    examples(negative, &request.negative_ids, &request.negative_vectors);
    auto hits = Run([&](Collection* c) { return c->Recommend(request); });
    return HitRows(hits, with_payload, with_vectors);
  }

  // (id, distance, payload JSON text or None, vectors dict or None) per hit.
  static py::list HitRows(const std::vector<ScoredPoint>& hits, bool with_payload, bool with_vectors) {
    py::list row;
    for (const auto& hit : hits) {
      row.append(py::make_tuple(FromPointId(hit.id), hit.distance,
                                with_payload ? py::object(py::str(hit.payload)) : py::none(),
                                with_vectors ? py::object(VectorsToDict(hit.vectors)) : py::none()));
    }
    return row;
  }

  void Snapshot(const std::string& dir) const {
    Run([&](Collection* c) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(c->Snapshot(dir));
      return true;
    });
  }

  void Checkpoint() {
    Run([&](Collection* c) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(c->Checkpoint());
      return true;
    });
  }

  size_t memory_bytes() const {
    return Run([](Collection* c) -> Result<size_t> { return c->memory_bytes(); });
  }

  std::map<std::string, uint64_t> Usage() const {
    StorageUsage u = Run([](Collection* c) -> Result<StorageUsage> { return c->usage(); });
    return {{"ram_bytes", u.ram_bytes},
            {"disk_bytes", u.disk_bytes()},
            {"vectors_disk_bytes", u.vectors_disk_bytes},
            {"records_disk_bytes", u.records_disk_bytes},
            {"index_files_bytes", u.index_files_bytes}};
  }

  // Collection::Tune; `queries` flattened (empty: made from the collection's own points).
  py::dict Tune(double target_recall, size_t k, size_t sample, const std::string& vector,
                const std::vector<float>& queries, const std::vector<int>& values, bool store) {
    TuneRequest request;
    request.values = values;
    request.store = store;
    request.target_recall = target_recall;
    request.k = k;
    request.sample = sample;
    request.vector = vector;
    request.queries = queries;
    TuneResult result = Run([&](Collection* c) -> Result<TuneResult> { return c->Tune(request); });
    py::list tried;
    for (const auto& [value, recall] : result.tried) tried.append(py::make_tuple(value, recall));
    py::dict out;
    out["knob"] = result.knob;
    out["value"] = result.value;
    out["recall"] = result.recall;
    out["reached"] = result.reached;
    out["queries"] = result.queries;
    out["tried"] = tried;
    return out;
  }

  // Collection::ResetSearchDefaults.
  bool ResetTuning(const std::string& vector) {
    return Run([&](Collection* c) -> Result<bool> { return c->ResetSearchDefaults(vector); });
  }

  void Optimize() {
    Run([&](Collection* c) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(c->Optimize());
      return true;
    });
  }

 private:
  // Calls fn(collection) with the GIL released and the database held open; fn returns a Result.
  template <class Fn, class R = std::invoke_result_t<Fn&, Collection*>>
  auto Run(Fn&& fn) const -> decltype(Check(std::declval<R>())) {
    return RunOnDatabase(*handle_, [&](Database* db) -> R {
      auto c = db->GetCollection(name_);
      if (!c.ok()) return c.status();
      return fn(c->get());
    });
  }

  std::shared_ptr<DatabaseHandle> handle_;
  std::string name_;
};

struct VectorSpecArg {
  std::string name;
  int64_t dim;
  std::string metric;
  std::string index;
  bool on_disk = false;
};

class PyDatabase {
 public:
  PyDatabase(const std::string& path, const std::string& durability, uint64_t checkpoint_every)
      : handle_(std::make_shared<DatabaseHandle>()) {
    DatabaseOptions options;
    if (durability == "fsync") {
      options.durability = Durability::kFsync;
    } else if (durability == "buffered") {
      options.durability = Durability::kBuffered;
    } else {
      InvalidArgument("durability must be 'fsync' or 'buffered', got '" + durability + "'");
    }
    if (checkpoint_every == 0) InvalidArgument("checkpoint_every must be at least 1");
    options.checkpoint_every = checkpoint_every;
    Result<std::unique_ptr<Database>> db = Status::Internal("not opened");
    {
      py::gil_scoped_release release;
      db = Database::Open(path, options);
    }
    handle_->db = Check(std::move(db));
  }

  void Close() {
    Status status;
    {
      py::gil_scoped_release release;
      std::unique_lock lock(handle_->mu);
      if (handle_->db) {
        status = handle_->db->Close();
        handle_->db.reset();
      }
    }
    Check(status);
  }

  bool closed() const {
    py::gil_scoped_release release;
    std::shared_lock lock(handle_->mu);
    return handle_->db == nullptr;
  }

  std::vector<std::string> List() const {
    return RunOnDatabase(*handle_, [](Database* db) -> Result<std::vector<std::string>> { return db->ListCollections(); });
  }

  // (kind, alias, collection or new alias) with kind "create", "delete" or "rename"; all or none.
  void UpdateAliases(const std::vector<std::tuple<std::string, std::string, std::string>>& actions) {
    std::vector<AliasOperation> operations;
    for (const auto& [kind, alias, other] : actions) {
      AliasOperation op;
      op.alias = alias;
      if (kind == "create") {
        op.kind = AliasOperation::Kind::kCreate;
        op.collection = other;
      } else if (kind == "delete") {
        op.kind = AliasOperation::Kind::kDelete;
      } else if (kind == "rename") {
        op.kind = AliasOperation::Kind::kRename;
        op.new_alias = other;
      } else {
        InvalidArgument("alias action must be create, delete or rename, got '" + kind + "'");
      }
      operations.push_back(std::move(op));
    }
    RunOnDatabase(*handle_, [&](Database* db) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(db->UpdateAliases(operations));
      return true;
    });
  }

  std::map<std::string, std::string> Aliases() const {
    return RunOnDatabase(*handle_, [](Database* db) -> Result<std::map<std::string, std::string>> {
      return db->ListAliases();
    });
  }

  PyCollection Create(const std::string& name, const std::vector<VectorSpecArg>& vectors,
                      const std::map<std::string, std::string>& indexed_fields, bool on_disk_payload,
                      const std::string& metadata) {
    CollectionSpec spec;
    spec.name = name;
    spec.on_disk_payload = on_disk_payload;
    spec.metadata = metadata;
    for (const auto& v : vectors) {
      if (v.dim < 1) InvalidArgument("dim must be at least 1, got " + std::to_string(v.dim));
      VectorSpec vs;
      vs.name = v.name;
      vs.dim = static_cast<size_t>(v.dim);
      vs.metric = Check(ParseMetric(v.metric));
      vs.index = v.index;
      vs.on_disk = v.on_disk;
      spec.vectors.push_back(std::move(vs));
    }
    for (const auto& [field, type] : indexed_fields) {
      spec.indexed_fields[field] = Check(ParseFieldType(type));
    }
    RunOnDatabase(*handle_, [&](Database* db) -> Result<bool> {
      FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->CreateCollection(spec));
      (void)c;
      return true;
    });
    return PyCollection(handle_, name);
  }

  PyCollection Get(const std::string& name) const {
    RunOnDatabase(*handle_, [&](Database* db) -> Result<bool> {
      FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(name));
      (void)c;
      return true;
    });
    return PyCollection(handle_, name);
  }

  void Drop(const std::string& name) {
    RunOnDatabase(*handle_, [&](Database* db) -> Result<bool> {
      FATHOM_RETURN_IF_ERROR(db->DropCollection(name));
      return true;
    });
  }

  // The restored collection (under its snapshot's name or `new_name`).
  PyCollection RestoreSnapshot(const std::string& dir, const std::string& new_name) {
    std::string name = RunOnDatabase(*handle_, [&](Database* db) -> Result<std::string> {
      FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->RestoreSnapshot(dir, new_name));
      return c->spec().name;
    });
    return PyCollection(handle_, std::move(name));
  }

 private:
  std::shared_ptr<DatabaseHandle> handle_;
};

}  // namespace
}  // namespace fathom::python

namespace fp = fathom::python;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Fathom's compiled core; use the `fathom` package, which wraps it.";
  m.attr("MAX_K") = fp::kMaxK;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fp::StatusError& e) {
      py::object cls = py::module_::import("fathom.errors").attr(fp::ErrorClassName(e.code()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  // The library logs through spdlog's default logger (stdout); embedded in Python only
  // warnings and errors are shown unless fathom.set_log_level says otherwise.
  m.def("set_log_level", [](const std::string& level) {
    auto parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off") {
      fp::InvalidArgument("log level must be trace, debug, info, warning, error, critical or off, got '" +
                          level + "'");
    }
    spdlog::set_level(parsed);
  }, py::arg("level"));

  py::class_<fp::PyIndex>(m, "Index")
      .def(py::init<int64_t, const std::string&, const std::string&>(), py::arg("dim"),
           py::arg("factory"), py::arg("metric"))
      .def_static("load", &fp::PyIndex::Load, py::arg("path"))
      .def_property_readonly("dim", &fp::PyIndex::dim)
      .def_property_readonly("metric", &fp::PyIndex::metric)
      .def_property_readonly("factory", &fp::PyIndex::factory)
      .def_property_readonly("memory_bytes", &fp::PyIndex::memory_bytes)
      .def("__len__", &fp::PyIndex::size)
      .def("contains", &fp::PyIndex::contains, py::arg("id"))
      .def("add", &fp::PyIndex::Add, py::arg("x"), py::arg("ids"), py::arg("threads"))
      .def("train", &fp::PyIndex::Train, py::arg("x"))
      .def_property_readonly("is_trained", &fp::PyIndex::is_trained)
      .def("search", &fp::PyIndex::Search, py::arg("q"), py::arg("k"), py::arg("ef"),
           py::arg("rerank"), py::arg("nprobe"), py::arg("D"), py::arg("I"), py::arg("upper_ef") = 0,
           py::arg("checks") = 0)
      .def("remove", &fp::PyIndex::Remove, py::arg("ids"))
      .def("reconstruct", &fp::PyIndex::Reconstruct, py::arg("id"))
      .def("save", &fp::PyIndex::Save, py::arg("path"));

  py::class_<fp::PyCollection>(m, "Collection")
      .def_property_readonly("name", &fp::PyCollection::name)
      .def("spec", &fp::PyCollection::Spec)
      .def("metadata", &fp::PyCollection::Metadata)
      .def("update_metadata", &fp::PyCollection::UpdateMetadata, py::arg("changes"))
      .def("create_payload_index", &fp::PyCollection::CreatePayloadIndex, py::arg("field"), py::arg("type"))
      .def("delete_payload_index", &fp::PyCollection::DeletePayloadIndex, py::arg("field"))
      .def("upsert", &fp::PyCollection::Upsert, py::arg("ids"), py::arg("vectors"), py::arg("payloads"))
      .def("get", &fp::PyCollection::Get, py::arg("ids"), py::arg("with_vectors"))
      .def("delete", &fp::PyCollection::Delete, py::arg("ids"))
      .def("delete_by_filter", &fp::PyCollection::DeleteByFilter, py::arg("filter"))
      .def("update_payload", &fp::PyCollection::UpdatePayload, py::arg("op"), py::arg("payload"), py::arg("keys"),
           py::arg("ids"), py::arg("filter"))
      .def("count", &fp::PyCollection::Count, py::arg("filter"))
      .def("search", &fp::PyCollection::Search, py::arg("queries"), py::arg("k"), py::arg("ef"),
           py::arg("filter"), py::arg("with_payload"), py::arg("with_vectors"), py::arg("vector"),
           py::arg("rerank") = 0, py::arg("nprobe") = 0, py::arg("upper_ef") = 0, py::arg("checks") = 0)
      .def("recommend", &fp::PyCollection::Recommend, py::arg("positive"), py::arg("negative"), py::arg("k"),
           py::arg("strategy"), py::arg("filter"), py::arg("ef"), py::arg("with_payload"),
           py::arg("with_vectors"), py::arg("vector"))
      .def("snapshot", &fp::PyCollection::Snapshot, py::arg("dir"))
      .def("checkpoint", &fp::PyCollection::Checkpoint)
      .def("optimize", &fp::PyCollection::Optimize)
      .def("tune", &fp::PyCollection::Tune, py::arg("target_recall"), py::arg("k"), py::arg("sample"),
           py::arg("vector"), py::arg("queries"), py::arg("values"), py::arg("store"))
      .def("reset_tuning", &fp::PyCollection::ResetTuning, py::arg("vector"))
      .def("usage", &fp::PyCollection::Usage)
      .def_property_readonly("memory_bytes", &fp::PyCollection::memory_bytes);

  py::class_<fp::VectorSpecArg>(m, "VectorSpec")
      .def(py::init<std::string, int64_t, std::string, std::string, bool>(), py::arg("name"),
           py::arg("dim"), py::arg("metric"), py::arg("index"), py::arg("on_disk") = false);

  py::class_<fp::PyDatabase>(m, "Database")
      .def(py::init<const std::string&, const std::string&, uint64_t>(), py::arg("path"),
           py::arg("durability"), py::arg("checkpoint_every"))
      .def("close", &fp::PyDatabase::Close)
      .def_property_readonly("closed", &fp::PyDatabase::closed)
      .def("list_collections", &fp::PyDatabase::List)
      .def("create_collection", &fp::PyDatabase::Create, py::arg("name"), py::arg("vectors"),
           py::arg("indexed_fields"), py::arg("on_disk_payload") = false, py::arg("metadata") = "{}")
      .def("get_collection", &fp::PyDatabase::Get, py::arg("name"))
      .def("drop_collection", &fp::PyDatabase::Drop, py::arg("name"))
      .def("update_aliases", &fp::PyDatabase::UpdateAliases, py::arg("actions"))
      .def("aliases", &fp::PyDatabase::Aliases)
      .def("restore_snapshot", &fp::PyDatabase::RestoreSnapshot, py::arg("dir"), py::arg("new_name"));
}
