#include "cluster/nats.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace fathom::cluster {

Status FromNats(natsStatus s, std::string_view what, jsErrCode js_error) {
  if (s == NATS_OK) return Status::OK();
  std::string message = std::string(what) + ": " + natsStatus_GetText(s);
  if (js_error != 0) message += " (JetStream error " + std::to_string(int(js_error)) + ")";
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0' && std::strstr(message.c_str(), last) == nullptr) {
    message += std::string(" - ") + last;
  }
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR: return Status::Unavailable(message);
    case NATS_NOT_FOUND: return Status::NotFound(message);
    default:
      if (js_error == JSStreamNotFoundErr || js_error == JSConsumerNotFoundErr ||
          js_error == JSNoMessageFoundErr)
        return Status::NotFound(message);
      if (js_error == JSStreamStoreFailedErr &&
          message.find("maximum messages") != std::string::npos)
        return Status::FailedPrecondition(message + " (full)");
      return Status::Internal(message);
  }
}

std::string Header(natsMsg* msg, const char* key) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, key, &value) != NATS_OK || value == nullptr) return "";
  return value;
}

// (Empty values are left out: a header line with no value garbles cnats' header parsing.)
void SetHeaders(natsMsg* msg, const std::map<std::string, std::string>& headers) {
  for (const auto& [k, v] : headers) {
    if (!v.empty()) natsMsgHeader_Set(msg, k.c_str(), v.c_str());
  }
}

std::string_view Data(natsMsg* msg) {
  const char* data = natsMsg_GetData(msg);
  return data == nullptr ? std::string_view() : std::string_view(data, natsMsg_GetDataLength(msg));
}

