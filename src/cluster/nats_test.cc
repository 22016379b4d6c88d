// KeyValue against a real nats-server (Debian's, started here with JetStream on a free port);
// skipped where none is installed.
#include "cluster/nats.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

namespace fathom::cluster {
namespace {

namespace fs = std::filesystem;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// One nats-server with JetStream in a temporary directory, stopped with the object.
class NatsServer {
 public:
  NatsServer() {
    for (const char* path : {"/usr/sbin/nats-server", "/usr/bin/nats-server"}) {
      if (access(path, X_OK) == 0) binary_ = path;
    }
    if (binary_.empty()) return;
    dir_ = fs::temp_directory_path() / ("fathom-nats-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    port_ = FreePort();
    const std::string port = std::to_string(port_), store = dir_.string(),
                      log = (dir_ / "nats.log").string();
    pid_ = fork();
    if (pid_ == 0) {
      execl(binary_.c_str(), binary_.c_str(), "-js", "-a", "127.0.0.1", "-p", port.c_str(), "-sd",
            store.c_str(), "-l", log.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~NatsServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  bool available() const { return !binary_.empty() && pid_ > 0; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_;
  fs::path dir_;
  int port_ = -1;
  pid_t pid_ = -1;
};

// A connection to a fresh server and one bucket on it (skipped without a nats-server).
class NatsKeyValueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!server_.available()) GTEST_SKIP() << "no nats-server installed";
    auto nats = Nats::Connect({server_.url()}, "nats-test", std::chrono::seconds(10));
    ASSERT_TRUE(nats.ok()) << nats.status().ToString();
    nats_ = std::move(nats).value();
    auto made = nats_->Bucket("keys_test", 1, std::chrono::seconds(0));
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    kv_ = std::move(made).value();
  }

  NatsServer server_;
  std::unique_ptr<Nats> nats_;
  std::unique_ptr<KeyValue> kv_;
};

TEST_F(NatsKeyValueTest, KeysListsWhatHasAValueAndEndsWhileOthersChange) {
  KeyValue& kv = *kv_;

  auto empty = kv.Keys();
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());

  std::set<std::string> stable;
  for (int i = 0; i < 50; ++i) {
    const std::string key = "stable" + std::to_string(i);
    ASSERT_TRUE(kv.Put(key, "v").ok());
    stable.insert(key);
  }
  ASSERT_TRUE(kv.Put("gone", "v").ok());
  ASSERT_TRUE(kv.Delete("gone").ok());
  ASSERT_TRUE(kv.Put("twice", "1").ok());
  ASSERT_TRUE(kv.Put("twice", "2").ok());
  auto listed = kv.Keys();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::set<std::string> expected = stable;
  expected.insert("twice");
  EXPECT_EQ(std::set<std::string>(listed->begin(), listed->end()), expected);

  // Keys put and deleted all the while (as drops and re-creates do): every listing ends within
  // its timeout and holds every stable key. nats.c's kvStore_Keys, waiting for a count of
  // initial values that deletions made unreachable, could wait here for ever.
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "churn" + std::to_string(i % 20);
      (void)kv.Put(key, "v");
      (void)kv.Delete(key);
    }
  });
  int complete = 0;
  for (int round = 0; round < 100; ++round) {
    const auto started = std::chrono::steady_clock::now();
    auto keys = kv.Keys(std::chrono::seconds(5));
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(7));
    if (!keys.ok()) {  // a timeout is allowed to say so; it must not hang or be partial
      EXPECT_EQ(keys.status().code(), Status::Code::kUnavailable) << keys.status().ToString();
      continue;
    }
    ++complete;
    std::set<std::string> got(keys->begin(), keys->end());
    for (const std::string& key : expected) {
      EXPECT_TRUE(got.count(key)) << "round " << round << ": '" << key << "' missing";
    }
  }
  stop.store(true);
  churn.join();
  EXPECT_GT(complete, 90);
}

