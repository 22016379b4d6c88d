// rest_bench: REST search throughput against the same searches in process, in one run.
//
// Loads the Fashion-MNIST demo collection (the loader and spec `fathom serve --demo` uses: 70,000
// images, HNSW16,SQ8, label and split payloads) into a database, then answers batches of 64 test
// images (k 10, ef 64, no payload: the REST defaults) four ways, each for --seconds:
//
//   in process   T threads calling Collection::Search with 64 queries each
//   REST base64  T cpp-httplib clients, one keep-alive connection each, POSTing the same batches
//                to /points/search/batch with vectors as base64 little-endian float32
//   REST JSON    the same with vectors as JSON arrays of numbers
//   in process   again, so drift on a shared machine shows (the ratio uses the mean of both)
//
// The server is the real HTTP front (server::HttpServer, the same routing, auth and metrics as
// `fathom serve`) over the same open Database, on a loopback port, in this process: client and
// server share the machine's cores, as they would on one host. Also prints recall@10 of the
// in-process answers (against exact search) and checks that REST returns the same neighbours.
//
// Usage: rest_bench [--threads T=4] [--seconds S=10] [--data DIR (kept; reused if it holds the
//                   collection)] [--ef 64] [--batches 32] [--rest-only (no recall, no in-process
//                   rows: for profiling the REST rows)] [--search-threads N (server's search
//                   slots; 0 = one per core)]
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "cli/demo.h"
#include "fathom/database.h"
#include "fathom/index.h"
#include "server/api.h"
#include "server/json_util.h"
#include "server/server.h"
#include "util/vector_file.h"

namespace fathom {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatch = 64;
constexpr size_t kK = 10;
constexpr size_t kDim = 784;
const char kRoot[] = "/usr/share/datasets/fashion-mnist/";

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Runs `work(thread, iteration)` on `threads` threads for `seconds`; returns completed calls/s.
// `work` returns false on failure, which stops the run.
double RunFor(size_t threads, double seconds, const std::function<bool(size_t, size_t)>& work) {
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<size_t> done(threads, 0);
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        if (!work(t, t * 7919 + i)) {
          failed = true;
          stop = true;
          return;
        }
        ++done[t];
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double elapsed = Seconds(start);
  if (failed) return -1;
  size_t total = 0;
  for (size_t d : done) total += d;
  return total / elapsed;
}

std::string BatchBody(const Matrix& queries, size_t batch, int ef, bool base64) {
  std::string body = "{\"searches\":[";
  for (size_t q = 0; q < kBatch; ++q) {
    const float* v = queries.row(batch * kBatch + q);
    if (q) body += ',';
    body += "{\"vector\":";
    if (base64) {
      body += '"' + server::EncodeBase64Floats(v, kDim) + '"';
    } else {
      body += '[';
      for (size_t d = 0; d < kDim; ++d) {
        if (d) body += ',';
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v[d]);
        body.append(buf, end);
      }
      body += ']';
    }
    body += ",\"limit\":" + std::to_string(kK) + ",\"params\":{\"ef\":" + std::to_string(ef) + "}}";
  }
  body += "]}";
  return body;
}

