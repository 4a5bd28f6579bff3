#include "core/actor.hpp"

#include <random>

#include "core/log.hpp"
#include "core/no_lock.hpp"

namespace tessera {

namespace {
uint64_t random_corr() {
  std::random_device rd;
  uint64_t v = (uint64_t{rd()} << 32) | rd();
  return v == 0 ? 1 : v;  // corr 0 means "no reply expected"
}
}  // namespace

ActorRuntime::ActorRuntime(Target& target, uint32_t rank)
    : target_(target), rank_(rank), next_corr_(random_corr()) {
  // Whether or not actors get registered, pending asks must fail when the target stops.
  target_.on_stop([this] { close(); });
}

ActorRuntime::~ActorRuntime() = default;

void ActorRuntime::set_route(uint32_t rank, uint16_t target, std::string fabric_addr) {
  routes_[{rank, target}] = std::move(fabric_addr);
}

void ActorRuntime::register_actor(uint16_t id, Actor* actor) {
  auto mb = std::make_unique<Mailbox>();
  mb->actor = actor;
  Mailbox* raw = mb.get();
  mailboxes_[id] = std::move(mb);
  target_.spawn([this, raw] { run_mailbox(raw); });
}

void ActorRuntime::run_mailbox(Mailbox* mb) {
  NoLock nl;
  while (true) {
    while (mb->queue.empty() && !mb->closed) mb->cv.wait(nl);
    if (mb->queue.empty()) return;  // closed and drained
    Queued q = std::move(mb->queue.front());
    mb->queue.pop_front();
    // A client's request counts against admission until its actor is done with it.
    auto run = [mb](Message& m, uint64_t admitted) {
      mb->actor->receive(m);
      if (admitted > 0) {
        --mb->client_requests;
        mb->client_bytes -= admitted;
      }
    };
    if (mb->actor->concurrent()) {
      target_.spawn(
          [run, m = std::move(q.m), admitted = q.admitted]() mutable { run(m, admitted); });
    } else {
      run(q.m, q.admitted);
    }
  }
}

void ActorRuntime::close() {
  closed_ = true;
  for (auto& [id, mb] : mailboxes_) {
    mb->closed = true;
    mb->cv.notify_all();
  }
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [corr, p] : pending) {
    p.promise->set_value(Status(Errc::shutdown, "target stopping"));
  }
}

Status ActorRuntime::route(Message&& m) {
  if (m.dst.rank == rank_) {
    if (!peers_ || m.dst.target >= peers_->size()) {
      return Status(Errc::unreachable, fmt::format("no target {} on rank {}", m.dst.target, rank_));
    }
    ActorRuntime* peer = (*peers_)[m.dst.target];
    if (peer == this) {
      deliver(std::move(m));
    } else {
      peer->post_deliver(std::move(m));
    }
    return Status();
  }
  if (transport_ == nullptr) return Status(Errc::unreachable, "no fabric transport");
  std::string addr;
  if (m.is_reply() && !m.reply_to.empty()) {
    addr = std::move(m.reply_to);
  } else {
    auto it = routes_.find({m.dst.rank, m.dst.target});
    if (it == routes_.end()) {
      return Status(Errc::unreachable,
                    fmt::format("no route to rank {} target {}", m.dst.rank, m.dst.target));
    }
    addr = it->second;
  }
  m.reply_to = transport_->address();
  // Fault point: the fabric refuses this message (an asker's request fails at once; a lost
  // reply leaves its asker to time out).
  if (target_.env().fault("net.send")) {
    return Status(Errc::unreachable, fmt::format("injected fault: send to {} failed", addr));
  }
  return transport_->send(addr, std::move(m));
}

Status ActorRuntime::tell(Message m, uint16_t from_actor) {
  m.src = ActorAddr{rank_, static_cast<uint16_t>(target_.index()), from_actor};
  return route(std::move(m));
}

