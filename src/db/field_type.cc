#include "db/field_type.h"

namespace fathom {

const char* FieldTypeName(FieldType type) {
  switch (type) {
    case FieldType::kKeyword: return "keyword";
    case FieldType::kInteger: return "integer";
    case FieldType::kFloat: return "float";
    case FieldType::kBool: return "bool";
    case FieldType::kDatetime: return "datetime";
  }
  return "unknown";
}

Result<FieldType> ParseFieldType(std::string_view name) {
  if (name == "keyword") return FieldType::kKeyword;
  if (name == "integer") return FieldType::kInteger;
  if (name == "float") return FieldType::kFloat;
  if (name == "bool") return FieldType::kBool;
  if (name == "datetime") return FieldType::kDatetime;
  return Status::InvalidArgument("unknown field type '" + std::string(name) +
                                 "': expected keyword, integer, float, bool or datetime");
}

}  // namespace fathom