Result<std::unique_ptr<Nats>> Nats::Connect(const std::vector<std::string>& urls,
                                            const std::string& name,
                                            std::chrono::milliseconds connect_timeout) {
  if (urls.empty()) return Status::InvalidArgument("--cluster needs at least one nats:// URL");
  std::unique_ptr<Nats> n(new Nats());
  std::vector<const char*> servers;
  for (const std::string& u : urls) servers.push_back(u.c_str());
  natsStatus s = natsOptions_Create(&n->opts_);
  if (s == NATS_OK) s = natsOptions_SetServers(n->opts_, servers.data(), int(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetName(n->opts_, name.c_str());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(n->opts_, -1);  // for ever
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(n->opts_, 250);
  if (s == NATS_OK) s = natsOptions_SetTimeout(n->opts_, 2000);
  FATHOM_RETURN_IF_ERROR(FromNats(s, "NATS options"));
  // The first connection: retry until one server answers or the time is up.
  const auto deadline = std::chrono::steady_clock::now() + connect_timeout;
  for (;;) {
    s = natsConnection_Connect(&n->nc_, n->opts_);
    if (s == NATS_OK) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string list;
      for (const std::string& u : urls) list.append(list.empty() ? "" : ", ").append(u);
      return FromNats(s, "could not connect to NATS at " + list);
    }
    nats_Sleep(250);
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  FATHOM_RETURN_IF_ERROR(FromNats(natsConnection_JetStream(&n->js_, n->nc_, &jo), "JetStream"));
  return n;
}

Nats::~Nats() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
  if (opts_ != nullptr) natsOptions_Destroy(opts_);
}

bool Nats::connected() const {
  return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

Status Nats::EnsureStream(const std::string& name, const std::string& subject, int replicas,
                          int64_t max_msgs) {
  jsStreamInfo* info = nullptr;
  jsErrCode err = jsErrCode(0);
  if (js_GetStreamInfo(&info, js_, name.c_str(), nullptr, &err) == NATS_OK) {
    jsStreamInfo_Destroy(info);
    return Status::OK();
  }
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  const char* subjects[] = {subject.c_str()};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  cfg.Duplicates = int64_t{120} * 1000 * 1000 * 1000;  // ns: retries within 2 minutes are dropped
  if (max_msgs > 0) {
    cfg.MaxMsgs = max_msgs;
    cfg.Discard = js_DiscardNew;
  }
  err = jsErrCode(0);
  natsStatus s = js_AddStream(&info, js_, &cfg, nullptr, &err);
  if (s == NATS_OK) jsStreamInfo_Destroy(info);
  if (err == JSStreamNameExistErr) return Status::OK();
  return FromNats(s, "creating stream " + name, err);
}

Status Nats::DeleteStream(const std::string& name) {
  jsErrCode err = jsErrCode(0);
  natsStatus s = js_DeleteStream(js_, name.c_str(), nullptr, &err);
  if (err == JSStreamNotFoundErr || s == NATS_NOT_FOUND) return Status::OK();
  return FromNats(s, "deleting stream " + name, err);
}

Result<std::vector<std::string>> Nats::StreamNames(const std::string& subject_filter) {
  jsStreamNamesList* list = nullptr;
  jsErrCode err = jsErrCode(0);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  jo.Stream.Info.SubjectsFilter = subject_filter.c_str();
  natsStatus s = js_StreamNames(&list, js_, &jo, &err);
  if (s == NATS_NOT_FOUND) return std::vector<std::string>();  // (cnats: none matched)
  FATHOM_RETURN_IF_ERROR(FromNats(s, "streams of " + subject_filter, err));
  std::vector<std::string> out;
  for (int i = 0; i < list->Count; ++i) out.emplace_back(list->List[i]);
  jsStreamNamesList_Destroy(list);
  return out;
}

Result<Nats::StreamState> Nats::GetStreamState(const std::string& name) {
  jsStreamInfo* info = nullptr;
  jsErrCode err = jsErrCode(0);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2000;
  FATHOM_RETURN_IF_ERROR(
      FromNats(js_GetStreamInfo(&info, js_, name.c_str(), &jo, &err), "stream " + name, err));
  StreamState out;
  out.first_seq = info->State.FirstSeq;
  out.last_seq = info->State.LastSeq;
  out.messages = info->State.Msgs;
  out.max_msgs = info->Config != nullptr && info->Config->Discard == js_DiscardNew
                     ? std::max<int64_t>(info->Config->MaxMsgs, 0)
                     : 0;
  jsStreamInfo_Destroy(info);
  return out;
}

Result<MsgPtr> Nats::GetMessage(const std::string& stream, uint64_t seq) {
  natsMsg* raw = nullptr;
  jsErrCode err = jsErrCode(0);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2000;
  natsStatus s = js_GetMsg(&raw, js_, stream.c_str(), seq, &jo, &err);
  Status st = FromNats(s, "message " + std::to_string(seq) + " of " + stream, err);
  // (cnats 3.4 reports a missing stream here as a plain error, without its JetStream code)
  if (s == NATS_ERR && err == 0 && st.message().find("stream not found") != std::string::npos)
    return Status::NotFound(st.message());
  FATHOM_RETURN_IF_ERROR(st);
  return MsgPtr(raw);
}

Result<int64_t> Nats::MessageTime(const std::string& stream, uint64_t seq) {
  FATHOM_ASSIGN_OR_RETURN(MsgPtr msg, GetMessage(stream, seq));
  return natsMsg_GetTime(msg.get());
}

Result<uint64_t> Nats::Publish(const std::string& subject, std::string_view data,
                               const std::map<std::string, std::string>& headers,
                               const std::string& msg_id, std::chrono::milliseconds timeout) {
  natsMsg* raw = nullptr;
  FATHOM_RETURN_IF_ERROR(FromNats(
      natsMsg_Create(&raw, subject.c_str(), nullptr, data.data(), int(data.size())), "message"));
  MsgPtr msg(raw);
  SetHeaders(msg.get(), headers);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id.c_str();
  po.MaxWait = timeout.count();
  jsPubAck* ack = nullptr;
  jsErrCode err = jsErrCode(0);
  natsStatus s = js_PublishMsg(&ack, js_, msg.get(), &po, &err);
  FATHOM_RETURN_IF_ERROR(FromNats(s, "publishing to " + subject, err));
  uint64_t seq = ack->Sequence;
  jsPubAck_Destroy(ack);
  return seq;
}

Result<std::unique_ptr<KeyValue>> Nats::Bucket(const std::string& name, int replicas,
                                               std::chrono::seconds ttl) {
  kvStore* kv = nullptr;
  if (js_KeyValue(&kv, js_, name.c_str()) == NATS_OK) return std::make_unique<KeyValue>(kv, js_);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = name.c_str();
  cfg.History = 1;
  cfg.Replicas = replicas;
  cfg.StorageType = js_FileStorage;
  cfg.TTL =
      std::chrono::duration_cast<std::chrono::nanoseconds>(ttl).count();  // (cnats 3.4 takes ns)
  natsStatus s = js_CreateKeyValue(&kv, js_, &cfg);
  if (s != NATS_OK && js_KeyValue(&kv, js_, name.c_str()) == NATS_OK)
    s = NATS_OK;  // another node made it
  FATHOM_RETURN_IF_ERROR(FromNats(s, "key-value bucket " + name));
  return std::make_unique<KeyValue>(kv, js_);
}

Result<MsgPtr> Nats::Request(const std::string& subject, std::string_view data,
                             const std::map<std::string, std::string>& headers,
                             std::chrono::milliseconds timeout) {
  natsMsg* raw = nullptr;
  FATHOM_RETURN_IF_ERROR(FromNats(
      natsMsg_Create(&raw, subject.c_str(), nullptr, data.data(), int(data.size())), "message"));
  MsgPtr msg(raw);
  SetHeaders(msg.get(), headers);
  natsMsg* reply = nullptr;
  FATHOM_RETURN_IF_ERROR(FromNats(
      natsConnection_RequestMsg(&reply, nc_, msg.get(), timeout.count()), "request to " + subject));
  return MsgPtr(reply);
}

Status Nats::Respond(natsMsg* request, std::string_view data,
                     const std::map<std::string, std::string>& headers) {
  const char* reply = natsMsg_GetReply(request);
  if (reply == nullptr) return Status::InvalidArgument("the message has no reply subject");
  natsMsg* raw = nullptr;
  FATHOM_RETURN_IF_ERROR(
      FromNats(natsMsg_Create(&raw, reply, nullptr, data.data(), int(data.size())), "reply"));
  MsgPtr msg(raw);
  SetHeaders(msg.get(), headers);
  return FromNats(natsConnection_PublishMsg(nc_, msg.get()), "reply");
}

KeyValue::~KeyValue() {
  kvStore_Destroy(kv_);
}

Result<std::optional<std::string>> KeyValue::Get(const std::string& key, uint64_t* revision) {
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv_, key.c_str());
  if (s == NATS_NOT_FOUND) return std::optional<std::string>();
  FATHOM_RETURN_IF_ERROR(FromNats(s, "reading " + key));
  if (revision != nullptr) *revision = kvEntry_Revision(e);
  std::optional<std::string> out;
  if (kvEntry_Operation(e) == kvOp_Put) {
    out.emplace(static_cast<const char*>(kvEntry_Value(e)), size_t(kvEntry_ValueLen(e)));
  }
  kvEntry_Destroy(e);
  return out;
}

Status KeyValue::Put(const std::string& key, std::string_view value) {
  uint64_t rev = 0;
  return FromNats(kvStore_Put(&rev, kv_, key.c_str(), value.data(), int(value.size())),
                  "writing " + key);
}

Status KeyValue::Create(const std::string& key, std::string_view value) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Create(&rev, kv_, key.c_str(), value.data(), int(value.size()));
  if (s == NATS_OK) return Status::OK();
  Status failed = FromNats(s, "creating " + key);
  // (cnats reports an existing key as a failed "expected last sequence" write.)
  auto existing = Get(key);
  if (existing.ok() && existing->has_value()) return Status::AlreadyExists("'" + key + "' exists");
  return failed;
}

