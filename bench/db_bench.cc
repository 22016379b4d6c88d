// db_bench: what the database layer costs on top of the index, on Fashion-MNIST.
//
//  1. Durable ingest: upserting the training set in batches of 1000 into a collection
//     (RocksDB, fsync per batch, payloads) against adding the same batches to the same index in
//     memory with no storage. Both insert on all cores, so the ratio is the storage overhead.
//  2. Filtered search: QPS and recall@10 (against exact filtered search) without a filter and at
//     90%, 50%, 10%, 5%, 1% and 0.1% selectivity, with the strategy the collection chose and the
//     ratio to the unfiltered QPS.
//  3. Concurrent small writers: --writers threads each upserting requests of 1 and of 10 points
//     (fsync on), as many REST clients do: requests/s and points/s. Concurrent requests share
//     one log write and fsync (group commit) and one index insert. --writers 0 skips it.
//
// Usage: db_bench [--index HNSW16,SQ8] [--nb 60000] [--nq 500] [--ef 64] [--writers 8] [--dir DIR]
//                 [--cuts 900,500,100,50,10,1]   (filters bucket < cut: cut/1000 of the points)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "fathom/database.h"
#include "fathom/index.h"
#include "util/vector_file.h"

namespace fathom {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Run(int argc, char** argv) {
  std::string factory = "HNSW16,SQ8";
  size_t nb = 60000, nq = 500;
  int ef = 64;
  size_t writers = 8;
  std::vector<int> cuts = {900, 500, 100, 50, 10, 1};
  std::string dir = (std::filesystem::temp_directory_path() / "fathom_db_bench").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--index") factory = argv[i + 1];
    else if (a == "--nb") nb = std::stoul(argv[i + 1]);
    else if (a == "--nq") nq = std::stoul(argv[i + 1]);
    else if (a == "--ef") ef = std::stoi(argv[i + 1]);
    else if (a == "--writers") writers = std::stoul(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--cuts") {
      cuts.clear();
      for (const char* p = argv[i + 1]; *p != 0;) {
        char* end = nullptr;
        cuts.push_back(int(std::strtol(p, &end, 10)));
        if (end == p) break;
        p = *end == ',' ? end + 1 : end;
      }
    }
  }
  const std::string root = "/usr/share/datasets/fashion-mnist/";
  auto base = ReadIdxImages(root + "train-images-idx3-ubyte.gz", nb);
  auto labels = ReadIdxLabels(root + "train-labels-idx1-ubyte.gz");
  auto queries = ReadIdxImages(root + "t10k-images-idx3-ubyte.gz", nq);
  if (!base.ok() || !labels.ok() || !queries.ok()) {
    std::fprintf(stderr, "db_bench: cannot read Fashion-MNIST (install dataset-fashion-mnist)\n");
    return 1;
  }
  nb = base->rows;
  const size_t dim = base->cols;
  const size_t batch = 1000;

  // 1. In-memory index build, same batches, one thread.
  auto index = std::move(MakeIndex(factory, dim, Metric::kL2)).value();
  auto t0 = Clock::now();
  for (size_t b = 0; b < nb; b += batch) {
    size_t n = std::min(batch, nb - b);
    std::vector<label_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = label_t(b + i);
    AddOptions options;
    options.threads = 0;  // as Collection::Upsert does for batches this large
    if (!index->Add(n, base->data.data() + b * dim, ids.data(), options).ok()) return 1;
  }
  double memory_s = Seconds(t0);