Result<Message> ActorRuntime::ask(Message m, Nanos timeout, uint16_t from_actor, bool* sent) {
  if (sent != nullptr) *sent = false;
  if (closed_) return Status(Errc::shutdown, "target stopping");
  uint64_t corr = next_corr_++;
  if (corr == 0) corr = next_corr_++;
  m.corr = corr;
  m.flags &= static_cast<uint16_t>(~kMsgReply);
  boost::fibers::promise<Result<Message>> p;
  auto fut = p.get_future();
  pending_[corr] = Pending{&p, m.dst};
  TimerId timer = target_.add_timer(timeout, [this, corr, timeout] {
    auto it = pending_.find(corr);
    if (it == pending_.end()) return;
    auto* pp = it->second.promise;
    pending_.erase(it);
    pp->set_value(
        Status(Errc::timeout, fmt::format("no reply within {} ms", timeout.count() / 1'000'000)));
  });
  Status st = tell(std::move(m), from_actor);
  if (!st.is_ok()) {
    target_.cancel_timer(timer);
    pending_.erase(corr);
    return st;
  }
  if (sent != nullptr) *sent = true;
  Result<Message> r = fut.get();
  target_.cancel_timer(timer);
  return r;
}

Message make_reply(const Message& req, const Status& st, Buffer body, Buffer bulk) {
  Message m;
  m.dst = req.src;
  m.src = req.dst;
  m.corr = req.corr;
  m.protocol = req.protocol;
  m.method = req.method;
  m.flags = kMsgReply;
  m.status = st.code();
  m.error = st.message();
  m.reply_to = req.reply_to;
  m.body = std::move(body);
  m.bulk = std::move(bulk);
  return m;
}

size_t ActorRuntime::fail_asks_to(uint32_t rank, int32_t target, const Status& st) {
  std::vector<boost::fibers::promise<Result<Message>>*> failed;
  for (auto it = pending_.begin(); it != pending_.end();) {
    const ActorAddr& d = it->second.dst;
    if (d.rank == rank && (target < 0 || d.target == static_cast<uint16_t>(target))) {
      failed.push_back(it->second.promise);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto* p : failed) p->set_value(st);
  return failed.size();
}

Status ActorRuntime::reply(const Message& req, Status st, Buffer body, Buffer bulk) {
  return route(make_reply(req, st, std::move(body), std::move(bulk)));
}

void ActorRuntime::deliver(Message m) {
  if (m.is_reply()) {
    if (trusted_replies_ && !m.trusted()) {
      ++untrusted_replies_;
      return;
    }
    auto it = pending_.find(m.corr);
    if (it == pending_.end()) {
      ++dropped_;
      log::debug("late or unknown reply corr={} dropped", m.corr);
      return;
    }
    auto* p = it->second.promise;
    pending_.erase(it);
    p->set_value(std::move(m));
    return;
  }
  auto it = mailboxes_.find(m.dst.actor);
  if (it == mailboxes_.end() || it->second->closed) {
    ++dropped_;
    static log::RateLimit limit(5);
    if (uint64_t skipped = 0; limit.allow(&skipped)) {
      log::warn("message for unknown actor {} on target {} dropped ({} more not shown)",
                m.dst.actor, target_.index(), skipped);
    }
    if (m.corr != 0) {
      (void)reply(m, Status(Errc::unreachable, fmt::format("no actor {}", m.dst.actor)));
    }
    return;
  }
  Mailbox& mb = *it->second;
  uint64_t admitted = 0;
  if (m.origin == Origin::peer || m.origin == Origin::forged) {
    admitted = 1 + m.body.size() + m.bulk.size();  // never 0: it marks a counted request
    if (mb.client_requests >= max_requests_ || mb.client_bytes + admitted > max_bytes_) {
      ++refused_busy_;
      if (m.corr != 0) {
        (void)reply(
            m, Status(Errc::busy,
                      fmt::format("rank {} target {} is busy ({} requests, {} bytes in "
                                  "flight): retry later",
                                  rank_, target_.index(), mb.client_requests, mb.client_bytes)));
      }
      return;
    }
    ++mb.client_requests;
    mb.client_bytes += admitted;
  }
  mb.queue.push_back(Queued{std::move(m), admitted});
  mb.cv.notify_one();
}

void ActorRuntime::post_deliver(Message m) {
  target_.post([this, m = std::move(m)]() mutable { deliver(std::move(m)); });
}

}  // namespace tessera
