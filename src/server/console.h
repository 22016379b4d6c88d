// The web console's files (console/ in the repository), embedded at build time by
// embed_console.cmake and served by `fathom serve` at /console.
#pragma once

#include <string_view>

namespace fathom::server {

struct ConsoleAsset {
  std::string_view name;          // "app.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
};

// The file called `name` (no directories), or null.
const ConsoleAsset* FindConsoleAsset(std::string_view name);

}  // namespace fathom::server