  // Durable ingest.
  std::filesystem::remove_all(dir);
  auto db = std::move(Database::Open(dir)).value();
  CollectionSpec spec;
  spec.name = "fashion";
  spec.vectors.push_back({"", dim, Metric::kL2, factory});
  spec.indexed_fields = {{"label", FieldType::kInteger}, {"bucket", FieldType::kInteger}};
  std::shared_ptr<Collection> c = std::move(db->CreateCollection(spec)).value();
  t0 = Clock::now();
  for (size_t b = 0; b < nb; b += batch) {
    size_t n = std::min(batch, nb - b);
    std::vector<Record> records(n);
    for (size_t i = 0; i < n; ++i) {
      size_t row = b + i;
      records[i].id = uint64_t(row);
      records[i].vectors[""].assign(base->data.begin() + row * dim, base->data.begin() + (row + 1) * dim);
      records[i].payload = "{\"label\":" + std::to_string((*labels)[row]) +
                           ",\"bucket\":" + std::to_string(row % 1000) + "}";
    }
    Status s = c->Upsert(records);
    if (!s.ok()) {
      std::fprintf(stderr, "db_bench: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  double durable_s = Seconds(t0);
  std::printf("# db_bench: Fashion-MNIST %zu x %zu, index %s, batches of %zu, inserts on all cores\n",
              nb, dim, factory.c_str(), batch);
  std::printf("ingest      in-memory index: %8.0f points/s (%.2f s)\n", nb / memory_s, memory_s);
  std::printf("ingest      durable (fsync): %8.0f points/s (%.2f s)   ratio %.2f\n", nb / durable_s,
              durable_s, memory_s / durable_s);

  // 2. Filtered search: bucket < cut allows cut/1000 of the points.
  std::printf("\n%-12s %-9s %-13s %9s %9s %9s\n", "selectivity", "allowed", "strategy", "recall", "QPS",
              "ratio");
  double unfiltered_qps = 0;
  // Exact distances by brute force, once: each cut's ground truth is a filtered sort of them.
  std::vector<float> exact(nq * nb);
  for (size_t q = 0; q < nq; ++q) {
    const float* qv = queries->data.data() + q * dim;
    for (size_t row = 0; row < nb; ++row) {
      const float* v = base->data.data() + row * dim;
      float d = 0;
      for (size_t j = 0; j < dim; ++j) d += (qv[j] - v[j]) * (qv[j] - v[j]);
      exact[q * nb + row] = d;
    }
  }
  // The first (unfiltered) pass runs twice: the first warms the caches.
  cuts.insert(cuts.begin(), {1000, 1000});
  for (int cut : cuts) {
    std::vector<std::vector<uint64_t>> truth(nq);
    for (size_t q = 0; q < nq; ++q) {
      std::vector<std::pair<float, uint64_t>> all;
      for (size_t row = 0; row < nb; ++row) {
        if (int(row % 1000) < cut) all.emplace_back(exact[q * nb + row], row);
      }
      size_t k = std::min<size_t>(10, all.size());
      std::partial_sort(all.begin(), all.begin() + k, all.end());
      for (size_t i = 0; i < k; ++i) truth[q].push_back(all[i].second);
    }
    double hits = 0, total = 0;
    SearchStats stats;
    t0 = Clock::now();
    for (size_t q = 0; q < nq; ++q) {
      SearchRequest req;
      req.queries.assign(queries->data.begin() + q * dim, queries->data.begin() + (q + 1) * dim);
      req.k = 10;
      req.ef = ef;
      req.with_payload = false;
      if (cut < 1000) req.filter = "bucket < " + std::to_string(cut);
      auto res = c->Search(req, &stats);
      if (!res.ok()) return 1;
      std::unordered_set<uint64_t> t(truth[q].begin(), truth[q].end());
      for (const auto& p : (*res)[0]) hits += t.count(std::get<uint64_t>(p.id));
      total += truth[q].size();
    }
    double qps = nq / Seconds(t0);
    if (cut == 1000) {
      unfiltered_qps = qps;
      std::printf("%-12s %-9zu %-13s %9.4f %9.0f %9.2f\n", "none", nb, "unfiltered", hits / total, qps, 1.0);
      continue;
    }
    std::printf("%-12s %-9zu %-13s %9.4f %9.0f %9.2f\n",
                (std::to_string(cut / 10) + "." + std::to_string(cut % 10) + "%").c_str(), stats.allowed,
                stats.strategy.c_str(), hits / total, qps, qps / unfiltered_qps);
  }

  // 3. Concurrent small writers into a fresh collection, fsync on.
  std::printf("\n%-22s %10s %10s\n", "concurrent writers", "requests/s", "points/s");
  for (size_t per_request : {size_t{1}, size_t{10}}) {
    if (writers == 0) break;
    spec.name = "writers" + std::to_string(per_request);
    std::shared_ptr<Collection> w = std::move(db->CreateCollection(spec)).value();
    const size_t points = std::min<size_t>(nb, per_request == 1 ? 4000 : 20000);
    const size_t requests = points / per_request;
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    t0 = Clock::now();
    std::vector<std::thread> threads;
    for (size_t t = 0; t < writers; ++t) {
      threads.emplace_back([&] {
        for (size_t r; (r = next.fetch_add(1)) < requests;) {
          std::vector<Record> records(per_request);
          for (size_t i = 0; i < per_request; ++i) {
            size_t row = r * per_request + i;
            records[i].id = uint64_t(row);
            records[i].vectors[""].assign(base->data.begin() + row * dim, base->data.begin() + (row + 1) * dim);
            records[i].payload = "{\"label\":" + std::to_string((*labels)[row]) + "}";
          }
          if (!w->Upsert(records).ok()) failed = true;
        }
      });
    }
    for (auto& t : threads) t.join();
    double s = Seconds(t0);
    if (failed) return 1;
    std::printf("%2zu threads x %2zu points %10.0f %10.0f\n", writers, per_request, requests / s, points / s);
  }
  db.reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace fathom

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  return fathom::Run(argc, argv);
}
