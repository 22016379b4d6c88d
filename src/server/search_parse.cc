// The simdjson fast path for search and batch-search bodies (Api::FastParseSearches).
//
// Parsing a batch of 64 searches with nlohmann-json (a DOM of ~50,000 numbers, built and freed per
// request) cost about a fifth of the server's CPU. Here simdjson's DOM parser (fully validating:
// UTF-8, structure, strings, numbers) reads the body into a reused per-thread tape and the vectors
// go straight into the query buffers.
//
// The contract is "same answer as the nlohmann path, or decline": this path accepts only bodies
// that path would accept, and produces the same ParsedSearch values from them. Anything else —
// malformed JSON, an unknown or duplicate field, a wrong type, a value outside the float32 range,
// a filter object, a failed check — returns false without a message, and the caller parses the
// body again with ParseBody and ParseSearch, which say precisely what is wrong. The checks against
// the collection and the limits are Api's own (ResolveSearchVector, CheckSearchLimit,
// CheckSearchEf, ParseFilter), shared with ParseSearch. Where the two parsers read the same text
// differently, this path declines:
//   - "-0": nlohmann reads a signed integer (which GetUint refuses as negative), simdjson reads
//     the integer 0. Integer fields that read as 0 decline if the body holds a "-0" integer.
//   - duplicate keys: nlohmann keeps the last, simdjson's lookups the first.
//   - integers beyond 64 bits: nlohmann reads a double, simdjson refuses them.
//   - a UTF-8 byte-order mark or a trailing NUL: nlohmann skips them, simdjson refuses.
//   - filter objects: their library form is nlohmann's dump of them (sorted keys, its number
//     format), so they take the nlohmann path.
#include <cmath>
#include <cstring>
#include <limits>

#include <simdjson.h>

#include "server/api.h"

namespace fathom::server {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// The parser's buffers grow to the largest body seen; past this they are freed after use, so one
// huge request does not pin its memory in every server thread.
constexpr size_t kKeptParserCapacity = 16 << 20;

// Field names of one search; a bit each, to catch duplicates.
enum SearchField : unsigned {
  kVector = 1u << 0,
  kLimit = 1u << 1,
  kOffset = 1u << 2,
  kParams = 1u << 3,
  kFilter = 1u << 4,
  kWithPayload = 1u << 5,
  kWithVector = 1u << 6,
  kWithVectors = 1u << 7,
};

unsigned SearchFieldBit(std::string_view key) {
  if (key == "vector") return kVector;
  if (key == "limit") return kLimit;
  if (key == "offset") return kOffset;
  if (key == "params") return kParams;
  if (key == "filter") return kFilter;
  if (key == "with_payload") return kWithPayload;
  if (key == "with_vector") return kWithVector;
  if (key == "with_vectors") return kWithVectors;
  return 0;
}

// Whether `text` holds the JSON integer token "-0" (a '-', a '0', then neither a digit, '.', 'e'
// nor 'E'). Conservative: it also matches inside strings, which only sends more bodies to the
// nlohmann path.
bool HasNegativeZeroInteger(std::string_view text) {
  for (size_t i = text.find("-0"); i != std::string_view::npos; i = text.find("-0", i + 1)) {
    if (i + 2 >= text.size()) return true;
    const char next = text[i + 2];
    if (!((next >= '0' && next <= '9') || next == '.' || next == 'e' || next == 'E')) return true;
  }
  return false;
}

}  // namespace

// A private member of Api, so it may use ParsedSearch and the shared checks.
struct Api::FastSearchReader {
  const Api& api;
  bool saw_zero_integer = false;  // an integer field read as 0: "0" or "-0"

  // GetUint: null keeps `*out`; a non-negative integer is taken; anything else declines.
  bool Uint(element e, uint64_t* out) {
    switch (e.type()) {
      case element_type::NULL_VALUE: return true;
      case element_type::INT64: {
        int64_t v = 0;
        if (e.get_int64().get(v) || v < 0) return false;
        if (v == 0) saw_zero_integer = true;
        *out = static_cast<uint64_t>(v);
        return true;
      }
      case element_type::UINT64: return !e.get_uint64().get(*out);
      default: return false;
    }
  }

  // GetBool: null keeps `*out`.
  static bool Bool(element e, bool* out) {
    if (e.is_null()) return true;
    return e.type() == element_type::BOOL && !e.get_bool().get(*out);
  }

