#include "mgmt/replica.hpp"

#include "mgmt/raft_send_guard.hpp"

extern "C" {
#include <raft/uv.h>
}

#include <csignal>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "core/log.hpp"
#include "mgmt/raft_transport.hpp"

// libraft 0.15 parses "host:port" addresses with strtok (uvIpParse), whose saved position glibc
// keeps once per process: two threads parsing at once (the replicas of one process, or raft's
// loop and any other library's strtok) read each other's buffers; TSan saw one replica's loop
// continue into another's stack. This process's strtok keeps its position per thread instead
// (a definition in the program takes precedence over libc's for every library it loads).
extern "C" char* strtok(char* __restrict s, const char* __restrict delim) noexcept {
  static thread_local char* saved = nullptr;
  return ::strtok_r(s, delim, &saved);
}

namespace tessera::mgmt {

const char* role_name(Replica::Role r) {
  switch (r) {
    case Replica::Role::unavailable:
      return "unavailable";
    case Replica::Role::follower:
      return "follower";
    case Replica::Role::candidate:
      return "candidate";
    case Replica::Role::leader:
      return "leader";
  }
  return "unknown";
}

namespace {

// A proposal or a barrier waiting for raft; finished once, on the loop thread.
struct Pending {
  Replica::Loop* loop = nullptr;
  std::promise<Status> promise;
  bool done = false;
  struct raft_apply apply {};
  struct raft_barrier barrier {};
  void finish(Status st) {
    if (done) return;
    done = true;
    promise.set_value(std::move(st));
  }
};

// Every buffer given to raft (a command, a snapshot) is framed: its length (8 bytes, little
// endian), its bytes, then zeros up to a multiple of 8 bytes. libraft's segment format needs
// entry sizes that are multiples of 8: other sizes are written, but the segment cannot be
// read back after a restart.
bool frame(std::string_view s, raft_buffer* out) {
  const size_t len = 8 + ((s.size() + 7) / 8) * 8;
  out->base = raft_calloc(1, len);
  if (out->base == nullptr) return false;
  out->len = len;
  const uint64_t n = s.size();
  std::memcpy(out->base, &n, 8);
  std::memcpy(static_cast<char*>(out->base) + 8, s.data(), s.size());
  return true;
}

Result<std::string_view> unframe(const raft_buffer& b) {
  uint64_t n = 0;
  if (b.len < 8) return Status(Errc::protocol, "a management log entry shorter than its frame");
  std::memcpy(&n, b.base, 8);
  if (n > b.len - 8) {
    return Status(Errc::protocol,
                  fmt::format("a management log entry of {} bytes claims {}", b.len, n));
  }
  return std::string_view(static_cast<const char*>(b.base) + 8, n);
}

}  // namespace

bool raft_send_allowed(const struct raft& r, const raft_message& m) {
  if (m.server_address == nullptr) return false;
  if (m.type != RAFT_IO_APPEND_ENTRIES_RESULT || r.state == RAFT_FOLLOWER) return true;
  // Not following: an answer addressed by the follower state's bytes was built from a state
  // this replica left. Any other answer (a refusal of a stale leader's AppendEntries, addressed
  // from that request) goes out: raft ends the replica when its send fails there.
  return m.server_id != r.follower_state.current_leader.id ||
         m.server_address != r.follower_state.current_leader.address;
}

namespace {

// Work for the loop thread. Every task posted runs: `post` refuses once the replica stops, and
// the loop runs what was queued before it closes.
using Task = std::function<void()>;

}  // namespace

struct Replica::Loop {
  Options opts;
  Fsm fsm;
  uv_loop_t loop{};
  bool loop_init = false;
  uv_async_t wake{};
  bool wake_init = false;
  std::unique_ptr<AuthTransport> transport;
  raft_io io{};
  bool io_init = false;
  int (*uv_send)(raft_io*, raft_io_send*, const raft_message*, raft_io_send_cb) = nullptr;
  uint64_t dropped_sends = 0;  // refused by raft_send_allowed
  raft_fsm rfsm{};
  struct raft r {};
  bool raft_init = false;
  bool raft_closing = false;  // close() began (a leader's transfer may run first)
  bool raft_close_called = false;
  bool transfer_done = false;  // the transfer close() asked for ended
  struct raft_transfer transfer {};
  Status last_result;  // what the Fsm answered for the entry raft applies now
  std::map<Pending*, std::shared_ptr<Pending>> inflight;  // loop thread only
  std::thread th;

