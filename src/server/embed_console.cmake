# Build step (cmake -P): embeds the web console's files (console/*) into the server as C++ raw
# string literals, so `fathom serve` serves /console with no files at run time (offline, one
# binary). The console is plain HTML, CSS and JavaScript: nothing to bundle.
#   cmake -DINPUT_DIR=console -DOUTPUT=console_assets.cc -P embed_console.cmake
# Fails the build on a file type it does not know or a file containing the literal's delimiter.
if(NOT INPUT_DIR OR NOT OUTPUT)
  message(FATAL_ERROR "usage: cmake -DINPUT_DIR=console -DOUTPUT=file.cc -P embed_console.cmake")
endif()
set(delimiter "fathom_console")
file(GLOB names RELATIVE "${INPUT_DIR}" "${INPUT_DIR}/*")
list(SORT names)
set(table "")
foreach(name IN LISTS names)
  if(IS_DIRECTORY "${INPUT_DIR}/${name}")
    continue()
  endif()
  if(name MATCHES "\\.html$")
    set(type "text/html; charset=utf-8")
  elseif(name MATCHES "\\.js$")
    set(type "text/javascript; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(type "text/css; charset=utf-8")
  elseif(name MATCHES "\\.svg$")
    set(type "image/svg+xml")
  elseif(name MATCHES "\\.md$")
    continue()  # notes for developers, not served
  else()
    message(FATAL_ERROR "${INPUT_DIR}/${name}: no content type known for this file (add it here)")
  endif()
  if(NOT name MATCHES "^[A-Za-z0-9._-]+$")
    message(FATAL_ERROR "${INPUT_DIR}/${name}: console file names are letters, digits, '.', '_', '-'")
  endif()
  file(READ "${INPUT_DIR}/${name}" content)
  string(FIND "${content}" ")${delimiter}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${INPUT_DIR}/${name} contains ')${delimiter}\"', which would end the raw string early")
  endif()
  string(APPEND table "    {\"${name}\", \"${type}\", R\"${delimiter}(${content})${delimiter}\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT_DIR} by src/server/embed_console.cmake: edit those files, not this one.\n"
  "#include \"server/console.h\"\n\n"
  "namespace fathom::server {\n\n"
  "namespace {\n"
  "const ConsoleAsset kAssets[] = {\n"
  "${table}"
  "};\n"
  "}  // namespace\n\n"
  "const ConsoleAsset* FindConsoleAsset(std::string_view name) {\n"
  "  for (const ConsoleAsset& asset : kAssets) {\n"
  "    if (asset.name == name) return &asset;\n"
  "  }\n"
  "  return nullptr;\n"
  "}\n\n"
  "}  // namespace fathom::server\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
