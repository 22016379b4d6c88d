// The demo collection: Fashion-MNIST (Debian's dataset-fashion-mnist) loaded into a new
// database so that a first `fathom serve --demo` has something to search. Runs before the
// server starts, single-threaded caller; the database must not be open elsewhere.
#pragma once

#include <string>

#include "fathom/status.h"

namespace fathom::cli {

inline constexpr char kDemoCollection[] = "fashion-mnist";

// Creates collection "fashion-mnist" (784-d, L2, HNSW16,SQ8, payload label / label_name /
// split) in the database at `data_dir` and imports the 60k training and 10k test images,
// showing progress on stderr. Does nothing if the collection already exists.
Status LoadDemo(const std::string& data_dir);

}  // namespace fathom::cli
