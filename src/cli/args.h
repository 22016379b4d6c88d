// Parsers for the values people type on the `fathom` command line (ids, vectors, collection
// specs) and the small formatting helpers shared by the subcommands.
//
// Everything here is a pure function of its arguments: no database, no I/O, safe from any
// thread. Errors are InvalidArgument with a message that quotes what was typed, so the CLI can
// print it unchanged after "error: ".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/database.h"
#include "fathom/status.h"

namespace fathom::cli {

// The process exit code for a failed Status: 1 when the request itself was wrong (usage, invalid
// input, a name that already exists, an unsupported option), 2 when something named does not
// exist, 3 when the system failed (I/O, corruption, resources, internal errors).
int ExitCodeFor(const Status& status);

// An id as typed: all digits is an integer id (an error if it does not fit in 64 bits), anything
// else a string id. `force_string` (--string-id) keeps "42" a string, for collections whose
// string ids happen to be numeric.
Result<PointId> ParsePointId(std::string_view text, bool force_string = false);

// A vector typed as "0.1,0.2,0.3" (spaces and surrounding [ ] allowed). Every component must be
// a finite float32.
Result<std::vector<float>> ParseFloatList(std::string_view text);

// "image:512", "image:512:cosine" or "image:512:cosine:HNSW32,SQ8" (the index string may itself
// contain commas and '='). Metric defaults to l2 and index to HNSW32, as for --dim.
Result<VectorSpec> ParseVectorSpec(std::string_view text);

// "label:integer": an indexed payload field and its type (keyword, integer, float, bool).
Result<std::pair<std::string, FieldType>> ParseFieldSpec(std::string_view text);

// The vector spec named exactly `name` ("" is the unnamed vector). Errors list the names that
// exist.
Result<const VectorSpec*> FindVector(const CollectionSpec& spec, const std::string& name);

// The vector a command works on: `name` when given, else the collection's only vector (named or
// not). Errors list the names that exist.
Result<const VectorSpec*> ResolveVector(const CollectionSpec& spec, const std::string& name);

// Ids for display: integers as digits; strings as-is, quoted only when they would otherwise read
// as an integer ("\"42\"") so the output can be typed back with the same meaning.
std::string FormatPointId(const PointId& id);

// "1.5 KiB", "12.0 MiB": memory sizes for people.
std::string FormatBytes(uint64_t bytes);

// "%.6g" without locale surprises; distances and vector components in tables.
std::string FormatFloat(double value);

// "'image'" for a named vector, "the unnamed vector" for "" (error messages).
std::string DescribeVector(const std::string& name);

}  // namespace fathom::cli