  std::mutex mu;  // guards `tasks` and `stopping`
  std::deque<Task> tasks;
  bool stopping = false;

  Status post(Task t) {
    {
      std::lock_guard lk(mu);
      if (stopping) return Status(Errc::shutdown, "the management replica is stopping");
      if (tasks.size() >= opts.max_queued) {
        return Status(Errc::busy, fmt::format("{} management commands are already waiting for "
                                              "the replica: try again",
                                              tasks.size()));
      }
      tasks.push_back(std::move(t));
      uv_async_send(&wake);  // under `mu`: the handle closes only after `stopping` is seen
    }
    return Status();
  }

  Status not_leader() {
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&r, &id, &address);
    if (id == 0) {
      return Status(Errc::not_leader,
                    fmt::format("access point {} does not lead the management service and knows "
                                "no leader now (an election may be under way): retry",
                                opts.id));
    }
    return Status(Errc::not_leader,
                  fmt::format("access point {} does not lead the management service; the "
                              "leader is access point {} at {}",
                              opts.id, id, address != nullptr ? address : "?"));
  }

  Status from_raft(int rv) {
    switch (rv) {
      case RAFT_NOTLEADER:
        return not_leader();
      case RAFT_LEADERSHIPLOST:
        return Status(Errc::uncertain,
                      "the management leader lost its leadership before the "
                      "command was committed: it may yet be applied");
      case RAFT_SHUTDOWN:
        return Status(Errc::shutdown, "the management replica is stopping");
      case RAFT_NOMEM:
        return Status(Errc::no_space, "out of memory");
      case RAFT_NOSPACE:
        return Status(Errc::no_space, "the management replica's log is out of space");
      default:
        return Status(Errc::internal,
                      fmt::format("raft: {} ({})", raft_strerror(rv), raft_errmsg(&r)));
    }
  }

  // --- the state machine, called by raft on the loop thread ---

  static int fsm_apply(raft_fsm* f, const raft_buffer* buf, void** result) {
    Loop* L = static_cast<Loop*>(f->data);
    try {
      auto cmd = unframe(*buf);
      L->last_result = cmd ? L->fsm.apply(*cmd) : cmd.status();
    } catch (const std::exception& e) {
      L->last_result = Status(Errc::invalid_argument, fmt::format("bad command: {}", e.what()));
    }
    *result = &L->last_result;
    return 0;
  }

  static int fsm_snapshot(raft_fsm* f, raft_buffer* bufs[], unsigned* n) {
    Loop* L = static_cast<Loop*>(f->data);
    std::string s;
    try {
      s = L->fsm.snapshot();
    } catch (const std::exception& e) {
      log::error("management replica {}: snapshot failed: {}", L->opts.id, e.what());
      return RAFT_NOMEM;
    }
    *bufs = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
    if (*bufs == nullptr) return RAFT_NOMEM;
    if (!frame(s, &(*bufs)[0])) {
      raft_free(*bufs);
      return RAFT_NOMEM;
    }
    *n = 1;
    return 0;
  }

  // On success the buffer is the state machine's to free; on failure raft frees it.
  static int fsm_restore(raft_fsm* f, raft_buffer* buf) {
    Loop* L = static_cast<Loop*>(f->data);
    Status st;
    try {
      auto state = unframe(*buf);
      st = state ? L->fsm.restore(*state) : state.status();
    } catch (const std::exception& e) {
      st = Status(Errc::invalid_argument, e.what());
    }
    if (!st.is_ok()) {
      log::error("management replica {}: cannot restore a snapshot: {}", L->opts.id,
                 st.to_string());
      return RAFT_MALFORMED;
    }
    raft_free(buf->base);
    return 0;
  }

