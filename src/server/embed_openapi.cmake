# Build step (cmake -P): embeds docs/openapi.json into the server as a C++ raw string literal, so
# the document is edited as plain JSON and GET /openapi.json still needs no file at run time.
#   cmake -DINPUT=docs/openapi.json -DOUTPUT=openapi_document.cc -P embed_openapi.cmake
# Fails the build if the file is not valid JSON or contains the literal's closing delimiter.
if(NOT INPUT OR NOT OUTPUT)
  message(FATAL_ERROR "usage: cmake -DINPUT=openapi.json -DOUTPUT=file.cc -P embed_openapi.cmake")
endif()
file(READ "${INPUT}" document)
string(JSON openapi_version ERROR_VARIABLE json_error GET "${document}" openapi)
if(json_error)
  message(FATAL_ERROR "${INPUT} is not a valid OpenAPI document: ${json_error}")
endif()
set(delimiter "fathom_openapi")
string(FIND "${document}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains ')${delimiter}\"', which would end the raw string early")
endif()
# Written to a temporary name and copied only if it changed, so an unchanged document does not
# recompile the server.
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by src/server/embed_openapi.cmake: edit the JSON, not this file.\n"
  "#include \"server/openapi.h\"\n\n"
  "namespace fathom::server {\n\n"
  "const std::string& OpenApiJson() {\n"
  "  static const std::string kDocument = R\"${delimiter}(${document})${delimiter}\";\n"
  "  return kDocument;\n"
  "}\n\n"
  "}  // namespace fathom::server\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
