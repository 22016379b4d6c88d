// libFuzzer target over what the server parses from strangers: request bodies (through the
// socket-free Api, against a real database), and both filter syntaxes. The first input byte
// picks the entry point; the rest is the input. Any crash, sanitizer report, hang or exception
// escaping is a bug: every input must end in a Reply or a Status. Searches run twice, through
// the simdjson fast path and the nlohmann path, and must answer identically.
//
//   build-fuzz/request_fuzz -max_total_time=30 tests/fuzz/corpus   (scripts/test.sh does this)
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "db/filter.h"
#include "fathom/database.h"
#include "server/api.h"

namespace {

fathom::server::Api& SharedApi() {
  static fathom::server::Api* api = [] {
    spdlog::set_level(spdlog::level::off);
    std::string dir = (std::filesystem::temp_directory_path() /
                       ("fathom_fuzz_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir);
    fathom::DatabaseOptions options;
    options.durability = fathom::Durability::kBuffered;
    auto db = std::move(fathom::Database::Open(dir, options)).value();
    fathom::CollectionSpec spec;
    spec.name = "c";
    spec.vectors.push_back({"", 4, fathom::Metric::kL2, "HNSW8"});
    spec.indexed_fields = {{"label", fathom::FieldType::kInteger},
                           {"color", fathom::FieldType::kKeyword}};
    (void)db->CreateCollection(spec);
    return new fathom::server::Api(dir, std::move(db), fathom::server::ApiLimits{});
  }();
  return *api;
}

const nlohmann::json& SamplePayload() {
  static const nlohmann::json payload = nlohmann::json::parse(
      R"({"label": 3, "color": "red", "tags": ["a", "b"], "meta": {"size": 4.5}, "sold": false})");
  return payload;
}

// The two search-body parsers must agree on every input: same status, result and error.
void SearchBothWays(fathom::server::ApiRequest req, bool batch) {
  auto& api = SharedApi();
  req.fast_parse = true;
  fathom::server::Reply fast = batch ? api.SearchBatch(req) : api.Search(req);
  req.fast_parse = false;
  fathom::server::Reply slow = batch ? api.SearchBatch(req) : api.Search(req);
  if (fast.http_status != slow.http_status || fast.result != slow.result || fast.error != slow.error) {
    std::fprintf(stderr, "fast and nlohmann search paths differ: %d '%s' '%s' vs %d '%s' '%s'\n",
                 fast.http_status, fast.result.substr(0, 200).c_str(), fast.error.c_str(),
                 slow.http_status, slow.result.substr(0, 200).c_str(), slow.error.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  fathom::server::ApiRequest req;
  req.body = input;
  req.params = {"c"};
  switch (selector % 8) {
    case 0: {
      auto filter = fathom::Filter::ParseText(input);
      if (filter.ok()) {
        (void)filter->Matches(SamplePayload());
        (void)filter->CheckTypes({{"label", fathom::FieldType::kInteger}});
      }
      break;
    }
    case 1: {
      auto filter = fathom::Filter::ParseJson(input);
      if (filter.ok()) (void)filter->Matches(SamplePayload());
      break;
    }
    case 2: (void)SharedApi().UpsertPoints(req); break;
    case 3: SearchBothWays(req, /*batch=*/false); break;
    case 4: SearchBothWays(req, /*batch=*/true); break;
    case 5: (void)SharedApi().DeletePoints(req); break;
    case 6: (void)SharedApi().CountPoints(req); break;
    case 7: (void)SharedApi().GetPoints(req); break;
  }
  return 0;
}