  // raft's sends, through raft_send_allowed (io->data is the raft instance once raft_init ran).
  static int guarded_send(raft_io* io, raft_io_send* req, const raft_message* m,
                          raft_io_send_cb cb) {
    auto* rr = static_cast<struct raft*>(io->data);
    Loop* L = static_cast<Loop*>(rr->data);
    if (!raft_send_allowed(*rr, *m)) {
      ++L->dropped_sends;
      log::warn(
          "management replica {} ({}): dropped an answer raft built for no leader (a "
          "snapshot install ended after an election; {} so far)",
          L->opts.id, role_name(L->info().role), L->dropped_sends);
      return RAFT_NOCONNECTION;
    }
    return L->uv_send(io, req, m, cb);
  }

  // --- the loop thread ---

  static void on_wake(uv_async_t* a) {
    Loop* L = static_cast<Loop*>(a->data);
    std::deque<Task> mine;
    bool stop;
    {
      std::lock_guard lk(L->mu);
      mine.swap(L->tasks);
      stop = L->stopping;
    }
    for (auto& t : mine) t();
    if (stop) L->close();
  }

  // Hands `p` to raft through `call` (raft_apply or raft_barrier) on the leader; its callback
  // settles it.
  template <typename Call>
  void submit(const std::shared_ptr<Pending>& p, Call call) {
    if (raft_state(&r) != RAFT_LEADER) {
      p->finish(not_leader());
      return;
    }
    p->loop = this;
    inflight[p.get()] = p;
    if (int rv = call(p.get()); rv != 0) settle(p.get(), from_raft(rv));
  }

  // Finishes an in-flight request with `st` (once: raft calls back at most once).
  void settle(Pending* raw, Status st) {
    auto it = inflight.find(raw);
    if (it == inflight.end()) return;
    it->second->finish(std::move(st));
    inflight.erase(it);
  }

  void propose(const std::shared_ptr<Pending>& p, const std::string& cmd) {
    submit(p, [&](Pending* raw) {
      raft_buffer buf;
      if (!frame(cmd, &buf)) return RAFT_NOMEM;
      raw->apply.data = raw;
      int rv = raft_apply(
          &r, &raw->apply, &buf, 1, [](struct raft_apply* req, int status, void* result) {
            Pending* x = static_cast<Pending*>(req->data);
            x->loop->settle(
                x, status == 0 ? *static_cast<Status*>(result) : x->loop->from_raft(status));
          });
      if (rv != 0) raft_free(buf.base);  // raft did not take it
      return rv;
    });
  }

  void barrier(const std::shared_ptr<Pending>& p) {
    submit(p, [&](Pending* raw) {
      raw->barrier.data = raw;
      return raft_barrier(&r, &raw->barrier, [](struct raft_barrier* req, int status) {
        Pending* x = static_cast<Pending*>(req->data);
        x->loop->settle(x, status == 0 ? Status() : x->loop->from_raft(status));
      });
    });
  }