  // ParseVector: an array of numbers, each read as a double and narrowed as nlohmann's value
  // would be, or a base64 string (decoded by the same DecodeBase64Floats).
  static bool Vector(element e, std::vector<float>* out) {
    out->clear();
    if (e.type() == element_type::STRING) {
      std::string_view text;
      return !e.get_string().get(text) && DecodeBase64Floats(text, "", out).ok();
    }
    simdjson::dom::array values;
    if (e.get_array().get(values)) return false;
    out->reserve(values.size());
    for (element x : values) {
      double d;
      switch (x.type()) {
        case element_type::INT64: d = static_cast<double>(x.get_int64().value_unsafe()); break;
        case element_type::UINT64: d = static_cast<double>(x.get_uint64().value_unsafe()); break;
        case element_type::DOUBLE: d = x.get_double().value_unsafe(); break;
        default: return false;
      }
      if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) return false;
      out->push_back(static_cast<float>(d));
    }
    return true;
  }

  // One search object, as Api::ParseSearch reads it.
  bool Search(element e, const CollectionSpec& spec, ParsedSearch* out) {
    simdjson::dom::object object;
    if (e.get_object().get(object)) return false;
    unsigned seen = 0;
    element vector, limit, offset, params, filter, with_payload, with_vector, with_vectors;
    for (auto field : object) {
      const unsigned bit = SearchFieldBit(field.key);
      if (bit == 0 || (seen & bit) != 0) return false;
      seen |= bit;
      switch (bit) {
        case kVector: vector = field.value; break;
        case kLimit: limit = field.value; break;
        case kOffset: offset = field.value; break;
        case kParams: params = field.value; break;
        case kFilter: filter = field.value; break;
        case kWithPayload: with_payload = field.value; break;
        case kWithVector: with_vector = field.value; break;
        case kWithVectors: with_vectors = field.value; break;
      }
    }
    if ((seen & kVector) == 0 || vector.is_null()) return false;
    const bool named = vector.type() == element_type::OBJECT;
    if (named) {
      simdjson::dom::object v;
      if (vector.get_object().get(v)) return false;
      bool has_name = false, has_values = false;
      element values;
      for (auto field : v) {
        if (field.key == "name" && !has_name) {
          std::string_view name;
          if (field.value.get_string().get(name)) return false;  // also null: name is required
          out->vector.assign(name);
          has_name = true;
        } else if (field.key == "vector" && !has_values) {
          values = field.value;
          has_values = true;
        } else {
          return false;
        }
      }
      if (!has_name || !has_values || !Vector(values, &out->query)) return false;
    } else if (!Vector(vector, &out->query)) {
      return false;
    }
    if (!api.ResolveSearchVector(spec, "", named, out).ok()) return false;

    uint64_t limit_value = 10, offset_value = 0;
    if ((seen & kLimit) && !Uint(limit, &limit_value)) return false;
    if ((seen & kOffset) && !Uint(offset, &offset_value)) return false;
    if (!api.CheckSearchLimit(limit_value, offset_value, "").ok()) return false;
    out->limit = limit_value;
    out->offset = offset_value;

    if ((seen & kParams) && !params.is_null()) {
      simdjson::dom::object p;
      if (params.get_object().get(p)) return false;
      uint64_t ef = 0, hnsw_ef = 0;
      bool has_ef = false, has_hnsw_ef = false;
      for (auto field : p) {
        if (field.key == "ef" && !has_ef) {
          has_ef = true;
          if (!Uint(field.value, &ef)) return false;
        } else if (field.key == "hnsw_ef" && !has_hnsw_ef) {
          has_hnsw_ef = true;
          if (!Uint(field.value, &hnsw_ef)) return false;
        } else {
          return false;
        }
      }
      ef = std::max(ef, hnsw_ef);
      if (!api.CheckSearchEf(ef, "").ok()) return false;
      out->ef = static_cast<int>(ef);
    }

    if (seen & kFilter) {
      if (filter.type() == element_type::STRING) {
        std::string_view text;
        if (filter.get_string().get(text)) return false;
        auto parsed = ParseFilter(Json(std::string(text)), api.limits_.max_filter_depth,
                                  api.limits_.max_filter_text);
        if (!parsed.ok()) return false;
        out->filter = std::move(parsed).value();
      } else if (!filter.is_null()) {
        return false;  // an object (nlohmann's dump is its library form) or a wrong type
      }
    }

    bool a = false, b = false;
    if ((seen & kWithPayload) && !Bool(with_payload, &out->with_payload)) return false;
    if ((seen & kWithVector) && !Bool(with_vector, &a)) return false;
    if ((seen & kWithVectors) && !Bool(with_vectors, &b)) return false;
    out->with_vector = a || b;
    return true;
  }
};

bool Api::FastParseSearches(std::string_view body, const CollectionSpec& spec, bool batch,
                            std::vector<ParsedSearch>* out) const {
  // The deepest body taken here, {"searches":[{"vector":{"vector":[...]}}]}, nests 5 levels;
  // ParseBody refuses deeper bodies before anything else, so a smaller limit must go its way.
  constexpr size_t kDeepestAccepted = 5;
  if (limits_.max_json_depth < kDeepestAccepted) return false;

  thread_local simdjson::dom::parser parser;
  struct Trim {
    ~Trim() {
      if (parser.capacity() > kKeptParserCapacity) parser = simdjson::dom::parser();
    }
  } trim;
  element root;
  if (parser.parse(body.data(), body.size()).get(root)) return false;

  FastSearchReader reader{*this};
  auto search = [&](element e) {
    out->emplace_back();
    return reader.Search(e, spec, &out->back());
  };
  out->clear();
  if (batch) {
    simdjson::dom::object object;
    if (root.get_object().get(object)) return false;
    bool has_searches = false;
    simdjson::dom::array searches;
    for (auto field : object) {
      if (field.key != "searches" || has_searches) return false;
      has_searches = true;
      if (field.value.get_array().get(searches)) return false;
    }
    if (!has_searches) return false;
    for (element e : searches) {
      if (out->size() >= limits_.max_batch || !search(e)) return false;
    }
  } else if (!search(root)) {
    return false;
  }
  return !reader.saw_zero_integer || !HasNegativeZeroInteger(body);
}

}  // namespace fathom::server
