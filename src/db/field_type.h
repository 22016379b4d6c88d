// FieldType: the declared type of an indexed payload field ("keyword", "integer", "float",
// "bool", "datetime": RFC 3339 strings, indexed as microseconds since 1970 UTC). It is part of the public collection spec, so it is declared in fathom/database.h
// (FieldTypeName and ParseFieldType are defined in field_type.cc); this header keeps the db
// layer's includes short.
#pragma once

#include "fathom/database.h"