  Info info() {
    Info i;
    i.id = opts.id;
    switch (raft_state(&r)) {
      case RAFT_FOLLOWER:
        i.role = Role::follower;
        break;
      case RAFT_CANDIDATE:
        i.role = Role::candidate;
        break;
      case RAFT_LEADER:
        i.role = Role::leader;
        break;
      default:
        i.role = Role::unavailable;
    }
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&r, &id, &address);
    i.leader_id = id;
    if (address != nullptr) i.leader_address = address;
    i.term = r.current_term;
    i.last_index = raft_last_index(&r);
    i.applied = raft_last_applied(&r);
    i.refused_connections = transport ? transport->refused() : 0;
    i.dropped_sends = dropped_sends;
    return i;
  }

  // Closes raft (a leader first hands leadership to the most up-to-date follower), then the
  // wake handle: the loop ends when nothing is left open.
  // raft_close runs from the wake handle, never inside one of raft's own callbacks (the
  // transfer's ends inside raft's tick, receive or replication code, which goes on using the
  // state raft_close frees).
  void close() {
    if (raft_close_called) return;
    if (!raft_closing) {
      raft_closing = true;
      if (raft_state(&r) == RAFT_LEADER) {
        transfer.data = this;
        int rv = raft_transfer(&r, &transfer, 0, [](struct raft_transfer* t) {
          Loop* L = static_cast<Loop*>(t->data);
          L->transfer_done = true;
          uv_async_send(&L->wake);  // on_wake sees `stopping` and calls close() again
        });
        if (rv == 0) return;
      }
      transfer_done = true;
    }
    if (!transfer_done) return;
    raft_close_called = true;
    raft_close(&r, raft_closed);
  }

  static void raft_closed(struct raft* rr) {
    Loop* L = static_cast<Loop*>(rr->data);
    for (auto& [raw, p] : L->inflight) {
      p->finish(Status(Errc::shutdown, "the management replica stopped"));
    }
    L->inflight.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&L->wake), nullptr);
  }

  // Runs the loop until every handle is closed (after a failed start: on the caller's thread).
  void drain_on_caller() {
    if (raft_init) {
      raft_closing = raft_close_called = true;
      raft_close(&r, [](struct raft*) {});
    }
    if (wake_init) uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
  }

  ~Loop() {
    if (io_init) raft_uv_close(&io);
    transport.reset();
    if (loop_init) uv_loop_close(&loop);
  }
};

Replica::Replica(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}

Result<std::unique_ptr<Replica>> Replica::start(Options opts, Fsm fsm) {
  if (opts.id == 0) return Status(Errc::invalid_argument, "a replica's raft id must be > 0");
  if (!fsm.apply || !fsm.snapshot || !fsm.restore) {
    return Status(Errc::invalid_argument, "a replica needs apply, snapshot and restore");
  }
  // The loop writes to sockets whose peer may be gone: that must be an error, not a signal
  // that ends the process (the engine ignores SIGPIPE too).
  std::signal(SIGPIPE, SIG_IGN);
  auto L = std::make_unique<Loop>();
  L->opts = std::move(opts);
  L->fsm = std::move(fsm);
  const Options& o = L->opts;
  if (int rv = uv_loop_init(&L->loop); rv != 0) {
    return Status(Errc::internal, fmt::format("uv_loop_init: {}", uv_strerror(rv)));
  }
  L->loop_init = true;
  auto fail = [&](Status st) -> Status {
    L->drain_on_caller();
    return st;
  };
  auto t = AuthTransport::create(&L->loop, o.key, o.bind);
  if (!t) return t.status();
  L->transport = std::move(*t);
  if (int rv = raft_uv_init(&L->io, &L->loop, o.dir.c_str(), L->transport->raft()); rv != 0) {
    return Status(Errc::io_error, fmt::format("management replica in {}: {}", o.dir, L->io.errmsg));
  }
  L->io_init = true;
  L->uv_send = L->io.send;
  L->io.send = Loop::guarded_send;
  L->rfsm.version = 1;
  L->rfsm.data = L.get();
  L->rfsm.apply = Loop::fsm_apply;
  L->rfsm.snapshot = Loop::fsm_snapshot;
  L->rfsm.restore = Loop::fsm_restore;
  if (int rv = raft_init(&L->r, &L->io, &L->rfsm, o.id, o.address.c_str()); rv != 0) {
    return Status(Errc::internal, fmt::format("raft_init: {}", raft_errmsg(&L->r)));
  }
  L->raft_init = true;
  L->r.data = L.get();
  raft_configuration conf;
  raft_configuration_init(&conf);
  for (const Peer& p : o.voters) {
    if (int rv = raft_configuration_add(&conf, p.id, p.address.c_str(), RAFT_VOTER); rv != 0) {
      raft_configuration_close(&conf);
      return fail(Status(Errc::invalid_argument, fmt::format("access point {} at {}: {}", p.id,
                                                             p.address, raft_strerror(rv))));
    }
  }
  int rv = raft_bootstrap(&L->r, &conf);
  raft_configuration_close(&conf);
  if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
    return fail(Status(Errc::io_error, fmt::format("recording the access points in {}: {}", o.dir,
                                                   raft_errmsg(&L->r))));
  }
  raft_set_election_timeout(&L->r, static_cast<unsigned>(o.election_timeout.count()));
  raft_set_heartbeat_timeout(&L->r, static_cast<unsigned>(o.heartbeat.count()));
  raft_set_snapshot_threshold(&L->r, o.snapshot_threshold);
  raft_set_snapshot_trailing(&L->r, o.snapshot_trailing);
  raft_set_pre_vote(&L->r, true);
  if (rv = uv_async_init(&L->loop, &L->wake, Loop::on_wake); rv != 0) {
    return fail(Status(Errc::internal, fmt::format("uv_async_init: {}", uv_strerror(rv))));
  }
  L->wake.data = L.get();
  L->wake_init = true;
  if (rv = raft_start(&L->r); rv != 0) {
    // raft, its I/O or the transport (listening) may say why; else raft's name for the code.
    std::string why = raft_errmsg(&L->r);
    if (why.empty()) why = L->io.errmsg;
    if (why.empty()) why = L->transport->errmsg();
    if (why.empty()) why = raft_strerror(rv);
    return fail(Status(
        Errc::io_error,
        fmt::format("starting the management replica at {} in {}: {}", o.address, o.dir, why)));
  }
  Loop* raw = L.get();
  L->th = std::thread([raw] { uv_run(&raw->loop, UV_RUN_DEFAULT); });
  return std::unique_ptr<Replica>(new Replica(std::move(L)));
}

