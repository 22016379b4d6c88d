// Crash test: a writer process upserts and deletes batches on a database (fsync durability) and
// logs each batch before it starts and each acknowledgement after it returns; this driver kills
// it with SIGKILL at random moments, reopens the database and checks that every acknowledged
// operation is there (vector, payload, presence or absence) and that the batch in flight was
// applied entirely or not at all.
//
//   crash_test [--kills N] [--seed S] [--dir DIR] [--keep] [--power-loss] [--maintenance]
//              [--writers N]
//
// --writers N: the writer process runs N threads, each on its own ids (id % N) with its own log
// of batches, so upserts arrive concurrently and share log commits (group commit); each
// thread's batch in flight at the kill must be applied entirely or not at all.
//
// --maintenance: a workload whose background work (checkpoints written while writes go on,
// HNSW consolidation of deleted points) runs most of the time, so kills land inside it; the
// summary counts kills that interrupted a checkpoint file ("killed_mid_checkpoint").
//
// Prints "crash-test: kills=N acked=N lost=0 half_applied=0 reopen_failures=0" and exits 0 only
// when nothing was lost.
//
// --power-loss: a SIGKILL leaves the OS page cache, so every write survives it even without an
// fsync. In this mode the writer's RocksDB runs on JournalFs, which records in a journal every
// durable event: a file created, a file synced (and its size then), a directory synced. After the
// kill the driver does what a power cut would: files created since their directory was last
// synced vanish, the others lose everything past their last sync. Fathom's own files (index
// checkpoints) are always written to a temporary file, synced, renamed and the directory synced,
// so a power cut leaves them whole or leaves a *.tmp that open removes; the driver also keeps
// such a leftover to check that. Prints "power-loss: cycles=N acked=N lost=0 reopen_failures=0".
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include "fathom/database.h"

extern char** environ;

namespace fathom {
namespace {
namespace fs = std::filesystem;

constexpr const char* kCollection = "crash";

// The workload. --maintenance (inherited by the writer through FATHOM_CRASH_MODE) makes the
// background work frequent and long enough for kills to land inside it: a checkpoint every 40
// operations of a larger, wider collection, and half the batches deletes, so that HNSW
// consolidation (relinking around tombstones) runs over and over; vectors and payloads on disk.
size_t kDim = 8;
uint64_t kIdSpace = 400;
uint64_t kCheckpointEvery = 300;
uint64_t kDeleteOneIn = 4;
size_t kMaxDelete = 15;
bool kOnDisk = false;
uint64_t kWriters = 1;  // --writers (inherited by the writer through FATHOM_CRASH_WRITERS)

// Writer thread t's log of batches.
std::string LogFor(const std::string& log_path, uint64_t t) {
  return kWriters == 1 ? log_path : log_path + "." + std::to_string(t);
}

void UseMaintenanceWorkload() {
  kOnDisk = true;
  kDim = 96;
  kIdSpace = 4000;
  kCheckpointEvery = 40;
  kDeleteOneIn = 2;
  kMaxDelete = 60;
}

std::vector<float> VectorFor(uint64_t batch, uint64_t id) {
  std::vector<float> v(kDim);
  uint64_t x = batch * 1000003 + id * 7919 + 1;
  for (size_t j = 0; j < kDim; ++j) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[j] = static_cast<float>(x % 10000) / 100.0f;
  }
  return v;
}

std::string PayloadFor(uint64_t batch, uint64_t id) {
  return "{\"batch\":" + std::to_string(batch) + ",\"id\":" + std::to_string(id) + "}";
}

struct Op {
  uint64_t batch = 0;
  bool upsert = true;
  std::vector<uint64_t> ids;
};

// The model: id -> batch that last wrote it (absent = deleted / never written).
using Model = std::map<uint64_t, uint64_t>;

void Apply(const Op& op, Model* model) {
  for (uint64_t id : op.ids) {
    if (op.upsert) {
      (*model)[id] = op.batch;
    } else {
      model->erase(id);
    }
  }
}

// A batch of writer thread `t`: its ids are those with id % kWriters == t.
Op MakeOp(uint64_t batch, std::mt19937_64& rng, uint64_t t) {
  Op op;
  op.batch = batch;
  op.upsert = rng() % kDeleteOneIn != 0;
  size_t n = op.upsert ? 1 + rng() % 40 : 1 + rng() % kMaxDelete;
  std::vector<bool> used(kIdSpace, false);
  while (op.ids.size() < n) {
    uint64_t id = rng() % kIdSpace;
    id = id - id % kWriters + t;
    if (id >= kIdSpace) continue;
    if (!used[id]) {
      used[id] = true;
      op.ids.push_back(id);
    }
  }
  return op;
}

// Journal lines: "N path" created (or truncated), "S path size" synced up to size, "D dir"
// directory synced, "R from to" renamed, "X path" deleted. One write(2) per line on an O_APPEND
// descriptor, after the event happened: the journal never claims more durability than there was.
class JournalFs final : public rocksdb::FileSystemWrapper {
 public:
  JournalFs(std::shared_ptr<rocksdb::FileSystem> base, int journal)
      : rocksdb::FileSystemWrapper(std::move(base)), journal_(journal) {}
  const char* Name() const override { return "JournalFs"; }

