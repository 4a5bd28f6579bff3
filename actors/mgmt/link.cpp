#include "actors/mgmt/link.hpp"

#include <fmt/format.h>

#include <future>

#include "mgmt/codec.hpp"
#include "proto/protocol.hpp"
#include "proto/capnp_util.hpp"
#include "core/log.hpp"
#include "net/stream.hpp"

namespace tessera::mgmt {

using Clock = std::chrono::steady_clock;

MgmtLink::MgmtLink(Options opts, OnJoined on_joined)
    : opts_(std::move(opts)), on_joined_(std::move(on_joined)) {}

MgmtLink::~MgmtLink() {
  stop();
}

void MgmtLink::start() {
  thread_ = std::thread([this] {
    log::set_thread_name("mgmt-link");
    run();
  });
}

void MgmtLink::stop() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whoever still waits learns that no answer comes.
  for (auto& [body, done] : queue_) done(Status(Errc::shutdown, "engine stopping"));
  queue_.clear();
}

void MgmtLink::ask(Buffer body, Done done) {
  {
    std::lock_guard lk(mu_);
    if (!quit_) {
      queue_.emplace_back(std::move(body), std::move(done));
      cv_.notify_all();
      return;
    }
  }
  done(Status(Errc::shutdown, "engine stopping"));
}

bool MgmtLink::wait_joined(std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  std::unique_lock lk(mu_);
  while (!joined_.load() && !quit_) {
    if (cv_.wait_until(lk, until) == std::cv_status::timeout) return joined_.load();
  }
  return joined_.load();
}

namespace {
Buffer request(const Cred& cred, const std::function<void(schema::MgmtReq::Builder)>& fill) {
  capnp::MallocMessageBuilder b(512);
  auto r = b.initRoot<schema::MgmtReq>();
  encode_cred(r.initCred(), cred);
  fill(r);
  return capn::to_body(b);
}
}  // namespace

Status MgmtLink::leave(std::chrono::milliseconds timeout) {
  if (!joined_.load()) return Status(Errc::unavailable, "not joined to the management service");
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  ask(request(Cred::current(),
              [&](schema::MgmtReq::Builder r) { r.setLeave(opts_.self.rank); }),
      [p](Result<Message> r) { p->set_value(r ? Status() : r.status()); });
  if (f.wait_for(timeout) != std::future_status::ready) {
    return Status(Errc::timeout, fmt::format("the management service did not record the stop "
                                             "within {} ms",
                                             timeout.count()));
  }
  return f.get();
}

void MgmtLink::run() {
  const Cred cred = Cred::current();
  std::unique_ptr<net::ControlConn> conn;
  auto next_beat = Clock::now();
  bool warned = false;
  while (true) {
    {
      std::unique_lock lk(mu_);
      if (quit_) return;
    }
    if (!conn) {
      auto c = net::ControlConn::open(opts_.mgmt_addr, opts_.timeout);
      Result<Message> rep = c ? (*c)->call(proto::kProtoMgmt, proto::kMgmtCall,
                                           request(cred,
                                                   [&](schema::MgmtReq::Builder r) {
                                                     encode_member(r.initJoin(), opts_.self);
                                                   }))
                              : Result<Message>(c.status());
      std::vector<ShardInfo> pools;
      if (rep) {
        try {
          capn::DecodeScope ds;
          capn::BodyReader br(rep->body);
          for (auto p : br.root<schema::MgmtRep>().getJoined()) {
            pools.push_back({p.getId(), p.getUuid(), p.getTargetBytes()});
          }
          if (ds.failed()) rep = Status(Errc::protocol, "malformed join reply: " + ds.what());
        } catch (const kj::Exception& e) {
          rep = Status(Errc::protocol, "malformed join reply");
        }
      }
      if (!rep) {
        if (!warned) {
          log::warn("cannot join the management service at {}: {} (retrying every second)",
                    opts_.mgmt_addr, rep.status().to_string());
          warned = true;
        }
        // A join refused for a reason that will not change (rank in use, not admin) is fatal
        // for this engine's membership but not for its local service: keep retrying quietly.
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, std::chrono::seconds(1), [this] { return quit_; });
        continue;
      }
      warned = false;
      conn = std::move(*c);
      log::info("joined the system at {} as rank {} ({} pools)", opts_.mgmt_addr, opts_.self.rank,
                pools.size());
      if (on_joined_) on_joined_(pools);
      {
        std::lock_guard lk(mu_);
        joined_ = true;
      }
      cv_.notify_all();
      next_beat = Clock::now() + opts_.heartbeat;
    }
    std::deque<std::pair<Buffer, Done>> work;
    {
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, next_beat, [this] { return quit_ || !queue_.empty(); });
      if (quit_) return;
      work.swap(queue_);
    }
    for (auto& [body, done] : work) {
      auto r = conn ? conn->call(proto::kProtoMgmt, proto::kMgmtCall, std::move(body))
                    : Result<Message>(
                          Status(Errc::unreachable, "no connection to the management service"));
      if (!r && (r.status().code() == Errc::unreachable || r.status().code() == Errc::timeout ||
                 r.status().code() == Errc::protocol)) {
        conn.reset();
        joined_ = false;
      }
      done(std::move(r));
    }
    if (conn && Clock::now() >= next_beat) {
      auto r = conn->call(
          proto::kProtoMgmt, proto::kMgmtCall,
          request(cred, [&](schema::MgmtReq::Builder b) { b.setHeartbeat(opts_.self.rank); }));
      if (!r) {
        if (r.status().code() == Errc::stale) {
          log::warn("the management service no longer counts this engine as joined ({}): "
                    "joining again",
                    r.status().message());
        } else {
          log::warn("lost the management service at {}: {}", opts_.mgmt_addr,
                    r.status().to_string());
        }
        conn.reset();
        joined_ = false;
      }
      next_beat = Clock::now() + opts_.heartbeat;
    }
  }
}

}  // namespace tessera::mgmt