int Run(int argc, char** argv) {
  size_t threads = 4, nbatches = 32;
  double seconds = 10;
  int ef = 64;
  std::string data_dir;
  size_t search_threads = 0;  // ServerOptions::max_concurrent_searches (0 = one per core)
  bool rest_only = false;  // skip recall and the in-process rows (to profile the REST rows alone)
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rest-only") {
      rest_only = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "rest_bench: %s needs a value\n", argv[i]);
      return 1;
    }
    if (a == "--threads") threads = std::stoul(argv[i + 1]);
    else if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    else if (a == "--data") data_dir = argv[i + 1];
    else if (a == "--ef") ef = std::stoi(argv[i + 1]);
    else if (a == "--batches") nbatches = std::stoul(argv[i + 1]);
    else if (a == "--search-threads") search_threads = std::stoul(argv[i + 1]);
    else {
      std::fprintf(stderr, "rest_bench: unknown option %s\n", argv[i]);
      return 1;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  const bool temporary = data_dir.empty();
  if (temporary) {
    data_dir = (std::filesystem::temp_directory_path() /
                ("fathom_rest_bench_" + std::to_string(::getpid())))
                   .string();
  }
  auto cleanup = [&] {
    if (temporary) std::filesystem::remove_all(data_dir);
  };

  auto t0 = Clock::now();
  if (Status s = cli::LoadDemo(data_dir); !s.ok()) {
    std::fprintf(stderr, "rest_bench: loading the demo collection: %s\n", s.ToString().c_str());
    cleanup();
    return 1;
  }
  std::printf("demo collection ready in %s (%.1f s)\n", data_dir.c_str(), Seconds(t0));
  DatabaseOptions db_options;  // fsync, as `fathom serve` runs; searches do not write
  auto opened = Database::Open(data_dir, db_options);
  if (!opened.ok()) {
    std::fprintf(stderr, "rest_bench: %s\n", opened.status().ToString().c_str());
    cleanup();
    return 1;
  }
  std::unique_ptr<Database> db = std::move(opened).value();
  std::shared_ptr<Collection> collection = *db->GetCollection(cli::kDemoCollection);

  auto queries = ReadIdxImages(std::string(kRoot) + "t10k-images-idx3-ubyte.gz", nbatches * kBatch);
  if (!queries.ok() || queries->rows < nbatches * kBatch) {
    std::fprintf(stderr, "rest_bench: cannot read Fashion-MNIST test images\n");
    cleanup();
    return 1;
  }
  std::vector<SearchRequest> requests(nbatches);
  for (size_t b = 0; b < nbatches; ++b) {
    requests[b].queries.assign(queries->row(b * kBatch), queries->row((b + 1) * kBatch));
    requests[b].k = kK;
    requests[b].ef = ef;
    requests[b].with_payload = false;  // the REST default
  }

  // Recall@10 of the first batches against exact search over the same 70,000 images.
  if (!rest_only) {
    auto train = ReadIdxImages(std::string(kRoot) + "train-images-idx3-ubyte.gz");
    auto test = ReadIdxImages(std::string(kRoot) + "t10k-images-idx3-ubyte.gz");
    auto flat = std::move(MakeIndex("Flat", kDim, Metric::kL2)).value();
    // The demo's ids: training images 0..59999, then test images.
    std::vector<label_t> labels(train->rows + test->rows);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = i;
    (void)flat->Add(train->rows, train->data.data(), labels.data());
    (void)flat->Add(test->rows, test->data.data(), labels.data() + train->rows);
    const size_t check = std::min<size_t>(nbatches, 10) * kBatch;
    std::vector<float> dist(check * kK);
    std::vector<label_t> truth(check * kK);
    (void)flat->Search(check, queries->data.data(), kK, dist.data(), truth.data(), SearchParams{});
    size_t hits = 0;
    for (size_t b = 0; b * kBatch < check; ++b) {
      auto res = collection->Search(requests[b]);
      for (size_t q = 0; q < kBatch; ++q) {
        std::unordered_set<label_t> want(truth.begin() + (b * kBatch + q) * kK,
                                         truth.begin() + (b * kBatch + q + 1) * kK);
        for (const auto& p : (*res)[q]) hits += want.count(std::get<uint64_t>(p.id));
      }
    }
    std::printf("recall@10 (ef %d, %zu queries): %.4f\n", ef, check, double(hits) / (check * kK));
  }

  auto in_process = [&] {
    return kBatch * RunFor(threads, seconds, [&](size_t, size_t i) {
             return collection->Search(requests[i % nbatches]).ok();
           });
  };
  std::printf("batch %zu, k %zu, ef %d, %zu threads / connections, %.0f s per row, %u cores\n", kBatch,
              kK, ef, threads, seconds, std::thread::hardware_concurrency());
  const double local1 = rest_only ? 0 : in_process();
  std::printf("%-34s %9.0f queries/s\n", "in process (Collection::Search)", local1);

  // The same database behind the HTTP front.
  server::ApiLimits limits;
  limits.max_concurrent_searches = search_threads;
  server::Api api(data_dir, std::move(db), limits);
  ServerOptions server_options;
  server_options.port = 0;
  server::HttpServer http(server_options, &api);
  auto port = http.Bind();
  if (!port.ok()) {
    std::fprintf(stderr, "rest_bench: %s\n", port.status().ToString().c_str());
    cleanup();
    return 1;
  }
  std::thread listener([&] { http.Listen(); });
  const std::string path = "/collections/" + std::string(cli::kDemoCollection) + "/points/search/batch";

  double rest[2] = {0, 0};
  const char* names[2] = {"REST, vectors as base64", "REST, vectors as JSON arrays"};
  for (int encoding = 0; encoding < 2; ++encoding) {
    std::vector<std::string> bodies(nbatches);
    for (size_t b = 0; b < nbatches; ++b) bodies[b] = BatchBody(*queries, b, ef, encoding == 0);
    // Same neighbours as in process, for the first batch.
    {
      httplib::Client client("127.0.0.1", *port);
      auto res = client.Post(path, bodies[0], "application/json");
      if (!res || res->status != 200) {
        std::fprintf(stderr, "rest_bench: %s failed: %s\n", names[encoding],
                     res ? res->body.substr(0, 300).c_str() : httplib::to_string(res.error()).c_str());
        http.Stop();
        listener.join();
        cleanup();
        return 1;
      }
      auto doc = nlohmann::json::parse(res->body);
      auto local = collection->Search(requests[0]);
      size_t same = 0;
      for (size_t q = 0; q < kBatch; ++q) {
        for (size_t j = 0; j < (*local)[q].size() && j < doc["result"][q].size(); ++j) {
          same += doc["result"][q][j]["id"].get<uint64_t>() == std::get<uint64_t>((*local)[q][j].id);
        }
      }
      if (same != kBatch * kK) {
        std::fprintf(stderr, "rest_bench: REST and in-process answers differ (%zu of %zu ids agree)\n",
                     same, kBatch * kK);
      }
    }
    std::vector<std::unique_ptr<httplib::Client>> clients;
    for (size_t t = 0; t < threads; ++t) {
      clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", *port));
      clients.back()->set_keep_alive(true);
      // As client libraries do (urllib3, Go's net/http): without it Nagle's algorithm holds the
      // tail of a large body until the server's delayed ACK, up to 40 ms per request.
      clients.back()->set_tcp_nodelay(true);
      clients.back()->set_read_timeout(60);
    }
    rest[encoding] = kBatch * RunFor(threads, seconds, [&](size_t t, size_t i) {
                       auto res = clients[t]->Post(path, bodies[i % nbatches], "application/json");
                       return res && res->status == 200;
                     });
    std::printf("%-34s %9.0f queries/s  (%zu KB per request)\n", names[encoding], rest[encoding],
                bodies[0].size() / 1024);
  }
  http.Stop();
  listener.join();
  const double local2 = rest_only ? 0 : in_process();
  std::printf("%-34s %9.0f queries/s\n", "in process, again", local2);
  const double local = (local1 + local2) / 2;
  std::printf("REST / in process: base64 %.2f, JSON arrays %.2f\n", rest[0] / local, rest[1] / local);
  Status closed = api.Close();
  cleanup();
  if (rest[0] < 0 || rest[1] < 0 || local1 < 0 || local2 < 0) {
    std::fprintf(stderr, "rest_bench: some requests failed\n");
    return 1;
  }
  return closed.ok() ? 0 : 1;
}

}  // namespace
}  // namespace fathom

int main(int argc, char** argv) { return fathom::Run(argc, argv); }