Status KeyValue::Update(const std::string& key, std::string_view value, uint64_t revision) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Update(&rev, kv_, key.c_str(), value.data(), int(value.size()), revision);
  if (s == NATS_OK) return Status::OK();
  Status failed = FromNats(s, "updating " + key);
  uint64_t now = 0;
  auto current = Get(key, &now);
  if (current.ok() && (!current->has_value() || now != revision)) {
    return Status::FailedPrecondition("'" + key + "' changed meanwhile: read it again and retry");
  }
  return failed;
}

Status KeyValue::Delete(const std::string& key) {
  return FromNats(kvStore_Delete(kv_, key.c_str()), "deleting " + key);
}

Result<std::vector<std::string>> KeyValue::Keys(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
  };
  const std::string stream = std::string("KV_") + kvStore_Bucket(kv_);
  // The bucket stream's last sequence and message count now.
  auto state = [&]() -> Result<std::pair<uint64_t, uint64_t>> {
    jsStreamInfo* info = nullptr;
    jsErrCode err = jsErrCode(0);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = std::max<int64_t>(1, left());
    natsStatus s = js_GetStreamInfo(&info, js_, stream.c_str(), &jo, &err);
    if (s == NATS_NOT_FOUND || err == JSStreamNotFoundErr)
      return std::make_pair(uint64_t{0}, uint64_t{0});
    FATHOM_RETURN_IF_ERROR(FromNats(s, "listing keys: stream " + stream, err));
    auto out = std::make_pair(info->State.LastSeq, info->State.Msgs);
    jsStreamInfo_Destroy(info);
    return out;
  };
  kvWatchOptions options;
  kvWatchOptions_Init(&options);
  options.MetaOnly = true;  // (deletes come too: a key's newest entry decides)
  kvWatcher* watcher = nullptr;
  natsStatus s = kvStore_WatchAll(&watcher, kv_, &options);
  if (s == NATS_NOT_FOUND) return std::vector<std::string>{};
  FATHOM_RETURN_IF_ERROR(FromNats(s, "listing keys"));
  // The watcher delivers each key's newest entry as of its start, in sequence order, then every
  // later entry. Once it has delivered up to the stream's last sequence, read after it started,
  // every key's newest entry up to then has come (an entry replaced meanwhile comes as the later
  // one); entries put meanwhile may move that mark, so it is read again until it holds.
  Status status;
  std::map<std::string, bool> keys;  // key -> has a value
  uint64_t seen = 0;
  auto target = state();
  if (!target.ok()) {
    status = target.status();
  } else if (target->second > 0) {
    uint64_t mark = target->first;
    while (true) {
      if (seen >= mark) {
        auto now = state();
        if (!now.ok()) {
          status = now.status();
          break;
        }
        if (now->first <= seen) break;  // complete
        mark = now->first;
      }
      if (left() <= 0) {
        status = Status::Unavailable("listing keys of " + stream + ": no complete answer within " +
                                     std::to_string(timeout.count()) + " ms");
        break;
      }
      kvEntry* entry = nullptr;
      s = kvWatcher_Next(&entry, watcher, left());
      if (s == NATS_TIMEOUT) continue;  // (the deadline check above answers)
      if (s != NATS_OK) {
        status = FromNats(s, "listing keys");
        break;
      }
      // nullptr: the watcher counts the initial values as all in. Not trusted: its count comes
      // from the server's pending numbers, which can end too early (a partial list) or never
      // (entries replaced while listing).
      if (entry == nullptr) continue;
      keys[kvEntry_Key(entry)] = kvEntry_Operation(entry) == kvOp_Put;
      seen = std::max<uint64_t>(seen, kvEntry_Revision(entry));
      kvEntry_Destroy(entry);
    }
  }
  kvWatcher_Destroy(watcher);
  FATHOM_RETURN_IF_ERROR(status);
  std::vector<std::string> out;
  for (const auto& [key, has_value] : keys) {
    if (has_value) out.push_back(key);
  }
  return out;
}

}  // namespace fathom::cluster
