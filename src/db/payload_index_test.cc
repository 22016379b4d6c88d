#include "db/payload_index.h"
#include "db/payload_texts.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fathom {
namespace {

using json = nlohmann::json;

std::vector<uint32_t> Slots(const SlotBitmap& bitmap) {
  std::vector<uint32_t> out;
  for (const uint32_t slot : bitmap) out.push_back(slot);
  return out;
}

SlotBitmap Range(uint32_t n) {
  SlotBitmap all;
  all.addRange(0, n);
  return all;
}

// A small collection: payloads by slot, an index over some of their fields.
class Fixture {
 public:
  explicit Fixture(std::map<std::string, FieldType> fields)
      : index_(PayloadIndex::Create(std::move(fields)).value()) {}

  void Add(const char* payload) {
    payloads_.push_back(json::parse(payload));
    index_.Insert(static_cast<uint32_t>(payloads_.size() - 1), payloads_.back());
  }

  PayloadLookup Lookup() const {
    return [this](uint32_t slot) { return &payloads_[slot]; };
  }

  std::vector<uint32_t> Eval(std::string_view text, EvalStats* stats = nullptr,
                             bool with_lookup = true) {
    Result<Filter> filter = Filter::ParseText(text);
    EXPECT_TRUE(filter.ok()) << filter.status().ToString();
    return filter.ok() ? Checked(*filter, text, stats, with_lookup) : std::vector<uint32_t>{};
  }

  // The same for a filter in Qdrant's JSON form.
  std::vector<uint32_t> EvalJson(std::string_view text, EvalStats* stats = nullptr) {
    Result<Filter> filter = Filter::ParseJson(text);
    EXPECT_TRUE(filter.ok()) << filter.status().ToString();
    return filter.ok() ? Checked(*filter, text, stats, true) : std::vector<uint32_t>{};
  }

  PayloadIndex& index() { return index_; }
  std::vector<json>& payloads() { return payloads_; }

 private:
  // The index's answer, checked against the brute-force one (whatever path it took).
  std::vector<uint32_t> Checked(const Filter& filter, std::string_view text, EvalStats* stats, bool with_lookup) {
    Result<SlotBitmap> result = index_.Evaluate(filter, Range(static_cast<uint32_t>(payloads_.size())),
                                                with_lookup ? Lookup() : PayloadLookup(), stats);
    EXPECT_TRUE(result.ok()) << text << ": " << result.status().ToString();
    if (!result.ok()) return {};
    std::vector<uint32_t> expected;
    for (uint32_t slot = 0; slot < payloads_.size(); ++slot) {
      if (filter.Matches(payloads_[slot])) expected.push_back(slot);
    }
    EXPECT_EQ(Slots(*result), expected) << text;
    return Slots(*result);
  }

