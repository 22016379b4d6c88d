// The embedded OpenAPI document: it is docs/openapi.json byte for byte, it parses, and it
// describes exactly the routes the server's router answers (no more, no fewer).
#include "server/openapi.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "server/server.h"

namespace fathom::server {
namespace {

using Json = nlohmann::json;

TEST(OpenApiTest, EmbeddedDocumentIsTheFile) {
  std::ifstream in(FATHOM_OPENAPI_JSON_PATH, std::ios::binary);
  ASSERT_TRUE(in) << "cannot read " << FATHOM_OPENAPI_JSON_PATH;
  std::ostringstream file;
  file << in.rdbuf();
  EXPECT_EQ(OpenApiJson(), file.str()) << "rebuild: the binary embeds an older " << FATHOM_OPENAPI_JSON_PATH;
}

TEST(OpenApiTest, DescribesEveryRouteAndNoOther) {
  Json doc = Json::parse(OpenApiJson(), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded()) << "docs/openapi.json is not valid JSON";
  ASSERT_TRUE(doc.contains("openapi"));
  EXPECT_EQ(doc["openapi"].get<std::string>().rfind("3.", 0), 0u);
  ASSERT_TRUE(doc["paths"].is_object());

  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& [path, operations] : doc["paths"].items()) {
    for (const auto& [method, operation] : operations.items()) {
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.emplace(upper, path);
    }
  }
  HttpServer server(ServerOptions{}, nullptr);
  std::set<std::pair<std::string, std::string>> routed;
  for (const auto& route : server.Routes()) routed.insert(route);
  ASSERT_FALSE(routed.empty());
  for (const auto& [method, path] : routed) {
    EXPECT_TRUE(documented.count({method, path})) << method << " " << path << " is not documented";
  }
  for (const auto& [method, path] : documented) {
    EXPECT_TRUE(routed.count({method, path})) << method << " " << path << " is documented but not routed";
  }
}

// Every "$ref": "#/a/b/c" points at a node that exists.
void CheckRefs(const Json& root, const Json& node, const std::string& where) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if (key == "$ref" && value.is_string()) {
        const std::string ref = value.get<std::string>();
        ASSERT_EQ(ref.rfind("#/", 0), 0u) << where << ": external $ref " << ref;
        EXPECT_TRUE(root.contains(Json::json_pointer(ref.substr(1)))) << where << ": dangling $ref " << ref;
      } else {
        CheckRefs(root, value, where + "/" + key);
      }
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) CheckRefs(root, node[i], where + "/" + std::to_string(i));
  }
}

TEST(OpenApiTest, EveryRefResolves) {
  Json doc = Json::parse(OpenApiJson(), nullptr, false);
  ASSERT_FALSE(doc.is_discarded());
  CheckRefs(doc, doc, "");
}

}  // namespace
}  // namespace fathom::server
