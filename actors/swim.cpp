#include "actors/swim.hpp"

#include <boost/fiber/future.hpp>

#include <algorithm>

#include "proto/protocol.hpp"
#include "proto/capnp_util.hpp"
#include "proto/swim.capnp.h"
#include "core/log.hpp"
#include "core/target.hpp"

namespace tessera {

namespace {
schema::SwimState to_wire(SwimActor::State s) {
  switch (s) {
    case SwimActor::State::alive:
      return schema::SwimState::ALIVE;
    case SwimActor::State::suspect:
      return schema::SwimState::SUSPECT;
    case SwimActor::State::dead:
      return schema::SwimState::DEAD;
  }
  return schema::SwimState::ALIVE;
}
SwimActor::State from_wire(schema::SwimState s) {
  switch (s) {
    case schema::SwimState::SUSPECT:
      return SwimActor::State::suspect;
    case schema::SwimState::DEAD:
      return SwimActor::State::dead;
    default:
      return SwimActor::State::alive;
  }
}
const char* name(SwimActor::State s) {
  return s == SwimActor::State::alive     ? "alive"
         : s == SwimActor::State::suspect ? "suspect"
                                          : "dead";
}
}  // namespace

SwimActor::SwimActor(ActorRuntime& rt, uint32_t self, SwimOptions opts, Members members,
                     ReportDead report_dead)
    : rt_(rt),
      self_(self),
      opts_(opts),
      fetch_members_(std::move(members)),
      report_dead_(std::move(report_dead)),
      rng_(rt.target().env().random() ^ (uint64_t{self} << 32)) {}

void SwimActor::start() {
  if (opts_.period.count() == 0) return;
  rt_.target().spawn([this] { loop(); });
}

uint32_t SwimActor::sends_per_news() const {
  uint32_t log2 = 0;
  while ((size_t{1} << log2) < members_.size() + 2) ++log2;
  return 3 * log2;
}

Buffer SwimActor::encode(uint32_t dst, uint32_t target) {
  // The news with the most sends left (the newest) first; the receiver's own entry when this
  // engine does not believe it alive, and the ping-req target's, whatever is left of them.
  std::vector<uint32_t> ranks;
  auto add = [&](uint32_t r) {
    auto it = members_.find(r);
    if (it != members_.end() && std::find(ranks.begin(), ranks.end(), r) == ranks.end()) {
      ranks.push_back(r);
    }
  };
  for (uint32_t r : {dst, target}) {
    auto it = members_.find(r);
    if (it != members_.end() && it->second.state != State::alive) add(r);
  }
  std::vector<std::pair<uint32_t, uint32_t>> fresh;  // (sends left, rank)
  for (const auto& [r, left] : news_) fresh.emplace_back(left, r);
  std::sort(fresh.begin(), fresh.end(), std::greater<>());
  for (const auto& [left, r] : fresh) {
    if (ranks.size() >= kMaxUpdates) break;
    add(r);
  }
  capnp::MallocMessageBuilder b(256);
  auto p = b.initRoot<schema::SwimPing>();
  p.setFrom(self_);
  p.setIncarnation(incarnation_);
  p.setTarget(target);
  auto l = p.initUpdates(static_cast<unsigned>(ranks.size()));
  for (unsigned i = 0; i < ranks.size(); ++i) {
    const Member& m = members_.at(ranks[i]);
    l[i].setRank(ranks[i]);
    l[i].setState(to_wire(m.state));
    l[i].setIncarnation(m.incarnation);
    auto it = news_.find(ranks[i]);
    if (it != news_.end() && --it->second == 0) news_.erase(it);
  }
  return capn::to_body(b);
}

// Learns what a ping or an ack says: the sender is alive, and its view of everyone.
void SwimActor::absorb(const Message& m) {
  struct U {
    uint32_t rank;
    State state;
    uint64_t inc;
  };
  uint32_t from = 0;
  uint64_t from_inc = 0;
  std::vector<U> ups;
  {
    capn::DecodeScope ds;
    capn::BodyReader br(m.body);
    // Pings and acks share their first fields (from, incarnation, updates).
    auto r = br.root<schema::SwimAck>();
    from = r.getFrom();
    from_inc = r.getIncarnation();
    for (auto u : r.getUpdates()) {
      ups.push_back({u.getRank(), from_wire(u.getState()), u.getIncarnation()});
    }
    if (ds.failed()) {
      log::warn("swim: malformed message from rank {}: {}", m.src.rank, ds.what());
      return;
    }
  }
  ups.push_back({from, State::alive, from_inc});
  for (const auto& u : ups) {
    if (u.rank == self_) {
      // Refute: whoever suspects this engine learns a newer incarnation from it.
      if (u.state != State::alive && u.inc >= incarnation_) {
        incarnation_ = u.inc + 1;
        log::info("swim: rank {} was {} at incarnation {}; refuting with {}", self_, name(u.state),
                  u.inc, incarnation_);
      }
      continue;
    }
    auto it = members_.find(u.rank);
    if (it == members_.end()) continue;  // not (yet) in this engine's member list
    Member& mb = it->second;
    switch (u.state) {
      case State::alive:
        // Only a higher incarnation clears a suspicion, even one heard from the member itself:
        // this engine's reply then carries the suspicion to it, and it refutes at once with a
        // higher incarnation that clears it everywhere. (Clearing it here alone hid the
        // suspicion from the member while the others kept it: a rank restarted quickly was
        // declared dead by those that never heard it refute.)
        if (u.inc > mb.incarnation) {
          if (mb.state != State::alive)
            log::info("swim: rank {} is alive (incarnation {})", u.rank, u.inc);
          mb.state = mb.state == State::dead && u.rank != from ? State::dead : State::alive;
          mb.incarnation = std::max(mb.incarnation, u.inc);
          if (mb.state == State::alive) mb.reported = false;
          spread(u.rank);
        }
        break;
      case State::suspect:
        if (mb.state == State::alive && u.inc >= mb.incarnation) suspect(u.rank, u.inc);
        break;
      case State::dead:
        break;  // only the management service's member list makes a rank dead here
    }
  }
}

void SwimActor::suspect(uint32_t rank, uint64_t incarnation) {
  Member& mb = members_[rank];
  if (mb.state != State::alive) return;
  mb.state = State::suspect;
  mb.incarnation = std::max(mb.incarnation, incarnation);
  mb.suspect_since = now();
  spread(rank);
  log::warn("swim: rank {} is suspect (incarnation {})", rank, mb.incarnation);
}

void SwimActor::check_suspects() {
  const Nanos t = now();
  for (auto& [rank, mb] : members_) {
    if (mb.state != State::suspect || t - mb.suspect_since < opts_.suspicion) continue;
    mb.state = State::dead;
    log::warn("swim: rank {} did not refute its suspicion within {} ms: dead", rank,
              opts_.suspicion.count());
  }
  for (auto& [rank, mb] : members_) {
    if (mb.state != State::dead || mb.reported) continue;
    mb.reported = true;
    Status st = report_dead_(rank, mb.life);
    if (!st.is_ok()) {
      log::info("swim: the management service did not take rank {} as dead: {}", rank,
                st.to_string());
      // It heard from the rank itself: believe it, and probe again.
      mb.state = State::alive;
      mb.reported = false;
    }
  }
}

void SwimActor::refresh_members() {
  auto r = fetch_members_();
  if (!r) {
    log::debug("swim: member list unavailable: {}", r.status().to_string());
    return;
  }
  std::map<uint32_t, Member> next;
  for (const auto& p : *r) {
    if (p.rank == self_) continue;
    rt_.set_route(p.rank, 0, p.fabric_addr);
    auto it = members_.find(p.rank);
    Member mb = it == members_.end() ? Member{} : it->second;
    if (it != members_.end() && mb.life != p.life) {
      // Another process of the rank joined: what this engine thought of the previous one
      // (a suspicion, its incarnation) does not apply to it.
      if (mb.state != State::alive) {
        log::info("swim: rank {} joined again (join {}): a fresh start", p.rank, p.life);
      }
      mb = Member{};
    } else if (mb.state == State::dead && mb.reported) {
      // Declared dead, and listed again: a fresh start.
      mb = Member{State::alive, mb.incarnation, {}, false, mb.life};
    }
    mb.life = p.life;
    next.emplace(p.rank, mb);
  }
  bool changed = next.size() != members_.size();
  for (const auto& [rank, mb] : next) changed = changed || members_.count(rank) == 0;
  members_ = std::move(next);
  for (auto it = news_.begin(); it != news_.end();) {
    it = members_.count(it->first) != 0 ? std::next(it) : news_.erase(it);
  }
  if (changed) {
    ring_.clear();
    for (const auto& [rank, mb] : members_) ring_.push_back(rank);
    ring_.insert(std::lower_bound(ring_.begin(), ring_.end(), self_), self_);
  }
}

uint32_t SwimActor::pick(uint64_t round) const {
  const size_t n = ring_.size();
  if (n < 2) return UINT32_MAX;
  const size_t me =
      static_cast<size_t>(std::lower_bound(ring_.begin(), ring_.end(), self_) - ring_.begin());
  // The scheduled member, or the first after it that is not dead (then it has two probers).
  const size_t first = me + 1 + round % (n - 1);
  for (size_t k = 0; k + 1 < n; ++k) {
    const uint32_t r = ring_[(first + k) % n];
    if (r == self_) continue;
    auto it = members_.find(r);
    if (it != members_.end() && it->second.state != State::dead) return r;
  }
  return UINT32_MAX;
}

bool SwimActor::ping(uint32_t rank, std::chrono::milliseconds timeout) {
  Message m;
  m.dst = ActorAddr{rank, 0, proto::kSwimActor};
  m.protocol = proto::kProtoSwim;
  m.method = proto::kSwimPing;
  m.body = encode(rank);
  auto r = rt_.ask(std::move(m), timeout, proto::kSwimActor);
  if (!r || r->status != Errc::ok) return false;
  absorb(*r);
  return true;
}

bool SwimActor::ping_via(uint32_t helper, uint32_t rank, std::chrono::milliseconds timeout) {
  Message m;
  m.dst = ActorAddr{helper, 0, proto::kSwimActor};
  m.protocol = proto::kProtoSwim;
  m.method = proto::kSwimPingReq;
  m.body = encode(helper, rank);
  auto r = rt_.ask(std::move(m), timeout, proto::kSwimActor);
  if (!r || r->status != Errc::ok) return false;
  absorb(*r);
  return true;
}

void SwimActor::loop() {
  auto next_refresh = now();
  while (!stopping_ && !rt_.target().stopping()) {
    const auto round = now();
    if (round >= next_refresh) {
      refresh_members();
      next_refresh = round + opts_.refresh;
    }
    const Nanos period = opts_.period;
    // The round's number: the nearest multiple of the period on the wall clock (a timer that
    // fires a little late or early begins the same round).
    const uint32_t target =
        pick(static_cast<uint64_t>((rt_.target().env().wall() + period / 2) / period));
    // Every suspect but the probed one is pinged too, beside the probe: a live suspect hears of
    // its suspicion from every engine that holds it and refutes within the round, instead of
    // waiting until gossip brings the suspicion to it.
    std::vector<boost::fibers::future<bool>> rechecks;
    for (const auto& [r, mb] : members_) {
      if (r == target || mb.state != State::suspect) continue;
      auto p = std::make_shared<boost::fibers::promise<bool>>();
      rechecks.push_back(p->get_future());
      const uint32_t rank = r;
      rt_.target().spawn([this, p, rank] { p->set_value(ping(rank, opts_.ping_timeout)); });
    }
    if (target != UINT32_MAX && !ping(target, opts_.ping_timeout) && !stopping_ &&
        !rt_.target().stopping()) {
      // Indirect probes through up to `indirect` other live members, in parallel.
      std::vector<uint32_t> helpers;
      for (const auto& [r, mb] : members_) {
        if (r != target && mb.state == State::alive) helpers.push_back(r);
      }
      std::shuffle(helpers.begin(), helpers.end(), rng_);
      if (helpers.size() > opts_.indirect) helpers.resize(opts_.indirect);
      auto left =
          opts_.period - std::chrono::duration_cast<std::chrono::milliseconds>(now() - round);
      left = std::max(left, opts_.ping_timeout);
      std::vector<boost::fibers::future<bool>> acks;
      for (uint32_t h : helpers) {
        auto p = std::make_shared<boost::fibers::promise<bool>>();
        acks.push_back(p->get_future());
        rt_.target().spawn([this, p, h, target, left] { p->set_value(ping_via(h, target, left)); });
      }
      bool ok = false;
      for (auto& f : acks) ok = f.get() || ok;
      auto it = members_.find(target);
      if (!ok && it != members_.end()) suspect(target, it->second.incarnation);
    }
    for (auto& f : rechecks) f.get();
    check_suspects();
    // Until the next round, at the next multiple of the period on the wall clock (a round that
    // overran its period gives up the round it ran into). A suspicion that runs out meanwhile is
    // declared at its deadline (at the round's end it came up to a period late).
    const Nanos wall = rt_.target().env().wall();
    const Nanos next_round = now() + (period - wall % period);
    for (Nanos t = now(); t < next_round && !stopping_ && !rt_.target().stopping(); t = now()) {
      if (const Nanos wake = std::min(next_round, next_deadline()); wake > t) {
        rt_.target().sleep_for(wake - t);
      }
      check_suspects();
    }
  }
}

Nanos SwimActor::next_deadline() const {
  Nanos first = Nanos::max();
  for (const auto& [rank, mb] : members_) {
    if (mb.state == State::suspect) first = std::min(first, mb.suspect_since + opts_.suspicion);
  }
  return first;
}

void SwimActor::receive(Message& m) {
  if (m.protocol != proto::kProtoSwim) {
    if (m.corr != 0) (void)rt_.reply(m, Status(Errc::protocol, "swim actor got another protocol"));
    return;
  }
  // Membership gossip is believed only from engines: a client could otherwise declare ranks
  // dead or alive.
  if (!m.trusted()) {
    if (m.corr != 0) {
      (void)rt_.reply(m, Status(Errc::unauthenticated,
                                "failure detection is spoken only among engines"));
    }
    return;
  }
  if (m.method == proto::kSwimPing) {
    absorb(m);
    (void)rt_.reply(m, Status(), encode(m.src.rank));
    return;
  }
  if (m.method == proto::kSwimPingReq) {
    uint32_t target = 0;
    {
      capn::DecodeScope ds;
      capn::BodyReader br(m.body);
      target = br.root<schema::SwimPing>().getTarget();
      if (ds.failed()) {
        (void)rt_.reply(m, Status(Errc::protocol, "malformed ping-req: " + ds.what()));
        return;
      }
    }
    absorb(m);
    auto req = std::make_shared<Message>(std::move(m));
    rt_.target().spawn([this, req, target] {
      bool ok = target != self_ && members_.count(target) != 0 && ping(target, opts_.ping_timeout);
      (void)rt_.reply(
          *req,
          ok ? Status()
             : Status(Errc::unreachable, fmt::format("rank {} did not answer a ping", target)),
          encode(req->src.rank));
    });
    return;
  }
  if (m.corr != 0) {
    (void)rt_.reply(m, Status(Errc::protocol, fmt::format("unknown swim method {}", m.method)));
  }
}

}  // namespace tessera