  PayloadIndex index_;
  std::vector<json> payloads_;
};

using Slotlist = std::vector<uint32_t>;

Fixture Shop() {
  Fixture f({{"cat", FieldType::kKeyword},
             {"price", FieldType::kInteger},
             {"score", FieldType::kFloat},
             {"sold", FieldType::kBool}});
  f.Add(R"({"cat":"shoe","price":20,"score":4.5,"sold":false,"color":"red"})");  // 0
  f.Add(R"({"cat":"shoe","price":60,"score":3,"sold":true,"color":"blue"})");    // 1
  f.Add(R"({"cat":"boot","price":45,"score":2.25,"color":"red"})");              // 2
  f.Add(R"({"cat":["shoe","sale"],"price":[10,99],"sold":false})");              // 3
  f.Add(R"({"cat":"hat","price":null,"score":null,"color":["red","green"]})");   // 4
  f.Add(R"({"cat":"shoe","price":35,"score":5,"sold":false,"color":"green"})");  // 5
  f.Add(R"({})");                                                                // 6
  f.Add(R"({"cat":"boot","price":20.0,"score":-1,"sold":true})");                // 7
  return f;
}

TEST(PayloadIndexTest, CreateRejectsInvalidFieldPaths) {
  Result<PayloadIndex> bad = PayloadIndex::Create({{"a..b", FieldType::kKeyword}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "field path 'a..b' has an empty segment");
  EXPECT_FALSE(PayloadIndex::Create({{"", FieldType::kInteger}}).ok());
  Result<PayloadIndex> good = PayloadIndex::Create({{"meta.color", FieldType::kKeyword}});
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->fields().at("meta.color"), FieldType::kKeyword);
}

TEST(PayloadIndexTest, IndexedConditionsNeedNoPayloads) {
  Fixture f = Shop();
  EvalStats stats;
  EXPECT_EQ(f.Eval(R"(cat = "shoe" AND price < 50)", &stats, /*with_lookup=*/false),
            (Slotlist{0, 3, 5}));
  EXPECT_EQ(stats.indexed_conditions, 2u);
  EXPECT_EQ(stats.scanned_conditions, 0u);
  EXPECT_EQ(stats.slots_scanned, 0u);
  EXPECT_EQ(stats.ToString(), "indexed_conditions=2 scanned_conditions=0 slots_scanned=0");

  EXPECT_EQ(f.Eval(R"(cat IN ("hat", "sale") OR sold)", nullptr, false), (Slotlist{1, 3, 4, 7}));
  EXPECT_EQ(f.Eval("price = 20", nullptr, false), (Slotlist{0, 7}));  // 20.0 files under 20
  EXPECT_EQ(f.Eval("price >= 20 AND price <= 45", nullptr, false), (Slotlist{0, 2, 3, 5, 7}));
  EXPECT_EQ(f.Eval("price > 19.5 AND price < 20.5", nullptr, false),
            (Slotlist{0, 3, 7}));  // 3: [10, 99]
  EXPECT_EQ(f.Eval("score > 2.25", nullptr, false), (Slotlist{0, 1, 5}));
  EXPECT_EQ(f.Eval("score >= 3 AND score < 5", nullptr, false), (Slotlist{0, 1}));
  EXPECT_EQ(f.Eval("score = 5", nullptr, false), (Slotlist{5}));
  EXPECT_EQ(f.Eval("price IS NULL", nullptr, false), (Slotlist{4, 6}));
  EXPECT_EQ(f.Eval("NOT sold", nullptr, false), (Slotlist{0, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.Eval(R"(cat != "shoe")", nullptr, false), (Slotlist{2, 4, 7}));
  EXPECT_EQ(f.Eval("price > 100 OR price < -100", nullptr, false), (Slotlist{}));
  EXPECT_EQ(f.Eval("price < 30 AND price > 40", nullptr, false), (Slotlist{3}));  // [10, 99]
  EXPECT_EQ(f.Eval("price < 30 AND price > 40 AND NOT cat = \"sale\"", nullptr, false),
            (Slotlist{}));
  EXPECT_EQ(f.Eval(R"(cat = 5 OR price = "20" OR sold = 1)", nullptr, false), (Slotlist{}));
}

TEST(PayloadIndexTest, AndScansOnlyTheSlotsTheIndexLeaves) {
  Fixture f = Shop();
  EvalStats stats;
  // cat = "shoe" leaves {0, 1, 3, 5}; only those payloads are read for the unindexed color.
  EXPECT_EQ(f.Eval(R"(color = "red" AND cat = "shoe")", &stats), (Slotlist{0}));
  EXPECT_EQ(stats.indexed_conditions, 1u);
  EXPECT_EQ(stats.scanned_conditions, 1u);
  EXPECT_EQ(stats.slots_scanned, 4u);

  // Two unindexed conditions of one AND are checked in one pass over the survivors.
  stats = {};
  EXPECT_EQ(f.Eval(R"(color = "red" AND cat = "shoe" AND NOT missing)", &stats), (Slotlist{0}));
  EXPECT_EQ(stats.scanned_conditions, 2u);
  EXPECT_EQ(stats.slots_scanned, 4u);

  // Nothing left, nothing read.
  stats = {};
  EXPECT_EQ(f.Eval(R"(color = "red" AND cat = "sock")", &stats), (Slotlist{}));
  EXPECT_EQ(stats.slots_scanned, 0u);
}

TEST(PayloadIndexTest, OrScansOnlyTheSlotsNotYetAccepted) {
  Fixture f = Shop();
  EvalStats stats;
  // cat = "shoe" accepts {0, 1, 3, 5}; color is read for the other four only.
  EXPECT_EQ(f.Eval(R"(color = "red" OR cat = "shoe")", &stats), (Slotlist{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(stats.indexed_conditions, 1u);
  EXPECT_EQ(stats.scanned_conditions, 1u);
  EXPECT_EQ(stats.slots_scanned, 4u);
}

TEST(PayloadIndexTest, FullyUnindexedFiltersScanEverySlotOnce) {
  Fixture f = Shop();
  EvalStats stats;
  EXPECT_EQ(f.Eval(R"(color = "red" OR (color = "green" AND NOT color = "red"))", &stats),
            (Slotlist{0, 2, 4, 5}));
  EXPECT_EQ(stats.indexed_conditions, 0u);
  EXPECT_EQ(stats.scanned_conditions, 3u);
  EXPECT_EQ(stats.slots_scanned, 8u);
}

TEST(PayloadIndexTest, ScanningWithoutALookupIsAnError) {
  Fixture f = Shop();
  Result<Filter> filter = Filter::ParseText(R"(cat = "shoe" AND color = "red")");
  ASSERT_TRUE(filter.ok());
  Result<SlotBitmap> result = f.index().Evaluate(*filter, Range(8), PayloadLookup(), nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(result.status().message(),
            "filter needs payloads (field 'color' is not indexed) but no payload lookup was given");
}

TEST(PayloadIndexTest, AMissingPayloadReadsAsEmpty) {
  Fixture f = Shop();
  Result<Filter> filter = Filter::ParseText("color IS NULL");
  ASSERT_TRUE(filter.ok());
  const PayloadLookup none = [](uint32_t) -> const json* { return nullptr; };
  Result<SlotBitmap> result = f.index().Evaluate(*filter, Range(8), none, nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->cardinality(), 8u);
}

TEST(PayloadIndexTest, ValuesOfTheWrongTypeAreDecidedFromPayloads) {
  Fixture f({{"price", FieldType::kInteger},
             {"tag", FieldType::kKeyword},
             {"ok", FieldType::kBool},
             {"w", FieldType::kFloat}});
  f.Add(R"({"price":5,"tag":"a","ok":true,"w":1})");                     // 0
  f.Add(R"({"price":"cheap","tag":7,"ok":"yes","w":"heavy"})");          // 1
  f.Add(R"({"price":7.5,"tag":["b",{"x":1}],"ok":[false,1],"w":2.5})");  // 2
  f.Add(R"({"price":[3,"x"],"tag":null,"w":9007199254740993})");         // 3: 2^53+1 is no double
  f.Add(R"({"price":18446744073709551615})");                            // 4: beyond int64
  EvalStats stats;
  EXPECT_EQ(f.Eval("price < 6", &stats, true), (Slotlist{0, 3}));
  EXPECT_EQ(stats.indexed_conditions, 1u);
  EXPECT_EQ(stats.scanned_conditions, 0u);
  EXPECT_EQ(stats.slots_scanned, 4u);  // the irregular slots 1, 2, 3, 4
  EXPECT_EQ(f.Eval("price > 7"), (Slotlist{2, 4}));
  EXPECT_EQ(f.Eval(R"(price = "cheap")"), (Slotlist{1}));
  EXPECT_EQ(f.Eval("price != 5"), (Slotlist{1, 2, 3, 4}));
  EXPECT_EQ(f.Eval("price IS NULL"), (Slotlist{}));
  EXPECT_EQ(f.Eval("tag = 7 OR tag = \"b\""), (Slotlist{1, 2}));
  EXPECT_EQ(f.Eval("tag IS NULL"), (Slotlist{3, 4}));
  EXPECT_EQ(f.Eval("ok = false"), (Slotlist{2}));
  EXPECT_EQ(f.Eval("NOT ok"), (Slotlist{1, 2, 3, 4}));
  EXPECT_EQ(f.Eval("w = 9007199254740993"), (Slotlist{3}));
  EXPECT_EQ(f.Eval("w > 9007199254740992.0"), (Slotlist{3}));
  EXPECT_EQ(f.Eval("w >= 1 AND w <= 2.5"), (Slotlist{0, 2}));

  // Without a lookup the index cannot decide those slots, and says why.
  Result<Filter> filter = Filter::ParseText("price < 6");
  Result<SlotBitmap> result = f.index().Evaluate(*filter, Range(5), PayloadLookup(), nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "field 'price' holds values of another type than integer, so filtering it needs "
            "payloads, but no payload lookup was given");
}

TEST(PayloadIndexTest, RemoveAndTombstonedSlots) {
  Fixture f = Shop();
  const size_t empty_bytes = PayloadIndex::Create(f.index().fields())->memory_bytes();
  EXPECT_GT(f.index().memory_bytes(), empty_bytes);

  f.index().Remove(0, f.payloads()[0]);
  f.index().Remove(3, f.payloads()[3]);
  Result<Filter> shoes = Filter::ParseText(R"(cat = "shoe" AND price < 50)");
  SlotBitmap live = Range(8);
  live.remove(0);
  live.remove(3);
  Result<SlotBitmap> result = f.index().Evaluate(*shoes, live, f.Lookup(), nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(Slots(*result), (Slotlist{5}));

  // A slot still indexed but not in all_slots (tombstoned, not yet removed) is never returned.
  live.remove(5);
  result = f.index().Evaluate(*shoes, live, f.Lookup(), nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->isEmpty());
  Result<Filter> negated = Filter::ParseText("NOT price IS NULL");
  result = f.index().Evaluate(*negated, live, f.Lookup(), nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(Slots(*result), (Slotlist{1, 2, 7}));

  // Replacing a record: remove the old payload, insert the new one under the same slot.
  f.index().Remove(2, f.payloads()[2]);
  f.payloads()[2] = json::parse(R"({"cat":"shoe","price":1})");
  f.index().Insert(2, f.payloads()[2]);
  result = f.index().Evaluate(*shoes, live, f.Lookup(), nullptr);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(Slots(*result), (Slotlist{2}));

  // Removing everything drops every value entry.
  for (uint32_t slot : {1u, 2u, 4u, 5u, 6u, 7u}) f.index().Remove(slot, f.payloads()[slot]);
  EXPECT_EQ(f.index().memory_bytes(), empty_bytes);
}

TEST(PayloadIndexTest, NestedAndArrayFields) {
  Fixture f({{"meta.color", FieldType::kKeyword},
             {"meta.size", FieldType::kInteger},
             {"tags", FieldType::kKeyword}});
  f.Add(R"({"meta":{"color":"red","size":3},"tags":["a","b"]})");
  f.Add(R"({"meta":[{"color":"blue","size":1},{"color":"red","size":9}],"tags":"c"})");
  f.Add(R"({"meta":{"color":["green","blue"]},"tags":[]})");
  f.Add(R"({"meta":"red","tags":[["a"]]})");
  EXPECT_EQ(f.Eval(R"(meta.color = "red")", nullptr, false), (Slotlist{0, 1}));
  EXPECT_EQ(f.Eval(R"(meta.color = "blue" AND meta.size > 5)", nullptr, false), (Slotlist{1}));
  // Two conditions may be met by different elements: slot 1 has sizes 1 and 9.
  EXPECT_EQ(f.Eval("meta.size > 2 AND meta.size < 4", nullptr, false), (Slotlist{0, 1}));
  EXPECT_EQ(f.Eval("meta.size IS NULL", nullptr, false), (Slotlist{2, 3}));
  EXPECT_EQ(f.Eval(R"(tags IN ("a", "c"))", nullptr, false), (Slotlist{0, 1}));
  EXPECT_EQ(f.Eval("tags IS NULL", nullptr, false),
            (Slotlist{2, 3}));  // [] and [["a"]] hold no value
}

TEST(PayloadIndexTest, ConstEvaluateIsSafeFromManyThreads) {
  Fixture f({{"k", FieldType::kKeyword}, {"n", FieldType::kInteger}});
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    const json p = {{"k", "k" + std::to_string(rng() % 7)},
                    {"n", static_cast<int>(rng() % 100)},
                    {"u", static_cast<int>(rng() % 3)}};
    f.payloads().push_back(p);
    f.index().Insert(static_cast<uint32_t>(i), f.payloads().back());
  }
  Result<Filter> filter = Filter::ParseText(R"((k IN ("k1", "k2") OR n > 90) AND NOT u = 1)");
  ASSERT_TRUE(filter.ok());
  const SlotBitmap all = Range(2000);
  const PayloadLookup lookup = f.Lookup();
  Result<SlotBitmap> expected = f.index().Evaluate(*filter, all, lookup, nullptr);
  ASSERT_TRUE(expected.ok());
  EXPECT_GT(expected->cardinality(), 100u);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Result<SlotBitmap> got = f.index().Evaluate(*filter, all, lookup, nullptr);
        if (!got.ok() || !(*got == *expected)) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---- hand-computed oracle ------------------------------------------------------------------
// Expected slots worked out by hand from the semantics in filter.h, independently of both the
// scan path (Filter::Matches) and the index path (Evaluate), which are each checked against it.
TEST(PayloadIndexOracleTest, HandComputedAnswers) {
  const std::vector<json> payloads = {
      json::parse(R"({"cat": "shoe", "n": 3, "price": 9.5, "sold": false, "tags": ["a", "b"], "meta": {"color": "red"}})"),
      json::parse(R"({"cat": "shirt", "n": 7, "price": 20, "sold": true, "tags": ["b"], "meta": {"color": "blue"}})"),
      json::parse(R"({"cat": "shoe", "n": -1, "price": 50.25, "tags": [], "meta": [{"color": "green"}, {"color": "red"}]})"),
      json::parse(R"({"cat": ["shoe", "boot"], "n": null, "sold": false})"),
      json::parse(R"({"n": 12, "price": "cheap", "sold": true, "meta": "red"})"),
      json::parse(R"({})"),
      json::parse(R"({"cat": "hat", "n": 3.0, "price": 0, "sold": false, "tags": ["c", "a"]})"),
      json::parse(R"({"cat": "shirt", "n": 2.5, "price": 19.99, "sold": null})"),
  };
  const std::vector<std::pair<std::string, std::vector<uint32_t>>> cases = {
      {R"(cat = "shoe")", {0, 2, 3}},
      {R"(cat != "shoe")", {1, 6, 7}},
      {"n < 5", {0, 2, 6, 7}},
      {"n = 3", {0, 6}},
      {"n >= 7", {1, 4}},
      {"n = 2.5", {7}},
      {"price < 20", {0, 6, 7}},
      {"price > 50", {2}},
      {"sold", {1, 4}},
      {"NOT sold", {0, 2, 3, 5, 6, 7}},
      {"sold = false", {0, 3, 6}},
      {R"(tags IN ("a", "c"))", {0, 6}},
      {"tags IS NULL", {2, 3, 4, 5, 7}},
      {"n IS NULL", {3, 5}},
      {R"(meta.color = "red")", {0, 2}},
      {R"(cat = "shoe" AND n < 5)", {0, 2}},
      {R"(cat = "shirt" OR price < 1)", {1, 6, 7}},
      {R"(NOT (cat = "shoe" OR sold))", {5, 6, 7}},
  };
  const std::map<std::string, std::map<std::string, FieldType>> configs = {
      {"all indexed",
       {{"cat", FieldType::kKeyword}, {"n", FieldType::kInteger}, {"price", FieldType::kFloat},
        {"sold", FieldType::kBool}, {"tags", FieldType::kKeyword}, {"meta.color", FieldType::kKeyword}}},
      {"none indexed", {}},
  };
  const SlotBitmap all = Range(static_cast<uint32_t>(payloads.size()));
  for (const auto& [name, fields] : configs) {
    PayloadIndex index = std::move(PayloadIndex::Create(fields)).value();
    for (uint32_t slot = 0; slot < payloads.size(); ++slot) index.Insert(slot, payloads[slot]);
    const PayloadLookup lookup = [&payloads](uint32_t slot) { return &payloads[slot]; };
    for (const auto& [text, want] : cases) {
      Result<Filter> filter = Filter::ParseText(text);
      ASSERT_TRUE(filter.ok()) << text << ": " << filter.status().ToString();
      Result<SlotBitmap> got = index.Evaluate(*filter, all, lookup, nullptr);
      ASSERT_TRUE(got.ok()) << text;
      std::vector<uint32_t> got_slots(got->begin(), got->end());
      EXPECT_EQ(got_slots, want) << name << ": " << text;
      std::vector<uint32_t> matched;
      for (uint32_t slot = 0; slot < payloads.size(); ++slot) {
        if (filter->Matches(payloads[slot])) matched.push_back(slot);
      }
      EXPECT_EQ(matched, want) << "Matches: " << text;
    }
  }
}

// ---- randomized: Evaluate == brute-force Matches ------------------------------------------

class RandomCorpus {
 public:
  explicit RandomCorpus(uint32_t seed) : rng_(seed) {}

  json Payload() {
    json p = json::object();
    switch (Pick(10)) {  // cat: keyword, sometimes a list, null, missing or a number
      case 0: break;
      case 1: p["cat"] = nullptr; break;
      case 2: p["cat"] = json::array({Cat(), Cat()}); break;
      case 3: p["cat"] = static_cast<int>(Pick(3)); break;
      default: p["cat"] = Cat(); break;
    }
    switch (Pick(12)) {  // n: integer, sometimes 4.0 / 2.5 / "7" / huge / a list
      case 0: break;
      case 1: p["n"] = nullptr; break;
      case 2: p["n"] = Pick(8) / 2.0; break;
      case 3: p["n"] = "7"; break;
      case 4: p["n"] = json::array({Int(), Int(), nullptr}); break;
      case 5:
        p["n"] = Pick(2) == 0 ? json(9007199254740993LL) : json(18446744073709551615ULL);
        break;
      default: p["n"] = Int(); break;
    }
    switch (Pick(10)) {  // f: float in quarters, sometimes an int, a string or a list
      case 0: break;
      case 1: p["f"] = Int(); break;
      case 2: p["f"] = "x"; break;
      case 3: p["f"] = json::array({Quarter(), Quarter()}); break;
      default: p["f"] = Quarter(); break;
    }
    switch (Pick(8)) {  // b
      case 0: break;
      case 1: p["b"] = nullptr; break;
      case 2: p["b"] = "true"; break;
      case 3: p["b"] = json::array({true, false}); break;
      default: p["b"] = Pick(2) == 0; break;
    }
    if (Pick(3) != 0) {  // tags: 0-3 tags
      json tags = json::array();
      for (uint32_t i = Pick(4); i > 0; --i) tags.push_back("t" + std::to_string(Pick(5)));
      p["tags"] = tags;
    }
    switch (Pick(5)) {  // meta: object, list of objects, or a scalar
      case 0: break;
      case 1: p["meta"] = "red"; break;
      case 2: p["meta"] = json::array({Meta(), Meta()}); break;
      default: p["meta"] = Meta(); break;
    }
    return p;
  }

  std::string FilterText(int depth) {
    if (depth == 0 || Pick(3) == 0) return ConditionText();
    switch (Pick(3)) {
      case 0: return "NOT (" + FilterText(depth - 1) + ")";
      case 1: return "(" + FilterText(depth - 1) + " AND " + FilterText(depth - 1) + ")";
      default: {
        std::string text = "(" + FilterText(depth - 1) + " OR " + FilterText(depth - 1);
        if (Pick(2) == 0) text += " OR " + FilterText(depth - 1);
        return text + ")";
      }
    }
  }

 private:
  uint32_t Pick(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
  std::string Cat() { return "c" + std::to_string(Pick(5)); }
  int Int() { return static_cast<int>(Pick(16)) - 5; }
  double Quarter() { return (static_cast<int>(Pick(48)) - 8) / 4.0; }
  json Meta() {
    json m = json::object();
    if (Pick(4) != 0) m["color"] = std::vector<std::string>{"red", "green", "blue"}[Pick(3)];
    if (Pick(4) != 0) m["size"] = static_cast<int>(Pick(6));
    return m;
  }
  std::string Op() { return std::vector<std::string>{"=", "!=", "<", "<=", ">", ">="}[Pick(6)]; }
  std::string NumberText() {
    switch (Pick(4)) {
      case 0: return std::to_string(Int()) + ".5";
      case 1: return std::to_string(Int()) + ".0";
      default: return std::to_string(Int());
    }
  }
  std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

  std::string ConditionText() {
    switch (Pick(16)) {
      case 0: return "cat = " + Quoted(Cat());
      case 1: return "cat != " + Quoted(Cat());
      case 2: return "cat IN (" + Quoted(Cat()) + ", " + Quoted(Cat()) + ", 1)";
      case 3: return Pick(2) == 0 ? "cat IS NULL" : "cat IS NOT NULL";
      case 4:
      case 5: return "n " + Op() + " " + NumberText();
      case 6: return "n IN (" + NumberText() + ", " + NumberText() + ", \"7\")";
      case 7: return Pick(2) == 0 ? "n IS NULL" : "n = 9007199254740993";
      case 8:
      case 9: return "f " + Op() + " " + (Pick(2) == 0 ? NumberText() : std::to_string(Quarter()));
      case 10:
        return std::vector<std::string>{"b",         "NOT b",     "b = false",
                                        "b != true", "b IS NULL", "b = \"true\""}[Pick(6)];
      case 11: return "tags = " + Quoted("t" + std::to_string(Pick(5)));
      case 12: return Pick(2) == 0 ? "tags IS NULL" : "tags IN (\"t1\", \"t3\")";
      case 13:
        return "meta.color " + std::string(Pick(2) == 0 ? "=" : "!=") + " " +
               Quoted(std::vector<std::string>{"red", "green", "blue"}[Pick(3)]);
      case 14: return "meta.size " + Op() + " " + std::to_string(Pick(6));
      default: return Pick(2) == 0 ? "meta.size IS NULL" : "meta IS NULL";
    }
  }

  std::mt19937 rng_;
};

TEST(PayloadIndexRandomTest, EvaluateEqualsBruteForceMatches) {
  constexpr uint32_t kSlots = 3000;
  constexpr int kFilters = 250;
  RandomCorpus corpus(20240611);
  std::vector<json> payloads;
  for (uint32_t i = 0; i < kSlots; ++i) payloads.push_back(corpus.Payload());
  std::vector<std::string> filters;
  for (int i = 0; i < kFilters; ++i) filters.push_back(corpus.FilterText(3));

  const std::map<std::string, std::map<std::string, FieldType>> configs = {
      {"all indexed",
       {{"cat", FieldType::kKeyword},
        {"n", FieldType::kInteger},
        {"f", FieldType::kFloat},
        {"b", FieldType::kBool},
        {"tags", FieldType::kKeyword},
        {"meta.color", FieldType::kKeyword},
        {"meta.size", FieldType::kInteger},
        {"meta", FieldType::kKeyword}}},
      {"none indexed", {}},
      {"some indexed",
       {{"cat", FieldType::kKeyword},
        {"f", FieldType::kFloat},
        {"meta.size", FieldType::kInteger}}},
      // Declared types that disagree with the data: nearly every value is irregular.
      {"wrong types",
       {{"cat", FieldType::kBool},
        {"n", FieldType::kFloat},
        {"f", FieldType::kInteger},
        {"b", FieldType::kKeyword},
        {"meta.color", FieldType::kInteger}}},
  };

  for (const auto& [name, fields] : configs) {
    SCOPED_TRACE(name);
    Result<PayloadIndex> created = PayloadIndex::Create(fields);
    ASSERT_TRUE(created.ok());
    PayloadIndex& index = *created;
    std::vector<json> live = payloads;
    for (uint32_t slot = 0; slot < kSlots; ++slot) index.Insert(slot, live[slot]);
    // Churn: replace every 7th record and delete every 11th, so Remove is exercised too.
    SlotBitmap all = Range(kSlots);
    RandomCorpus churn(99);
    for (uint32_t slot = 0; slot < kSlots; slot += 7) {
      index.Remove(slot, live[slot]);
      live[slot] = churn.Payload();
      index.Insert(slot, live[slot]);
    }
    for (uint32_t slot = 5; slot < kSlots; slot += 11) {
      index.Remove(slot, live[slot]);
      all.remove(slot);
    }
    // Every 13th slot is tombstoned: still indexed, but not allowed.
    for (uint32_t slot = 3; slot < kSlots; slot += 13) all.remove(slot);

    const PayloadLookup lookup = [&live](uint32_t slot) { return &live[slot]; };
    int selective = 0;
    size_t scanned_conditions = 0;
    size_t indexed_conditions = 0;
    for (const std::string& text : filters) {
      Result<Filter> filter = Filter::ParseText(text);
      ASSERT_TRUE(filter.ok()) << text << ": " << filter.status().ToString();
      EvalStats stats;
      Result<SlotBitmap> got = index.Evaluate(*filter, all, lookup, &stats);
      ASSERT_TRUE(got.ok()) << text << ": " << got.status().ToString();
      SlotBitmap expected;
      for (const uint32_t slot : all) {
        if (filter->Matches(live[slot])) expected.add(slot);
      }
      ASSERT_TRUE(*got == expected) << text << ": got " << got->cardinality() << " slots, expected "
                                    << expected.cardinality();
      if (!expected.isEmpty() && expected.cardinality() < all.cardinality()) ++selective;
      scanned_conditions += stats.scanned_conditions;
      indexed_conditions += stats.indexed_conditions;
      if (name == "all indexed") {
        EXPECT_EQ(stats.scanned_conditions, 0u) << text;
      }
      if (name == "none indexed") {
        EXPECT_EQ(stats.indexed_conditions, 0u) << text;
      }
    }
    // The filters must split the data, or equality proves little.
    EXPECT_GT(selective, kFilters / 2);
    if (name != "none indexed") {
      EXPECT_GT(indexed_conditions, 0u);
    }
    if (name != "all indexed") {
      EXPECT_GT(scanned_conditions, 0u);
    }
  }
}

// PayloadTexts (the RAM cache of payloads as text): set, replace, clear, empty payloads held as
// nothing, and memory accounted as the texts plus a fixed cost per slot and per text (a parsed
// JSON tree took ~8 bytes per byte of text).
TEST(PayloadTextsTest, HoldsTextsCompactly) {
  PayloadTexts texts;
  EXPECT_EQ(texts.Get(7), "{}");
  texts.Set(3, R"({"a":1,"s":"\u00e9\"x"})");
  texts.Set(5, "{}");
  texts.Set(9, "");
  EXPECT_EQ(texts.Get(3), R"({"a":1,"s":"\u00e9\"x"})");
  EXPECT_EQ(texts.Get(5), "{}");
  EXPECT_EQ(texts.Get(9), "{}");
  texts.Set(3, R"({"b":2})");
  EXPECT_EQ(texts.Get(3), R"({"b":2})");
  const std::string big(5000, 'x');
  const size_t slots = 1000;
  for (uint32_t s = 0; s < slots; ++s) texts.Set(s, "{\"t\":\"" + big + "\"}");
  EXPECT_LE(texts.memory_bytes(), slots * (big.size() + 8 + 64));
  EXPECT_GE(texts.memory_bytes(), slots * big.size());
  for (uint32_t s = 0; s < slots; ++s) texts.Clear(s);
  EXPECT_EQ(texts.Get(3), "{}");
  EXPECT_LE(texts.memory_bytes(), slots * 16);
}

// min_should (issue 14): at least n of the conditions, indexed or not; the index's answer is the
// brute-force one (EvalJson checks), and the indexed children need no payloads.
TEST(PayloadIndexTest, MinShouldCountsConditionsIndexedOrNot) {
  Fixture f = Shop();
  auto at_least = [&](int n) {
    return f.EvalJson(R"({"min_should": {"min_count": )" + std::to_string(n) + R"(, "conditions": [
        {"key": "cat", "match": {"value": "shoe"}}, {"key": "price", "range": {"lt": 40}},
        {"key": "color", "match": {"value": "red"}}]}})");
  };
  // shoe: 0 1 3 5; price < 40: 0 3 5 7; red: 0 2 4.
  EXPECT_EQ(at_least(0), (Slotlist{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(at_least(1), (Slotlist{0, 1, 2, 3, 4, 5, 7}));
  EXPECT_EQ(at_least(2), (Slotlist{0, 3, 5}));
  EXPECT_EQ(at_least(3), (Slotlist{0}));
  EXPECT_EQ(at_least(4), (Slotlist{}));
  EvalStats stats;
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "sold", "match": {"value": false}}], "min_should": {"min_count": 2, "conditions": [
        {"key": "cat", "match": {"value": "shoe"}}, {"key": "price", "range": {"lt": 40}}, {"key": "score", "range": {"gt": 4}}]}})", &stats),
            (Slotlist{0, 3, 5}));
  EXPECT_EQ(stats.scanned_conditions, 0u);  // every condition indexed: no payload read
  // Geo and nested conditions in the index's evaluator read payloads.
  f.Add(R"({"cat": "map", "loc": {"lon": 13.4, "lat": 52.5}, "parts": [{"a": 1, "b": 2}, {"a": 2, "b": 1}]})");  // 8
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "loc", "geo_radius": {"center": {"lon": 13.4, "lat": 52.51}, "radius": 2000}}]})"), (Slotlist{8}));
  EXPECT_EQ(f.EvalJson(R"({"must": [{"nested": {"key": "parts", "filter": {"must": [{"key": "a", "match": {"value": 2}}, {"key": "b", "match": {"value": 1}}]}}}]})"),
            (Slotlist{8}));
  EXPECT_EQ(f.EvalJson(R"({"must": [{"nested": {"key": "parts", "filter": {"must": [{"key": "a", "match": {"value": 2}}, {"key": "b", "match": {"value": 2}}]}}}]})"),
            (Slotlist{}));
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// A datetime field: RFC 3339 strings (offsets, fractions, dates alone) indexed as times, so
// datetime ranges are answered from the index (and equal a scan of the payloads, which the
// fixture checks for every filter); strings that are not times, numbers and other values are
// decided from their payloads; equality compares the text, so it reads payloads.
TEST(PayloadIndexTest, DatetimeFieldAnswersDatetimeRanges) {
  Fixture f({{"when", FieldType::kDatetime}});
  f.Add(R"({"when": "2024-05-01T10:00:00Z"})");                        // 0
  f.Add(R"({"when": "2024-05-01T12:30:00+02:00"})");                   // 1: 10:30 UTC
  f.Add(R"({"when": "2024-05-02"})");                                  // 2
  f.Add(R"({"when": ["2023-12-31T23:59:59.5Z", "2024-06-01T00:00:00Z"]})");  // 3
  f.Add(R"({"when": "soon"})");                                        // 4: not a time
  f.Add(R"({"when": 1714557600})");                                    // 5: a number
  f.Add(R"({"when": null})");                                          // 6
  f.Add(R"({})");                                                      // 7
  f.Add(R"({"when": "2024-05-01T10:15:00.250-00:00"})");               // 8
  EvalStats stats;
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "when", "range": {"gte": "2024-05-01T10:00:00Z", "lt": "2024-05-01T10:30:00Z"}}]})", &stats),
            (Slotlist{0, 8}));
  EXPECT_EQ(stats.indexed_conditions, 1u);
  EXPECT_EQ(stats.scanned_conditions, 0u);
  EXPECT_EQ(stats.slots_scanned, 2u);  // only the irregular 4 and 5, from their payloads
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "when", "range": {"gt": "2024-05-01T10:15:00.25Z", "lte": "2024-05-02"}}]})"),
            (Slotlist{1, 2}));
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "when", "range": {"lt": "2024-01-01"}}]})"), (Slotlist{3}));
  EXPECT_EQ(f.EvalJson(R"({"must_not": [{"key": "when", "range": {"gte": "2024-05-01"}}]})"), (Slotlist{4, 5, 6, 7}));
  EXPECT_EQ(f.EvalJson(R"({"must": [{"is_null": {"key": "when"}}]})"), (Slotlist{6, 7}));
  stats = EvalStats();
  EXPECT_EQ(f.EvalJson(R"({"must": [{"key": "when", "match": {"value": "2024-05-02"}}]})", &stats), (Slotlist{2}));
  EXPECT_EQ(stats.scanned_conditions, 1u);
  // Upserts are held to the type.
  EXPECT_TRUE(f.index().Validate(json::parse(R"({"when": "2024-02-29T08:00:00+05:30"})"), "point 1").ok());
  EXPECT_EQ(f.index().Validate(json::parse(R"({"when": "yesterday"})"), "point 1").message(),
            "point 1: payload field 'when' is indexed as datetime, got \"yesterday\"");
  EXPECT_EQ(f.index().Validate(json::parse(R"({"when": 5})"), "point 1").message(),
            "point 1: payload field 'when' is indexed as datetime, got 5");
}

}  // namespace
}  // namespace fathom
