#include "server/router.h"

#include <gtest/gtest.h>

#include "server/auth.h"

namespace fathom::server {
namespace {

Router MakeRouter() {
  Router r;
  r.Add("GET", "/collections", Access::kRead, 0);
  r.Add("GET", "/collections/{name}", Access::kRead, 1);
  r.Add("PUT", "/collections/{name}", Access::kWrite, 2);
  r.Add("PUT", "/collections/{name}/snapshots/recover", Access::kWrite, 3);
  r.Add("DELETE", "/collections/{name}/snapshots/{snapshot}", Access::kWrite, 4);
  return r;
}

TEST(RouterTest, MatchesTemplatesAndCapturesParameters) {
  Router r = MakeRouter();
  RouteMatch m = r.Match("GET", "/collections/items");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, 1);
  EXPECT_EQ(m.params, std::vector<std::string>{"items"});
  EXPECT_EQ(r.Match("GET", "/collections/").route->id, 0);
  EXPECT_EQ(r.Match("HEAD", "/collections").route->id, 0);
  m = r.Match("PUT", "/collections/a/snapshots/recover");
  EXPECT_EQ(m.route->id, 3);
  m = r.Match("DELETE", "/collections/a/snapshots/s1");
  EXPECT_EQ(m.route->id, 4);
  EXPECT_EQ(m.params, (std::vector<std::string>{"a", "s1"}));
}

TEST(RouterTest, TellsNotFoundFromWrongMethodFromTraversal) {
  Router r = MakeRouter();
  EXPECT_EQ(r.Match("GET", "/nope").error_status, 404);
  EXPECT_EQ(r.Match("GET", "/collections//x").error_status, 404);
  RouteMatch m = r.Match("POST", "/collections/items");
  EXPECT_EQ(m.error_status, 405);
  EXPECT_EQ(m.allow, "GET, PUT");
  for (const char* path : {"/collections/..", "/collections/../etc", "/collections/a/snapshots/.",
                           "/../collections"}) {
    EXPECT_EQ(r.Match("GET", path).error_status, 400) << path;
  }
}

TEST(AuthTest, KeysAndAccess) {
  ApiKeys keys{"rw", "ro"};
  EXPECT_EQ(Authorize(keys, "", "", Access::kPublic).status, 0);
  EXPECT_EQ(Authorize(keys, "", "", Access::kRead).status, 401);
  EXPECT_EQ(Authorize(keys, "nope", "", Access::kRead).status, 401);
  EXPECT_EQ(Authorize(keys, "rw", "", Access::kWrite).status, 0);
  EXPECT_EQ(Authorize(keys, "", "Bearer rw", Access::kWrite).status, 0);
  EXPECT_EQ(Authorize(keys, "", "Basic rw", Access::kWrite).status, 401);
  EXPECT_EQ(Authorize(keys, "ro", "", Access::kRead).status, 0);
  EXPECT_EQ(Authorize(keys, "ro", "", Access::kWrite).status, 403);
  // Which key it was (GET /access; the console hides writes for the read-only one).
  EXPECT_TRUE(Authorize(keys, "ro", "", Access::kRead).read_only);
  EXPECT_TRUE(Authorize(keys, "", "Bearer ro", Access::kRead).read_only);
  EXPECT_FALSE(Authorize(keys, "rw", "", Access::kRead).read_only);
  EXPECT_FALSE(Authorize(ApiKeys{}, "", "", Access::kRead).read_only);
  EXPECT_EQ(Authorize(ApiKeys{}, "", "", Access::kWrite).status, 0);
  EXPECT_EQ(Authorize(ApiKeys{"", "ro"}, "ro", "", Access::kWrite).status, 403);
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secreT", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret-", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secre", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("", "secret"));
}

}  // namespace
}  // namespace fathom::server
