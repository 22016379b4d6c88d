// Binary encodings of what the db layer stores in RocksDB (docs/format/database.md): record
// values, record/oplog keys, point-id map keys, and collection specs (JSON).
// Pure functions; safe from any thread.
#pragma once

#include <map>
#include <string>
#include <vector>
#include <string_view>

#include "fathom/database.h"

namespace fathom {

// records CF value: the record's id and vectors with `payload` (canonical JSON text), which
// replaces record.payload so the caller need not copy the vectors to normalise it. Since
// database format 2 the vectors go to the vectors CF (EncodeVectors) and the records CF value
// holds none (with_vectors = false); format-1 values with inline vectors are still read.
std::string EncodeRecord(const Record& record, std::string_view payload, bool with_vectors = true);
// `inline_vectors` (optional) says whether the value held vectors.
Status DecodeRecord(std::string_view value, Record* record, bool with_vectors = true,
                    bool* inline_vectors = nullptr);
// vectors CF value: the record's named vectors.
std::string EncodeVectors(const std::map<std::string, std::vector<float>>& vectors);
Status DecodeVectors(std::string_view value, std::map<std::string, std::vector<float>>* vectors);

// A PointId as a hash-map key: "\0" + 8 bytes big-endian, or "\1" + string bytes.
std::string IdKey(const PointId& id);

std::string RecordKey(uint32_t collection, uint32_t slot);
std::string OplogKey(uint32_t collection, uint64_t seq);
std::string CollectionPrefix(uint32_t collection);

std::string EncodeSpec(const CollectionSpec& spec, uint32_t collection_id);
Status DecodeSpec(std::string_view json, CollectionSpec* spec, uint32_t* collection_id);

// Validates a collection name: 1..64 of [A-Za-z0-9_.-], not "." or "..".
Status ValidateCollectionName(const std::string& name);
// A collection's metadata: a JSON object of at most CollectionSpec::kMaxMetadataBytes.
Status ValidateCollectionMetadata(const std::string& metadata);

}  // namespace fathom
