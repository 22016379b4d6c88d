#include "server/snapshot_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fathom::server {
namespace {
namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class SnapshotArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fathom_archive_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A tar holding one entry `name` of `type` (and for a link, its target), made with libarchive.
  std::string MakeTar(const std::string& name, mode_t type, const std::string& link = "") {
    const std::string path = (dir_ / "made.tar").string();
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    EXPECT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, type == AE_IFREG ? 3 : 0);
    if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    if (type == AE_IFREG) archive_write_data(a, "abc", 3);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return path;
  }
  fs::path dir_;
};

// Every file comes back byte for byte, nested directories included; the archive is written
// whole or not at all (no .tmp left).
TEST_F(SnapshotArchiveTest, RoundTripsADirectory) {
  const fs::path src = dir_ / "snap";
  fs::create_directories(src / "index" / "deep");
  std::ofstream(src / "spec.json") << R"({"name": "c"})";
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 131 % 251);
  std::ofstream(src / "index" / "deep" / "v.bin", std::ios::binary) << big;
  std::ofstream(src / "empty");
  const std::string tar = (dir_ / "snap.tar").string();
  ASSERT_TRUE(WriteSnapshotArchive(src.string(), tar).ok());
  EXPECT_FALSE(fs::exists(tar + ".tmp"));
  const fs::path out = dir_ / "out";
  Status s = ExtractSnapshotArchive(tar, out.string());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadAll(out / "spec.json"), R"({"name": "c"})");
  EXPECT_EQ(ReadAll(out / "index" / "deep" / "v.bin"), big);
  EXPECT_TRUE(fs::is_regular_file(out / "empty"));
  EXPECT_TRUE(ExtractSnapshotArchive(tar, out.string()).IsAlreadyExists());
}

// What a hostile or damaged archive cannot do: write outside the directory, make links or
// devices, or pass for an archive; nothing is left behind.
TEST_F(SnapshotArchiveTest, RefusesEntriesOutsideTheSnapshotAndNonArchives) {
  struct Case {
    std::string name;
    mode_t type;
    std::string link;
  };
  for (const Case& c : {Case{"../evil", AE_IFREG, ""}, Case{"/etc/evil", AE_IFREG, ""}, Case{"a/../../evil", AE_IFREG, ""},
                        Case{"link", AE_IFLNK, "/etc/passwd"}, Case{"fifo", AE_IFIFO, ""}}) {
    SCOPED_TRACE(c.name);
    const std::string tar = MakeTar(c.name, c.type, c.link);
    const fs::path out = dir_ / "out";
    Status s = ExtractSnapshotArchive(tar, out.string());
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_EQ(s.message(), "snapshot archive entry '" + c.name + "' is not a file or directory inside the snapshot");
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(dir_ / "evil"));  // (where "../evil" from out/ would land)
    EXPECT_FALSE(fs::exists("/etc/evil"));
  }
  std::ofstream(dir_ / "not.tar") << "this is not a tar archive at all, just some text that is long enough";
  Status s = ExtractSnapshotArchive((dir_ / "not.tar").string(), (dir_ / "out").string());
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(s.message().rfind("not a snapshot archive (tar)", 0), 0u) << s.message();
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

}  // namespace
}  // namespace fathom::server
