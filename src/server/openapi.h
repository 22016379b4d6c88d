// The OpenAPI 3 description of the REST API (GET /openapi.json): docs/openapi.json, written by
// hand beside the handlers in api.cc and embedded at build time (embed_openapi.cmake).
// openapi_test.cc checks that it parses and describes exactly the routes the server answers.
#pragma once

#include <string>

namespace fathom::server {

const std::string& OpenApiJson();

}  // namespace fathom::server
