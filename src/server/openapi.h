// The OpenAPI 3 description of the REST API (GET /openapi.json).
#pragma once

#include <string>

namespace fathom::server {

const std::string& OpenApiJson();

}  // namespace fathom::server