  void Note(const std::string& line) const {
    std::string l = line + "\n";
    [[maybe_unused]] ssize_t n = ::write(journal_, l.data(), l.size());
  }

  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, const JournalFs* fs, std::string path)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), path_(std::move(path)) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      return Synced(target()->Sync(o, d), o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      return Synced(target()->Fsync(o, d), o, d);
    }

   private:
    rocksdb::IOStatus Synced(rocksdb::IOStatus s, const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) {
      if (s.ok()) fs_->Note("S " + path_ + " " + std::to_string(target()->GetFileSize(o, d)));
      return s;
    }
    const JournalFs* fs_;
    std::string path_;
  };

  class Dir final : public rocksdb::FSDirectory {
   public:
    Dir(std::unique_ptr<rocksdb::FSDirectory> d, const JournalFs* fs, std::string path)
        : dir_(std::move(d)), fs_(fs), path_(std::move(path)) {}
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      rocksdb::IOStatus s = dir_->Fsync(o, d);
      if (s.ok()) fs_->Note("D " + path_);
      return s;
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d,
                                          const rocksdb::DirFsyncOptions& options) override {
      rocksdb::IOStatus s = dir_->FsyncWithDirOptions(o, d, options);
      if (s.ok()) fs_->Note("D " + path_);
      return s;
    }
    rocksdb::IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      return dir_->Close(o, d);
    }
    size_t GetUniqueId(char* id, size_t max_size) const override { return dir_->GetUniqueId(id, max_size); }

   private:
    std::unique_ptr<rocksdb::FSDirectory> dir_;
    const JournalFs* fs_;
    std::string path_;
  };

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, &file, d);
    if (!s.ok()) return s;
    Note("N " + f);
    *r = std::make_unique<File>(std::move(file), this, f);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, &file, d);
    if (!s.ok()) return s;
    *r = std::make_unique<File>(std::move(file), this, f);
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReuseWritableFile(f, old, o, &file, d);
    if (!s.ok()) return s;
    Note("R " + old + " " + f);
    Note("N " + f);
    *r = std::make_unique<File>(std::move(file), this, f);
    return s;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r, rocksdb::IODebugContext* d) override {
    std::unique_ptr<rocksdb::FSDirectory> dir;
    rocksdb::IOStatus s = target()->NewDirectory(name, o, &dir, d);
    if (!s.ok()) return s;
    *r = std::make_unique<Dir>(std::move(dir), this, name);
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* d) override {
    rocksdb::IOStatus s = target()->RenameFile(from, to, o, d);
    if (s.ok()) Note("R " + from + " " + to);
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* d) override {
    rocksdb::IOStatus s = target()->DeleteFile(f, o, d);
    if (s.ok()) Note("X " + f);
    return s;
  }

 private:
  int journal_;
};

