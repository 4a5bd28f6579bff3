#include "actors/mgmt/link.hpp"

#include <fmt/format.h>

#include <future>

#include "core/log.hpp"
#include "mgmt/codec.hpp"
#include "net/stream.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"

namespace tessera::mgmt {

using Clock = std::chrono::steady_clock;

MgmtLink::MgmtLink(Options opts, OnJoined on_joined)
    : opts_(std::move(opts)), on_joined_(std::move(on_joined)), service_(opts_.mgmt_addr) {}

MgmtLink::~MgmtLink() {
  stop();
}

void MgmtLink::start() {
  thread_ = std::thread([this] {
    log::set_thread_name("mgmt-link");
    run();
  });
}

namespace {
Status engine_stopping() {
  return Status(Errc::shutdown, "engine stopping");
}
Status unreachable_status(const Status& why) {
  return Status(Errc::unavailable,
                fmt::format("the management service cannot be reached: {}", why.to_string()));
}
}  // namespace

void MgmtLink::stop() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whoever still waits learns that no answer comes.
  for (auto& [body, done] : queue_) done(engine_stopping());
  queue_.clear();
}

void MgmtLink::ask(Buffer body, Done done) {
  bool cut_off = false;
  {
    std::lock_guard lk(mu_);
    cut_off = cut_off_;
    if (!quit_ && !cut_off) {
      queue_.emplace_back(std::move(body), std::move(done));
      cv_.notify_all();
      return;
    }
  }
  if (cut_off) {
    // The last round over the access points found no leader: no answer is coming soon.
    done(Status(Errc::unavailable,
                "the management service cannot be reached (no access point leads it now)"));
    return;
  }
  done(engine_stopping());
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
  leaving_ = true;
  if (!joined_.load()) return Status(Errc::unavailable, "not joined to the management service");
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  ask(request(Cred::current(), [&](schema::MgmtReq::Builder r) { r.setLeave(opts_.self.rank); }),
      [this, p](Result<Message> r) {
        if (r) left_ = true;
        p->set_value(r ? Status() : r.status());
      });
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
  std::string at;  // the access point joined
  auto next_beat = Clock::now();
  std::string warned_why;  // the last reason a join failed, as logged
  auto warned_at = Clock::now();
  while (true) {
    {
      std::unique_lock lk(mu_);
      if (quit_) return;
    }
    if (!conn && left_.load()) {
      // Stopping cleanly: no join again. Questions get "stopping" until stop().
      std::deque<std::pair<Buffer, Done>> failed;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return quit_ || !queue_.empty(); });
        if (quit_) return;
        failed.swap(queue_);
      }
      for (auto& [body, done] : failed) done(engine_stopping());
      continue;
    }
    if (!conn) {
      // The leader among the access points: a follower names it, a dead one is skipped.
      std::unique_ptr<net::ControlConn> opened;
      // A round over the access points is short: while no leader answers, the engine's
      // questions fail at once (below) instead of waiting for one.
      Result<Message> rep = service_.call<Message>(
          std::min(opts_.timeout, std::chrono::milliseconds(2000)),
          [&](const std::string& addr, bool& reached) -> Result<Message> {
            auto r = net::control_attempt(addr, service_.connect_timeout(opts_.timeout),
                                          opts_.timeout, proto::kProtoMgmt, proto::kMgmtCall,
                                          request(cred,
                                                  [&](schema::MgmtReq::Builder b) {
                                                    encode_member(b.initJoin(), opts_.self);
                                                  }),
                                          /*resendable=*/false, reached, &opened);
            if (r) at = addr;
            return r;
          },
          [this] {
            std::lock_guard lk(mu_);
            return quit_;
          });
      std::vector<ShardInfo> pools;
      if (rep) {
        try {
          capn::DecodeScope ds;
          capn::BodyReader br(rep->body);
          for (auto p : br.root<schema::MgmtRep>().getJoined()) {
            pools.push_back({p.getId(), p.getUuid(), p.getTargetBytes(), p.getEpochFloor()});
          }
          if (ds.failed()) rep = Status(Errc::protocol, "malformed join reply: " + ds.what());
        } catch (const kj::Exception& e) {
          rep = Status(Errc::protocol, "malformed join reply");
        }
      }
      if (!rep) {
        // Said once, and again when the reason changes or every minute.
        const std::string why = rep.status().to_string();
        if (why != warned_why || Clock::now() - warned_at > std::chrono::minutes(1)) {
          log::warn("cannot join the management service at {}: {} (retrying every second)",
                    opts_.mgmt_addr, why);
          warned_why = why;
          warned_at = Clock::now();
        }
        // A join refused for a reason that will not change (rank in use, not admin) is fatal
        // for this engine's membership but not for its local service: keep retrying quietly.
        // Meanwhile the engine's questions get an answer at once: the service cannot be asked
        // (its targets go on with the handles and maps they have).
        std::deque<std::pair<Buffer, Done>> failed;
        {
          std::lock_guard lk(mu_);
          cut_off_ = true;
          failed.swap(queue_);
        }
        for (auto& [body, done] : failed) done(unreachable_status(rep.status()));
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, std::chrono::seconds(1), [this] { return quit_; });
        continue;
      }
      warned_why.clear();
      conn = std::move(opened);
      log::info("joined the system at {} as rank {} ({} pools)", at, opts_.self.rank, pools.size());
      if (on_joined_) on_joined_(pools);
      {
        std::lock_guard lk(mu_);
        joined_ = true;
        cut_off_ = false;
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
    for (auto it = work.begin(); it != work.end(); ++it) {
      auto& [body, done] = *it;
      auto r = conn ? conn->call(proto::kProtoMgmt, proto::kMgmtCall, body.clone())
                    : Result<Message>(
                          Status(Errc::unreachable, "no connection to the management service"));
      if (!r && r.status().code() == Errc::not_leader) {
        // The access point stopped leading: join the leader, then ask it, in the same order.
        log::info("the management service at {} moved: {}", at, r.status().message());
        conn.reset();
        joined_ = false;
        std::lock_guard lk(mu_);
        queue_.insert(queue_.begin(), std::make_move_iterator(it),
                      std::make_move_iterator(work.end()));
        break;
      }
      if (!r && (r.status().code() == Errc::unreachable || r.status().code() == Errc::timeout ||
                 r.status().code() == Errc::protocol)) {
        conn.reset();
        joined_ = false;
      }
      done(std::move(r));
    }
    if (conn && !leaving_.load() && Clock::now() >= next_beat) {
      if (service_.addresses().size() > 1) conn->set_timeout(std::min(opts_.timeout, kBeatAnswer));
      auto r = conn->call(
          proto::kProtoMgmt, proto::kMgmtCall,
          request(cred, [&](schema::MgmtReq::Builder b) { b.setHeartbeat(opts_.self.rank); }));
      conn->set_timeout(opts_.timeout);
      if (!r) {
        if (r.status().code() == Errc::stale) {
          log::warn(
              "the management service no longer counts this engine as joined ({}): "
              "joining again",
              r.status().message());
        } else {
          log::warn("lost the management service at {}: {}", at, r.status().to_string());
        }
        conn.reset();
        joined_ = false;
      }
      next_beat = Clock::now() + opts_.heartbeat;
    }
  }
}

}  // namespace tessera::mgmt
