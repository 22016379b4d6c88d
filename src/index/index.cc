#include <atomic>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "fathom/index.h"
#include "index/factory.h"
#include "index/flat.h"
#include "index/hnsw.h"
#include "index/ivf.h"
#include "index/balltree.h"
#include "simd/distance.h"
#include "index/kdforest.h"
#include "index/kdtree.h"
#include "index/vector_store.h"

namespace fathom {

const char* MetricName(Metric metric) {
  switch (metric) {
    case Metric::kL2: return "l2";
    case Metric::kInnerProduct: return "ip";
    case Metric::kCosine: return "cosine";
    case Metric::kL1: return "l1";
  }
  return "unknown";
}

Result<Metric> ParseMetric(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "l2" || lower == "euclidean") return Metric::kL2;
  if (lower == "ip" || lower == "inner_product" || lower == "dot") return Metric::kInnerProduct;
  if (lower == "cosine") return Metric::kCosine;
  if (lower == "l1" || lower == "manhattan") return Metric::kL1;
  return Status::InvalidArgument("unknown metric '" + std::string(name) +
                                 "': expected l2 (or euclidean), ip (or inner_product, dot), cosine or l1 "
                                 "(or manhattan)");
}

Status Index::SetVectorStore(std::shared_ptr<VectorStore>) { return CanUseVectorStore(); }

Status Index::CanUseVectorStore() const {
  return VectorStoreRefusal("HNSW32", factory_string(), metric());
}

Status VectorStoreRefusal(const std::string& hnsw, const std::string& factory, Metric metric) {
  return Status::NotSupported("on_disk keeps float vectors on disk and re-ranks from there, so its index must walk "
                              "compressed codes in RAM: use '" + hnsw + ",SQ8' or '...,RBQ' with l2 or cosine, "
                              "'...,FP16' or '...,SQ4' (any metric), or IVF lists of codes such as 'IVF1024,SQ8' (got '" +
                              factory + "' with " +
                              MetricName(metric) + ")");
}

Status Index::Train(size_t n, const float* x) { return ValidateVectors(n, x); }

uint64_t BitsetFilter::NewId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

size_t BitsetFilter::count() const {
  size_t c = 0;
  for (uint64_t w : words_) c += static_cast<size_t>(std::popcount(w));
  return c;
}

bool VectorLooksValid(const float* v, size_t dim) {
  // Squares are never negative, so a NaN or infinity anywhere makes the sum non-finite; the
  // float sum's rounding (relative 1e-4 at 4096 dimensions) is far inside the 1% margin.
  const float squared = simd::Active().dot(v, v, dim);
  return std::isfinite(squared) && squared <= 0.99 * kMaxSquaredNorm;
}

Status CheckVector(const float* v, size_t dim, const std::string& what) {
  if (VectorLooksValid(v, dim)) return Status::OK();
  double norm = 0;
  size_t largest = 0;
  for (size_t j = 0; j < dim; ++j) {
    if (!std::isfinite(v[j])) {
      return Status::InvalidArgument(what + " has a non-finite value (" + std::to_string(v[j]) +
                                     ") at dimension " + std::to_string(j));
    }
    norm += double(v[j]) * double(v[j]);
    if (std::fabs(v[j]) > std::fabs(v[largest])) largest = j;
  }
  if (norm > kMaxSquaredNorm) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  " has squared norm %.3g, above the limit of %.3g that keeps distances finite in "
                  "float32 (largest value %.3g at dimension %zu): scale it down",
                  norm, kMaxSquaredNorm, double(v[largest]), largest);
    return Status::InvalidArgument(what + buf);
  }
  return Status::OK();
}

Status Index::ValidateVectors(size_t n, const float* x) const {
  if (n > 0 && x == nullptr) return Status::InvalidArgument("vector data is null");
  for (size_t i = 0; i < n; ++i) {
    if (VectorLooksValid(x + i * dim_, dim_)) continue;
    FATHOM_RETURN_IF_ERROR(CheckVector(x + i * dim_, dim_, "vector " + std::to_string(i)));
  }
  return Status::OK();
}

