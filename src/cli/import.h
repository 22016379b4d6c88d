// Import: loads points from a file into a collection in batches (`fathom import`).
//
// Formats, chosen by file name:
//   * .jsonl / .ndjson (or "-" for stdin): one JSON object per line,
//       {"id": 7, "vector": [0.1, ...], "payload": {...}}            (the unnamed/only vector)
//       {"id": "doc-7", "vectors": {"image": [...], "text": [...]}}   (named vectors)
//     "id" is a non-negative integer or a string; without one a line gets id-start + its record
//     index, as a matrix row does. "payload" is an object (default {}). Unknown keys are errors,
//     so a misspelt "paylod" is not silently dropped. Blank lines are skipped.
//   * .fvecs, .bvecs, .npy (2-D float32/float64), IDX "-ubyte[.gz]": row r gets id id-start + r
//     and an empty payload.
//
// Every line is validated before its batch is sent (JSON syntax, id type, vector names,
// dimensions, finite float32 values), and errors name the file and line ("'a.jsonl' line 3:
// vector has 3 dimensions, collection 'c' expects 4"). Batches are atomic but the import as a
// whole is not: on error the points of earlier batches stay, and the error says how many. Within a
// batch a repeated id keeps the later line, exactly as two consecutive upserts would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fathom/database.h"
#include "fathom/status.h"
#include "util/vector_file.h"

namespace fathom::cli {

struct ImportOptions {
  std::string path;
  size_t batch = 1000;       // records per Upsert: larger is faster, up to memory and latency
  uint64_t id_start = 0;     // id of row 0 (matrix files) or of an id-less first line (JSONL)
  std::string using_vector;  // which vector matrix rows and JSONL "vector" fill; "" = the only one
  bool progress = true;      // progress report on stderr
};

struct ImportSummary {
  uint64_t points = 0;  // records upserted (a JSONL id repeated in one batch counts once)
  double seconds = 0;
};

// ReadVectors / ReadIntVectors (util/vector_file.h) for files the user names on the command line.
// A truncated or foreign file there is bad input (exit 1), not database corruption (exit 3), so
// Corruption comes back as InvalidArgument with the same message.
Result<Matrix> ReadInputVectors(const std::string& path, size_t max_rows = SIZE_MAX);
Result<IntMatrix> ReadInputIds(const std::string& path, size_t max_rows = SIZE_MAX);

// Parses one JSON Lines record for `spec`. `default_id` is used when the line has no "id".
// Errors do not name the line; the caller adds it.
Result<Record> ParseJsonRecord(std::string_view line, const CollectionSpec& spec,
                               const std::string& using_vector, uint64_t default_id);

// Imports options.path into `collection`. `summary` is filled on success and on failure (the
// points that were imported before the error).
Status Import(Collection& collection, const ImportOptions& options, ImportSummary* summary);

}  // namespace fathom::cli
