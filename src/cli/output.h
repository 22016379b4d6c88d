// Output helpers shared by the subcommands: aligned text tables for people and the JSON shapes
// for scripts (ids stay integers or strings, payloads are embedded as objects, not as text).
// Pure functions; safe from any thread.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "fathom/database.h"

namespace fathom::cli {

// Prints `rows` under `headers`, columns separated by two spaces. Columns whose flag in
// `right_align` is true (numbers) are right-aligned; the last column is never padded, so long
// payloads do not drag trailing spaces.
void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows,
                const std::vector<bool>& right_align = {});

// The double whose shortest decimal form is the float's shortest form, so JSON shows 0.1 for
// 0.1f rather than 0.10000000149011612.
double FloatForJson(float value);

nlohmann::ordered_json PointIdToJson(const PointId& id);
// The payload object; a payload that is not valid JSON (never expected from the library) is
// kept as a string rather than failing the whole command.
nlohmann::ordered_json PayloadToJson(const std::string& payload);
nlohmann::ordered_json VectorsToJson(const std::map<std::string, std::vector<float>>& vectors);

// "[0.1, 0.2, 0.3, 0.4, ... (128 dims)]": enough to recognise a vector in a table.
std::string VectorPreview(const std::vector<float>& v);
// One preview per named vector ("image=[...] text=[...]"), or the bare preview for "".
std::string VectorsPreview(const std::map<std::string, std::vector<float>>& vectors);

}  // namespace fathom::cli