TEST_F(NatsKeyValueTest, KeysEndsWhenAnEntryIsReplacedWhileListing) {
  KeyValue& kv = *kv_;
  ASSERT_TRUE(kv.Put("stable", "v").ok());
  // An entry replaced between the listing's start and its delivery: nats.c's kvStore_Keys
  // waited for ever in 8 of these 300 rounds (until any later write); Keys must end each with
  // the complete list.
  int hung = 0, wrong = 0;
  for (int round = 0; round < 300; ++round) {
    ASSERT_TRUE(kv.Put("victim", "v").ok());
    std::atomic<bool> done{false};
    std::thread lister([&] {
      auto keys = kv.Keys(std::chrono::seconds(3));
      if (!keys.ok() || std::find(keys->begin(), keys->end(), "stable") == keys->end()) ++wrong;
      done.store(true);
    });
    std::this_thread::sleep_for(std::chrono::microseconds(50 * (round % 40)));
    ASSERT_TRUE(kv.Delete("victim").ok());
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
    while (!done.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!done.load()) {
      ++hung;
      (void)kv.Put("wake", "v");  // a new entry ends the library's wait
    }
    lister.join();
  }
  EXPECT_EQ(hung, 0);
  EXPECT_EQ(wrong, 0);
}

TEST_F(NatsKeyValueTest, KeysListsKeysThatAreRewrittenWhileListing) {
  // Heartbeats: every key is put again and again (each put replaces the key's entry). A listing
  // that stopped at the first entry at or past the stream's end read before it started missed
  // the keys rewritten meanwhile (CI: "replication_factor 3 needs 3 live nodes; 2 are up").
  KeyValue& kv = *kv_;
  const std::vector<std::string> beating = {"n1", "n2", "n3"};
  for (const auto& key : beating) ASSERT_TRUE(kv.Put(key, "0").ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> beats;
  for (const auto& key : beating) {
    beats.emplace_back([&, key] {
      for (int i = 0; !stop.load(); ++i) (void)kv.Put(key, std::to_string(i));
    });
  }
  int complete = 0;
  for (int round = 0; round < 200; ++round) {
    auto keys = kv.Keys(std::chrono::seconds(5));
    if (!keys.ok()) {
      EXPECT_EQ(keys.status().code(), Status::Code::kUnavailable) << keys.status().ToString();
      continue;
    }
    ++complete;
    EXPECT_EQ(*keys, beating) << "round " << round;
  }
  stop.store(true);
  for (auto& t : beats) t.join();
  EXPECT_GT(complete, 180);
}

// A stream made with a message limit is how a shard's log ends one epoch (--log-retain): the
// publish after the last must fail with an error the writer recognises (FailedPrecondition),
// the messages stay readable, and the stream is found by its subject.
TEST_F(NatsKeyValueTest, FullStreamRefusesPublishesAndKeepsItsMessages) {
  Nats& n = *nats_;
  ASSERT_TRUE(n.EnsureStream("LOG_0", "full.log.0", 1, 3).ok());
  ASSERT_TRUE(n.EnsureStream("LOG_0_E1", "full.log.0.1", 1, 3).ok());
  for (int i = 1; i <= 3; ++i) {
    auto seq = n.Publish("full.log.0", "m" + std::to_string(i), {}, "id" + std::to_string(i),
                         std::chrono::seconds(2));
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    EXPECT_EQ(*seq, uint64_t(i));
  }
  auto refused = n.Publish("full.log.0", "late", {}, "id4", std::chrono::seconds(2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kFailedPrecondition)
      << refused.status().ToString();
  auto after = n.GetStreamState("LOG_0");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->max_msgs, 3);
  EXPECT_EQ(after->last_seq, 3u);
  EXPECT_EQ(after->messages, 3u);
  auto msg = n.GetMessage("LOG_0", 2);
  ASSERT_TRUE(msg.ok()) << msg.status().ToString();
  EXPECT_EQ(Data(msg->get()), "m2");
  auto missing = n.GetMessage("LOG_0_E1", 1);
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound) << missing.status().ToString();
  auto no_stream = n.GetMessage("NO_SUCH_STREAM", 1);
  EXPECT_EQ(no_stream.status().code(), Status::Code::kNotFound) << no_stream.status().ToString();
  auto no_state = n.GetStreamState("NO_SUCH_STREAM");
  EXPECT_EQ(no_state.status().code(), Status::Code::kNotFound) << no_state.status().ToString();
  auto names = n.StreamNames("full.log.0.>");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, std::vector<std::string>{"LOG_0_E1"});
  auto all = n.StreamNames("full.>");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(std::set<std::string>(all->begin(), all->end()),
            (std::set<std::string>{"LOG_0", "LOG_0_E1"}));
  auto none = n.StreamNames("nothing.>");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace fathom::cluster