Result<std::unique_ptr<Index>> MakeIndex(std::string_view factory, size_t dim, Metric metric) {
  if (dim == 0 || dim > 65536) {
    return Status::InvalidArgument("dimension " + std::to_string(dim) +
                                   " is out of range: expected 1 to 65536");
  }
  FATHOM_ASSIGN_OR_RETURN(IndexSpec spec, ParseFactory(factory));
  if (metric == Metric::kL1 && !(spec.type == IndexSpec::Type::kFlat ||
                                 (spec.type == IndexSpec::Type::kHnsw && !spec.sq8 && !spec.sq4 && !spec.fp16 && !spec.rbq))) {
    return Status::InvalidArgument("'" + std::string(factory) + "': l1 (Manhattan) distance is served by 'Flat' and "
                                   "'HNSW<M>' on float32 vectors (codes and trees assume l2, ip or cosine)");
  }
  switch (spec.type) {
    case IndexSpec::Type::kFlat:
      return std::unique_ptr<Index>(new FlatIndex(dim, metric));
    case IndexSpec::Type::kHnsw:
      if (spec.rbq && metric == Metric::kInnerProduct) {
        return Status::InvalidArgument("'" + std::string(factory) +
                                       "': RaBitQ codes estimate l2 distances (and cosine, on unit vectors); "
                                       "for inner product use SQ8, FP16 or float32");
      }
      if (spec.pca != 0 && (metric == Metric::kInnerProduct || size_t(spec.pca) >= dim)) {
        return Status::InvalidArgument(
            "'" + std::string(factory) + "': pca=" + std::to_string(spec.pca) +
            (metric == Metric::kInnerProduct ? " walks on l2 between projections: it serves l2 and cosine, not inner product"
                                             : " must be below the dimension (" + std::to_string(dim) + ")"));
      }
      return std::unique_ptr<Index>(new HnswIndex(dim, metric, spec));
    case IndexSpec::Type::kIvf: {
      if ((spec.code == IndexSpec::Code::kPq || spec.code == IndexSpec::Code::kPq4fs) && dim % size_t(spec.pq_m) != 0) {
        return Status::InvalidArgument("'" + std::string(factory) + "': PQ" + std::to_string(spec.pq_m) +
                                       " splits vectors into " + std::to_string(spec.pq_m) +
                                       " equal parts, but dimension " + std::to_string(dim) +
                                       " is not a multiple of " + std::to_string(spec.pq_m));
      }
      if (spec.code == IndexSpec::Code::kRbq && metric == Metric::kInnerProduct) {
        return Status::InvalidArgument("'" + std::string(factory) +
                                       "': RaBitQ codes estimate l2 distances (and cosine, on unit vectors); "
                                       "for inner product use Flat, SQ8 or PQ lists");
      }
      return std::unique_ptr<Index>(new IvfIndex(dim, metric, spec));
    }
    case IndexSpec::Type::kKdTree:
    case IndexSpec::Type::kKdForest:
    case IndexSpec::Type::kBallTree:
      if (metric == Metric::kInnerProduct) {
        return Status::InvalidArgument("'" + std::string(factory) +
                                       "' answers l2 and cosine queries; inner product has no metric tree "
                                       "(use Flat, HNSW or IVF)");
      }
      if (spec.type == IndexSpec::Type::kBallTree) {
        return std::unique_ptr<Index>(new BallTreeIndex(dim, metric, spec.branching));
      }
      if (spec.type == IndexSpec::Type::kKdForest) {
        return std::unique_ptr<Index>(new KdForestIndex(dim, metric, spec.trees));
      }
      return std::unique_ptr<Index>(new KdTreeIndex(dim, metric, spec.leaf));
  }
  return Status::Internal("unhandled index type");
}

}  // namespace fathom