std::string Normal(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// What a power cut does to the files the journal describes: a file created since its directory
// was last synced disappears; any other loses what was written after its last sync. Returns the
// number of files changed.
size_t DropUnsynced(const std::string& journal_path) {
  struct State {
    bool tracked_size = false;  // created in this run: size known from syncs (0 before any)
    uint64_t synced = 0;
    bool entry_durable = true;
  };
  std::map<std::string, State> files;
  std::ifstream in(journal_path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag, a, b;
    ls >> tag >> a;
    a = Normal(a);
    if (tag == "N") {
      files[a] = State{true, 0, false};
    } else if (tag == "S") {
      uint64_t size = 0;
      ls >> size;
      State& st = files[a];
      st.tracked_size = true;
      st.synced = size;
    } else if (tag == "D") {
      for (auto& [path, st] : files) {
        if (fs::path(path).parent_path().string() == a) st.entry_durable = true;
      }
    } else if (tag == "R") {
      ls >> b;
      b = Normal(b);
      auto it = files.find(a);
      State st = it != files.end() ? it->second : State{};
      if (it != files.end()) files.erase(it);
      files[b] = st;  // renames are taken as durable (RocksDB syncs the directory after them)
    } else if (tag == "X") {
      files.erase(a);
    }
  }
  size_t changed = 0;
  std::error_code ec;
  for (const auto& [path, st] : files) {
    if (!fs::exists(path, ec)) continue;
    if (!st.entry_durable) {
      fs::remove(path, ec);
      ++changed;
    } else if (st.tracked_size && fs::file_size(path, ec) > st.synced) {
      fs::resize_file(path, st.synced, ec);
      ++changed;
    }
  }
  return changed;
}

std::unique_ptr<Database> OpenDb(const std::string& dir, uint64_t checkpoint_every,
                                 rocksdb::Env* env = nullptr) {
  DatabaseOptions options;
  options.durability = Durability::kFsync;
  options.checkpoint_every = checkpoint_every;
  options.env = env;
  auto db = Database::Open(dir, options);
  if (!db.ok()) {
    std::fprintf(stderr, "crash-test: open failed: %s\n", db.status().ToString().c_str());
    return nullptr;
  }
  return std::move(db).value();
}

int RunWriter(const std::string& dir, const std::string& log_path, uint64_t first_batch,
              uint64_t seed, const std::string& journal_path) {
  std::unique_ptr<rocksdb::Env> env;
  if (!journal_path.empty()) {
    int journal = ::open(journal_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
    if (journal < 0) return 2;
    env = rocksdb::NewCompositeEnv(std::make_shared<JournalFs>(rocksdb::FileSystem::Default(), journal));
  }
  auto db = OpenDb(dir, kCheckpointEvery, env.get());
  if (!db) return 2;
  auto c = (*db).GetCollection(kCollection);
  if (!c.ok()) {
    CollectionSpec spec;
    spec.name = kCollection;
    // --maintenance also keeps vectors and payloads on disk (their rows are rewritten by
    // recovery, and checked below by exact search among one point).
    spec.vectors.push_back({"", kDim, Metric::kL2, kOnDisk ? "HNSW8,SQ8" : "HNSW8", kOnDisk});
    spec.on_disk_payload = kOnDisk;
    spec.indexed_fields["batch"] = FieldType::kInteger;
    c = db->CreateCollection(spec);
    if (!c.ok()) return 2;
  }
  // Thread t writes batches first_batch + t, + t + kWriters, ... and logs them in its own file.
  auto write = [&](uint64_t t) {
    int log = ::open(LogFor(log_path, t).c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (log < 0) std::_Exit(2);
    std::mt19937_64 rng(seed + t);
    for (uint64_t b = first_batch + t;; b += kWriters) {
      Op op = MakeOp(b, rng, t);
      std::string line = "B " + std::to_string(b) + (op.upsert ? " U" : " D");
      for (uint64_t id : op.ids) line += " " + std::to_string(id);
      line += "\n";
      if (::write(log, line.data(), line.size()) != ssize_t(line.size())) std::_Exit(2);
      Status s;
      if (op.upsert) {
        std::vector<Record> records;
        for (uint64_t id : op.ids) {
          Record r;
          r.id = id;
          r.vectors[""] = VectorFor(b, id);
          r.payload = PayloadFor(b, id);
          records.push_back(std::move(r));
        }
        s = (*c)->Upsert(records);
      } else {
        std::vector<PointId> ids(op.ids.begin(), op.ids.end());
        s = (*c)->Delete(ids).status();
      }
      if (!s.ok()) {
        std::fprintf(stderr, "crash-test writer: batch %llu failed: %s\n", (unsigned long long)b,
                     s.ToString().c_str());
        std::_Exit(3);
      }
      std::string ack = "A " + std::to_string(b) + "\n";
      if (::write(log, ack.data(), ack.size()) != ssize_t(ack.size())) std::_Exit(2);
    }
  };
  std::vector<std::thread> threads;
  for (uint64_t t = 1; t < kWriters; ++t) threads.emplace_back(write, t);
  write(0);  // never returns: the driver kills the process
  return 2;
}

struct Log {
  std::vector<Op> resolved;   // acknowledged, or found applied after a kill
  std::optional<Op> pending;  // begun, not acknowledged, not yet resolved
  uint64_t next_batch = 0;
  size_t acked = 0;
};

Log ReadLog(const std::string& path) {
  Log log;
  std::ifstream in(path);
  std::string line;
  std::optional<Op> current;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag;
    uint64_t b;
    ls >> tag >> b;
    log.next_batch = std::max(log.next_batch, b + 1);
    if (tag == "B") {
      Op op;
      op.batch = b;
      std::string kind;
      ls >> kind;
      op.upsert = kind == "U";
      for (uint64_t id; ls >> id;) op.ids.push_back(id);
      current = op;
    } else if ((tag == "A" || tag == "R") && current && current->batch == b) {
      if (tag == "A") ++log.acked;
      log.resolved.push_back(*current);
      current.reset();
    } else if (tag == "X" && current && current->batch == b) {
      current.reset();  // killed before it was applied
    }
  }
  log.pending = current;
  return log;
}

// Compares the database with a model; returns the number of ids that differ.
size_t Differences(Collection& c, const Model& model, const std::vector<uint64_t>& ids) {
  std::vector<PointId> pids(ids.begin(), ids.end());
  auto got = c.Get(pids, true);
  if (!got.ok()) return ids.size();
  size_t diff = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = model.find(ids[i]);
    const auto& rec = (*got)[i];
    if (it == model.end()) {
      diff += rec.has_value();
      continue;
    }
    if (!rec || rec->vectors.at("") != VectorFor(it->second, ids[i]) ||
        rec->payload != PayloadFor(it->second, ids[i])) {
      ++diff;
    }
  }
  return diff;
}

std::string Self() { return fs::read_symlink("/proc/self/exe").string(); }

int RunDriver(int kills, uint64_t seed, const std::string& dir, bool keep, bool power_loss) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db_dir = dir + "/db";
  const std::string log_path = dir + "/ops.log";
  const std::string journal_path = power_loss ? dir + "/durable.journal" : "";
  size_t files_changed = 0;
  std::mt19937_64 rng(seed);
  size_t lost = 0, half_applied = 0, reopen_failures = 0, acked = 0, mid_checkpoint = 0;
  std::vector<uint64_t> all_ids(kIdSpace);
  for (uint64_t i = 0; i < kIdSpace; ++i) all_ids[i] = i;
  for (int k = 0; k < kills; ++k) {
    uint64_t next_batch = 0;
    for (uint64_t t = 0; t < kWriters; ++t) next_batch = std::max(next_batch, ReadLog(LogFor(log_path, t)).next_batch);
    next_batch += (kWriters - next_batch % kWriters) % kWriters;  // thread t's batches stay t mod kWriters
    std::string self = Self();
    std::vector<std::string> args = {self, "--writer", db_dir, log_path,
                                     std::to_string(next_batch), std::to_string(rng())};
    if (power_loss) args.push_back(journal_path);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
      std::perror("posix_spawn");
      return 2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 600));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
      std::fprintf(stderr, "crash-test: writer exited early with status %d\n", WEXITSTATUS(status));
      return 2;
    }

    if (power_loss) files_changed += DropUnsynced(journal_path);
    std::vector<Log> logs;
    Model model;
    acked = 0;
    for (uint64_t t = 0; t < kWriters; ++t) {
      logs.push_back(ReadLog(LogFor(log_path, t)));
      acked += logs.back().acked;
      for (const Op& op : logs.back().resolved) Apply(op, &model);  // (threads' ids are disjoint)
    }
    // Checkpoint files a kill interrupted (their *.tmp): evidence that kills land inside
    // checkpoints, which run in the background while writes go on.
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(db_dir + "/indexes", ec)) {
      if (e.path().extension() == ".tmp") {
        ++mid_checkpoint;
        break;
      }
    }
    auto db = OpenDb(db_dir, kCheckpointEvery);
    if (!db) {
      ++reopen_failures;
      continue;
    }
    auto c = db->GetCollection(kCollection);
    if (!c.ok()) {
      // Killed before the collection was created: nothing may have been acknowledged.
      for (const Log& log : logs) lost += log.acked;
      continue;
    }
    std::vector<uint64_t> untouched = all_ids;
    std::vector<std::string> resolutions(kWriters);
    for (uint64_t t = 0; t < kWriters; ++t) {
      const Log& log = logs[t];
      std::string& resolution = resolutions[t];
      if (!log.pending) continue;
      Model applied = model;
      Apply(*log.pending, &applied);
      size_t diff_before = Differences(**c, model, log.pending->ids);
      size_t diff_after = Differences(**c, applied, log.pending->ids);
      if (diff_after == 0) {
        model = applied;
        resolution = "R";
      } else if (diff_before == 0) {
        resolution = "X";
      } else {
        ++half_applied;
        resolution = "X";
      }
      std::erase_if(untouched, [&](uint64_t id) {
        return std::find(log.pending->ids.begin(), log.pending->ids.end(), id) !=
               log.pending->ids.end();
      });
    }
    size_t differ = Differences(**c, model, untouched);
    if (differ > 0) {
      std::fprintf(stderr, "crash-test: kill %d: %zu acknowledged points differ\n", k, differ);
      lost += differ;
    }
    if ((*c)->Count() != model.size() && half_applied == 0) {
      std::fprintf(stderr, "crash-test: kill %d: count %zu, expected %zu\n", k, (*c)->Count(),
                   model.size());
      ++lost;
    }
    // The index agrees with the records: every point is found by its own vector.
    for (size_t probe = 0; probe < 5 && !model.empty(); ++probe) {
      auto it = std::next(model.begin(), rng() % model.size());
      // Filtered to this one point, the collection scans exactly what its index holds for it,
      // so a miss means the index lost the point (not that a graph search was approximate).
      SearchRequest req;
      req.queries = VectorFor(it->second, it->first);
      req.k = 1;
      req.filter = "id = " + std::to_string(it->first);
      auto res = (*c)->Search(req);
      if (!res.ok() || (*res)[0].empty() || (*res)[0][0].distance != 0.0f) {
        std::fprintf(stderr, "crash-test: kill %d: point %llu not found by its own vector\n", k,
                     static_cast<unsigned long long>(it->first));
        ++lost;
      }
    }
    db.reset();
    for (uint64_t t = 0; t < kWriters; ++t) {
      if (!resolutions[t].empty()) {
        std::ofstream(LogFor(log_path, t), std::ios::app) << resolutions[t] << " " << logs[t].pending->batch << "\n";
      }
    }
  }
  if (power_loss) {
    std::printf("power-loss: cycles=%d acked=%zu lost=%zu half_applied=%zu reopen_failures=%zu "
                "files_cut=%zu\n",
                kills, acked, lost, half_applied, reopen_failures, files_changed);
  } else {
    std::printf("crash-test%s: kills=%d acked=%zu lost=%zu half_applied=%zu reopen_failures=%zu "
                "killed_mid_checkpoint=%zu\n",
                kCheckpointEvery == 300 ? "" : " (maintenance)", kills, acked, lost, half_applied,
                reopen_failures, mid_checkpoint);
  }
  if (!keep) fs::remove_all(dir);
  bool ok = lost == 0 && half_applied == 0 && reopen_failures == 0 && acked > 0;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fathom

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  if (const char* mode = std::getenv("FATHOM_CRASH_MODE"); mode && std::strcmp(mode, "maintenance") == 0) {
    fathom::UseMaintenanceWorkload();
  }
  if (const char* writers = std::getenv("FATHOM_CRASH_WRITERS")) fathom::kWriters = std::max(1, std::atoi(writers));
  if (argc >= 6 && std::strcmp(argv[1], "--writer") == 0) {
    return fathom::RunWriter(argv[2], argv[3], std::stoull(argv[4]), std::stoull(argv[5]),
                             argc >= 7 ? argv[6] : "");
  }
  bool power_loss = false;
  int kills = 20;
  uint64_t seed = 42;
  bool keep = false;
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("fathom_crash_" + std::to_string(::getpid()))).string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kills" && i + 1 < argc) {
      kills = std::atoi(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--power-loss") {
      power_loss = true;
    } else if (a == "--writers" && i + 1 < argc) {
      fathom::kWriters = std::max(1, std::atoi(argv[++i]));
      ::setenv("FATHOM_CRASH_WRITERS", std::to_string(fathom::kWriters).c_str(), 1);  // the writers inherit it
    } else if (a == "--maintenance") {
      ::setenv("FATHOM_CRASH_MODE", "maintenance", 1);  // the writers inherit it
      fathom::UseMaintenanceWorkload();
    } else {
      std::fprintf(stderr,
                   "usage: crash_test [--kills N] [--seed S] [--dir DIR] [--keep] [--power-loss] "
                   "[--maintenance] [--writers N]\n");
      return 2;
    }
  }
  return fathom::RunDriver(kills, seed, dir, keep, power_loss);
}