Replica::~Replica() {
  {
    std::lock_guard lk(loop_->mu);
    loop_->stopping = true;
    uv_async_send(&loop_->wake);
  }
  loop_->th.join();
}

// Posts `submit` (which hands a Pending to raft on the loop thread) and waits for its outcome;
// `timeout` naming `what` the majority did not do, then `after`, when it does not come in time.
template <typename Submit>
Status Replica::wait(std::chrono::milliseconds timeout, const char* what, const char* after,
                     Submit submit) {
  auto p = std::make_shared<Pending>();
  auto fut = p->promise.get_future();
  Loop* L = loop_.get();
  TESSERA_TRY(L->post([L, p, submit = std::move(submit)] { submit(*L, p); }));
  if (fut.wait_for(timeout) != std::future_status::ready) {
    return Status(Errc::timeout, fmt::format("no majority of the access points {} within {} ms "
                                             "(are most of them down?){}",
                                             what, timeout.count(), after));
  }
  return fut.get();
}

Status Replica::propose(std::string cmd, std::chrono::milliseconds timeout) {
  if (cmd.empty()) return Status(Errc::invalid_argument, "an empty management command");
  return wait(
      timeout, "committed the command", ": it may yet be applied",
      [cmd = std::move(cmd)](Loop& L, const std::shared_ptr<Pending>& p) { L.propose(p, cmd); });
}

Status Replica::barrier(std::chrono::milliseconds timeout) {
  return wait(timeout, "answered", "",
              [](Loop& L, const std::shared_ptr<Pending>& p) { L.barrier(p); });
}

Result<Replica::Info> Replica::info(std::chrono::milliseconds timeout) {
  auto p = std::make_shared<std::promise<Info>>();
  auto fut = p->get_future();
  Loop* L = loop_.get();
  TESSERA_TRY(L->post([L, p] { p->set_value(L->info()); }));
  if (fut.wait_for(timeout) != std::future_status::ready) {
    return Status(Errc::timeout, "the management replica's loop did not answer");
  }
  return fut.get();
}

}  // namespace tessera::mgmt
