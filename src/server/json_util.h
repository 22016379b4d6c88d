// JSON at the HTTP edge: parsing request bodies strictly (depth, UTF-8, unknown fields, types)
// into library values, and writing the hot-path responses (search hits) as text without building
// a JSON tree first.
//
// Every function here turns bad input into an InvalidArgument Status whose message names the
// offending field and value, never an exception or a crash; they hold no state and are safe to
// call from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fathom/database.h"
#include "fathom/status.h"

namespace fathom::server {

using Json = nlohmann::json;

// Deepest nesting of arrays and objects scanned in `text` (strings are skipped, escapes honoured).
// A linear scan with no recursion, so it is safe on hostile input and runs before the real parser.
size_t JsonNestingDepth(std::string_view text);

// Parses a request body that must be a JSON object (an empty body reads as {}). Refuses bodies
// nested deeper than `max_depth` before parsing, so later recursive code (dump, filters) is bounded.
// Malformed JSON and invalid UTF-8 are reported with their line and column.
Result<Json> ParseBody(std::string_view body, size_t max_depth);

// The JSON type name as users know it: "object", "array", "string", "number", "boolean", "null".
std::string TypeName(const Json& value);

// Fails naming the first key of `object` not in `allowed` ("unknown field 'lmit' in search
// request; expected one of: vector, limit, ..."), or if `object` is not an object at all.
Status CheckFields(const Json& object, std::string_view what,
                   std::initializer_list<std::string_view> allowed);

// Typed optional fields of an object: a missing or null field yields `fallback`.
Result<bool> GetBool(const Json& object, const char* key, bool fallback, std::string_view what);
Result<uint64_t> GetUint(const Json& object, const char* key, uint64_t fallback,
                         std::string_view what);
Result<std::string> GetString(const Json& object, const char* key, std::string_view what);

// A point id: a non-negative JSON integer or a non-empty string.
Result<PointId> ParsePointId(const Json& value, std::string_view what);
// A point id from a URL path segment: all digits is an integer id, anything else a string id.
PointId PointIdFromPath(std::string_view text);

// A float32 vector: a JSON array of numbers, or a base64 string of little-endian float32 values.
// Values outside the float32 range (1e39) are refused here: they would silently become infinite.
Status ParseVector(const Json& value, std::string_view what, std::vector<float>* out);
// Decodes standard base64 (padding optional) holding little-endian float32 values.
Status DecodeBase64Floats(std::string_view text, std::string_view what, std::vector<float>* out);
std::string EncodeBase64Floats(const float* values, size_t n);

// A filter: null (none), a JSON object (Qdrant form, at most `max_depth` levels deep), or a text
// string (at most `max_text_bytes` long and `max_depth` parentheses deep). Returns the string form
// the library takes ("" for none).
Result<std::string> ParseFilter(const Json& value, size_t max_depth, size_t max_text_bytes);

// Collection and snapshot names as they may appear in paths and on disk: 1..64 of letters,
// digits, '_', '-', '.', and not "." or "..".
Status ValidateName(std::string_view name, std::string_view what);

// Response writers for the hot path.
void AppendJsonString(std::string* out, std::string_view text);
void AppendNumber(std::string* out, double value);  // shortest round-trip; non-finite as null
void AppendPointId(std::string* out, const PointId& id);
void AppendFloats(std::string* out, const std::vector<float>& values);

// Serialises a JSON value; invalid UTF-8 (which can only come from our own messages) is replaced
// rather than thrown on.
std::string Dump(const Json& value);

}  // namespace fathom::server
