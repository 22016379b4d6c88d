// Snapshot archives: a collection snapshot (a directory, see Collection::Snapshot) as one tar
// file, for download (GET /collections/{name}/snapshots/{snapshot}) and for recovery from a
// location (PUT /collections/{name}/snapshots/recover {"location": ...}). Written and read with
// libarchive (POSIX pax tar).
#pragma once

#include <string>

#include "fathom/status.h"

namespace fathom::server {

// Writes every regular file under `dir` (paths relative to it) into a tar archive at `archive`:
// first to `archive`.tmp, synced, then renamed, so a reader never sees half an archive.
Status WriteSnapshotArchive(const std::string& dir, const std::string& archive);

// Extracts `archive` into `dir`, which must not exist yet (it is created). Only regular files
// and directories with relative paths inside `dir` are accepted: an absolute path, a ".."
// component, a link or a device is an InvalidArgument naming the entry, and so is a file that
// is not a tar archive; nothing is left in `dir` on failure.
Status ExtractSnapshotArchive(const std::string& archive, const std::string& dir);

}  // namespace fathom::server
