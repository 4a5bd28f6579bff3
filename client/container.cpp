#include "client/container.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "client/container_impl.hpp"
#include "core/anchor.hpp"
#include "core/checksum.hpp"
#include "core/log.hpp"
#include "mgmt/leader.hpp"
#include "net/stream.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"

namespace tessera {

using Clock = std::chrono::steady_clock;

namespace contimpl {

void learn(Container::State& st) {
  mgmt::learn_view(*st.im->rt, *st.view);
  st.version = st.view->pool.map.version;
}

namespace {
// The pool's view from the management service (client target fiber; the blocking call runs on a
// helper thread and the answer comes back through the target's inbox).
Result<mgmt::PoolView> ask_service(const StatePtr& st) {
  auto p = std::make_shared<boost::fibers::promise<Result<mgmt::PoolView>>>();
  auto f = p->get_future();
  Target* t = st->im->target.get();
  std::thread([st, p, t] {
    MgmtClient mc(st->mgmt_addr, st->timeout, st->cred);
    auto res = std::make_shared<Result<mgmt::PoolView>>(mc.pool_query(st->pool_uuid));
    t->post([p, res] { p->set_value(std::move(*res)); });
  }).detach();
  return f.get();
}
}  // namespace

// Fetches the current pool map (client target fiber).
Status refresh(const StatePtr& st) {
  auto r = st->map_source ? st->map_source() : ask_service(st);
  if (!r) return r.status();
  if (r->pool.map.version >= st->view->pool.map.version) {
    st->view = std::make_shared<const mgmt::PoolView>(std::move(*r));
    learn(*st);
  }
  return Status();
}

IoCtxValues ctx_of(const Container::State& st) {
  return {st.pool, st.view->pool.map.version, st.cookie, st.cont};
}

IoCtxValues read_ctx(const Container::State& st, ReadAt at) {
  IoCtxValues c = ctx_of(st);
  c.tx_read = at.owner;
  return c;
}

bool retryable(Errc e) {
  return e == Errc::stale || e == Errc::unreachable || e == Errc::timeout ||
         e == Errc::unavailable || e == Errc::shutdown || e == Errc::busy;
}

Result<Message> send(Container::State& st, const placement::Shard& s, uint16_t method, Buffer body,
                     Buffer bulk, Nanos timeout, bool* unanswered) {
  Message m;
  m.dst = ActorAddr{s.rank, static_cast<uint16_t>(s.target), proto::kObjectServiceActor};
  m.protocol = proto::kProtoObject;
  m.method = method;
  m.body = std::move(body);
  m.bulk = std::move(bulk);
  bool sent = false;
  auto r = st.im->rt->ask(std::move(m), timeout, 0, &sent);
  if (unanswered != nullptr) *unanswered = sent && !r;
  if (!r) return r.status();
  if (r->status != Errc::ok) return Status(r->status, r->error);
  return r;
}

constexpr Nanos kReplicaAttempt = std::chrono::seconds(2);
constexpr Nanos kLeaderAttempt = std::chrono::seconds(10);
constexpr Nanos kMapWatch = std::chrono::seconds(1);

// A leader that died or hangs does not answer. While some leader attempt has waited kMapWatch
// or longer, the pool map is fetched every kMapWatch: learn() fails the asks to the targets
// that left it, so their requests go to the new layout at once instead of waiting out their
// attempt. One timer per container, armed only while attempts are outstanding.
//
// When the watch last had news: the oldest waiting attempt's start or its own last fetch.
Clock::time_point watch_since(const Container::State& st) {
  return std::max(st.waiting.begin()->second, st.watch_fetched);
}

void arm_map_watch(const StatePtr& sp) {
  if (sp->watch_armed || sp->waiting.empty()) return;
  sp->watch_armed = true;
  Target* t = sp->im->target.get();
  const auto due = watch_since(*sp) + kMapWatch - Clock::now();
  t->add_timer(std::max<Nanos>(due, Nanos(0)), [sp, t] {
    sp->watch_armed = false;
    if (sp->waiting.empty()) return;
    if (Clock::now() - watch_since(*sp) >= kMapWatch) {
      sp->watch_fetched = Clock::now();
      t->spawn([sp] { (void)refresh(sp); });
    }
    arm_map_watch(sp);
  });
}

// Runs one request against the group of (oid, dkey): the leader (writes) or any healthy
// replica (reads), refreshing the map and retrying while the failure is one a new map cures.
Result<Message> op(const StatePtr& sp, ObjectId oid, const std::string& dkey, Pick pick,
                   uint16_t method, const std::function<Buffer()>& body, const Buffer& bulk,
                   int position) {
  Container::State& st = *sp;
  const auto deadline = Clock::now() + st.timeout;
  Status last(Errc::unavailable, "no healthy replica");
  std::vector<Status> bad_copies;  // replicas read this round whose copy failed verification
  if (st.suspect) {
    st.suspect = false;
    (void)refresh(sp);
  }
  uint32_t busy_rounds = 0;  // rounds a target answered `busy`: back off longer each time
  bool rf_looked = false;    // a refusal beyond the rf sent for a newer map once
  while (true) {
    bool busy = false;
    bool newer_map = false;
    auto placed = placement_of(st, oid);
    if (!placed) return placed.status();
    const placement::Placement* place = placed->get();
    std::vector<placement::Shard> cands;
    auto group = place->dkey(dkey);
    if (position >= 0 && static_cast<size_t>(position) < group.size()) {
      group = {group[static_cast<size_t>(position)]};
    }
    if (pick == Pick::leader) {
      // The first member holding complete data leads (it stamps the epoch and decides
      // conditions); while rebuild fills every home, a serving former holder leads.
      for (const auto& p : group) {
        if (p.complete) cands.push_back(p.home);
      }
      for (const auto& p : group) {
        if (p.prev) cands.push_back(*p.prev);
      }
      for (const auto& p : group) {
        if (p.home.available) cands.push_back(p.home);
      }
      if (cands.size() > 1) cands.resize(1);
    } else {
      for (const auto& p : group) {
        if (const placement::Shard* r = p.reader(); r != nullptr) {
          placement::add_unique(cands, *r);
        }
      }
      // Replicas on engines that are away (stopped for a restart, dead but kept in the map)
      // come last: they would only time out.
      auto live = std::stable_partition(cands.begin(), cands.end(), [&](const auto& c) {
        auto a = st.view->addrs.find(c.rank);
        return a == st.view->addrs.end() || a->second.state == "joined";
      });
      const auto n_live = live - cands.begin();
      if (n_live > 1) {
        std::rotate(cands.begin(), cands.begin() + static_cast<long>(st.rotation++ % n_live), live);
      }
    }
    bool refresh_needed = cands.empty();
    if (cands.empty()) {
      last = Status(Errc::unavailable,
                    fmt::format("no healthy replica of this object in pool map version {}",
                                st.view->pool.map.version));
    }
    size_t gone = 0;  // candidates on engines the system counts as dead or excluded
    for (size_t i = 0; i < cands.size(); ++i) {
      if (auto a = st.view->addrs.find(cands[i].rank);
          a != st.view->addrs.end() &&
          (a->second.state == "dead" || a->second.state == "excluded")) {
        // Its targets stay in the map (nothing else holds their data) but nobody answers
        // there: say where the data is instead of waiting for it, or calling it missing.
        last = Status(Errc::unavailable,
                      fmt::format("rank {} target {} holds this data but its engine is {}",
                                  cands[i].rank, cands[i].target, a->second.state));
        ++gone;
        continue;
      }
      auto left = std::chrono::duration_cast<Nanos>(deadline - Clock::now());
      // A dead engine does not answer at all: bound each attempt so that the next replica,
      // or a new map, gets its turn.
      bool more = pick == Pick::replica && i + 1 < cands.size();
      Nanos t = std::min<Nanos>(left, more ? kReplicaAttempt : kLeaderAttempt);
      if (t <= Nanos(0)) break;
      const uint64_t wait_id = st.next_wait++;
      if (!more) {
        st.waiting.emplace(wait_id, Clock::now());
        arm_map_watch(sp);
      }
      bool unanswered = false;
      auto r = send(st, cands[i], method, body(), Buffer(bulk.data(), bulk.size()), t, &unanswered);
      st.waiting.erase(wait_id);
      if (r) return r;
      last = r.status();
      // A commit that left but was not answered (the answer lost, the wait timed out, the ask
      // failed when the map took the target down) may have committed: it is not sent again.
      // A second attempt is a new transaction: it could apply the changes twice, or fail where
      // the first succeeded and have its caller run the transaction again. One that never left
      // (the fabric refused it) is sent again like any request.
      if (method == proto::kObjTxCommit && unanswered) {
        return Status(Errc::uncertain,
                      fmt::format("{}: the transaction may have committed", last.message()));
      }
      // A replica whose copy fails its checksum (or whose device fails) is read around: the
      // next replica may hold a good copy. Only when none does is the error the answer.
      if (pick == Pick::replica &&
          (last.code() == Errc::checksum || last.code() == Errc::io_error)) {
        log::warn("read of rank {} target {} failed ({}); reading another replica", cands[i].rank,
                  cands[i].target, last.to_string());
        bad_copies.push_back(last);
        continue;
      }
      // `restart`: a change outside a transaction came under a transaction's read; it is
      // tried again at a new epoch. A transaction's commit is not: it runs again as a whole.
      if (last.code() == Errc::busy ||
          (last.code() == Errc::restart && method != proto::kObjTxCommit)) {
        busy = true;  // the target sheds load: same layout, after a pause
        break;
      }
      // The refusal stands on the map the engine serves in: a newer one (the engines back,
      // the container set healthy again) may lift it. One look at the map, not a wait.
      if (last.code() == Errc::rf_exceeded && !rf_looked) {
        rf_looked = true;
        const uint32_t before = st.view->pool.map.version;
        (void)refresh(sp);
        if (st.view->pool.map.version == before) return last;
        newer_map = true;
        break;
      }
      if (!retryable(last.code())) return last;
      refresh_needed = true;
      st.suspect = true;
      if (last.code() == Errc::stale || pick != Pick::replica) break;
    }
    if (newer_map) continue;
    if (gone > 0 && gone == cands.size()) {
      st.suspect = true;  // the next request looks at a fresh map first
      return last;
    }
    if (!bad_copies.empty() && bad_copies.size() == cands.size()) {
      // Every replica answered, none with a good copy: that is the answer, not a retry.
      return bad_copies.front();
    }
    bad_copies.clear();
    if (Clock::now() >= deadline) {
      return Status(last.code(),
                    fmt::format("{} (gave up after {} ms)", last.message(), st.timeout.count()));
    }
    if (busy) {
      const auto pause =
          std::chrono::milliseconds(std::min<uint32_t>(100, 1u << std::min(busy_rounds, 7u)));
      ++busy_rounds;
      st.im->target->sleep_for(pause);
      continue;
    }
    if (refresh_needed) {
      st.im->target->sleep_for(std::chrono::milliseconds(50));
      (void)refresh(sp);
    }
  }
}

}  // namespace contimpl

using namespace contimpl;

namespace {
// The most one update or fetch request carries: larger arrays go in pieces (a message's bulk is
// bounded by the fabric's max_message, 256 MiB by default).
constexpr uint64_t kSplitBytes = 64ull << 20;
}  // namespace

Result<std::unique_ptr<Client>> Client::connect_system(const ClientOptions& opts) {
  MgmtClient mc(opts.engine, opts.timeout);
  auto members = mc.system_query();
  if (!members) return members.status();
  std::string provider = opts.provider;
  for (const auto& m : *members) {
    if (provider.empty()) provider = m.provider;
  }
  if (provider.empty()) return Status(Errc::unavailable, "no engine has joined the system");
  // The access points' addresses: the first one tells whether the system is this host's.
  const auto aps = mgmt::split_addresses(opts.engine);
  auto host = net::parse_endpoint(aps.empty() ? opts.engine : aps.front());
  auto c = start(opts, provider, host && host->address().is_loopback());
  if (!c) return c.status();
  return c;
}

Result<std::unique_ptr<Container>> Client::open_container(const std::string& pool,
                                                          const std::string& cont, bool write) {
  auto mc = std::make_unique<MgmtClient>(impl_->opts.engine, impl_->opts.timeout);
  auto h = mc->cont_open(pool, cont, write);
  if (!h) return h.status();
  std::unique_ptr<Container> c(new Container());
  c->client_ = this;
  c->opened_ = std::move(*h);
  c->mgmt_ = std::move(mc);
  auto st = std::make_shared<Container::State>();
  st->im = impl_.get();
  st->view = std::make_shared<const mgmt::PoolView>(c->opened_.pool);
  st->pool = c->opened_.pool.pool.id;
  st->pool_uuid = c->opened_.pool.pool.uuid;
  st->cont = c->opened_.cont.c.id;
  st->cookie = c->opened_.cookie;
  st->oclass = c->opened_.cont.c.props.oclass;
  st->cell = c->opened_.cont.c.props.cell_size;
  st->mgmt_addr = impl_->opts.engine;
  st->cred = c->mgmt_->cred();
  st->timeout = impl_->opts.timeout;
  run_on_client(*impl_, [&st] { learn(*st); });
  c->st_ = std::move(st);
  if (c->opened_.lease_ms > 0) {
    if (!impl_->leases) impl_->leases = std::make_unique<LeaseKeeper>(impl_->opts.engine);
    impl_->leases->add(c->opened_.cookie, c->opened_.lease_ms);
  }
  return c;
}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (th_.joinable()) th_.join();
}

void LeaseKeeper::add(uint64_t cookie, uint32_t lease_ms) {
  std::lock_guard lk(mu_);
  leases_[cookie] = lease_ms;
  if (!th_.joinable()) th_ = std::thread([this] { run(); });
  cv_.notify_all();
}

void LeaseKeeper::remove(uint64_t cookie) {
  std::lock_guard lk(mu_);
  leases_.erase(cookie);
}

void LeaseKeeper::run() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    uint32_t shortest = UINT32_MAX;
    for (const auto& [cookie, ms] : leases_) shortest = std::min(shortest, ms);
    const auto period = std::chrono::milliseconds(
        shortest == UINT32_MAX ? 1000 : std::max<uint32_t>(100, shortest / 4));
    cv_.wait_for(lk, period, [this] { return stop_; });
    if (stop_ || leases_.empty()) continue;
    std::vector<uint64_t> cookies;
    for (const auto& [cookie, ms] : leases_) cookies.push_back(cookie);
    lk.unlock();
    // A renewal that fails (the service restarting) is tried again next period; the lease
    // leaves room for three of them.
    Status st = MgmtClient(mgmt_, period).handle_renew(cookies);
    if (!st.is_ok())
      log::debug("renewing {} container handle leases: {}", cookies.size(), st.to_string());
    lk.lock();
  }
}

Container::~Container() {
  (void)close();
}

Status Container::close() {
  if (closed_) return Status();
  closed_ = true;
  if (client_->impl_->leases) client_->impl_->leases->remove(opened_.cookie);
  return mgmt_->cont_close(opened_.pool.pool.id, opened_.cookie);
}

uint32_t Container::map_version() const {
  return st_->version.load();
}

Result<ObjectId> Container::make_oid(uint32_t hi, uint64_t lo, const std::string& oclass) const {
  uint16_t id = st_->oclass;
  if (!oclass.empty()) {
    const auto* cls = placement::find_class(oclass);
    if (cls == nullptr) {
      return Status(Errc::invalid_argument, fmt::format("unknown object class '{}'", oclass));
    }
    id = cls->id;
  }
  return placement::with_class(ObjectId{hi, lo}, id);
}

Container::Future<uint64_t> Container::update_async(ObjectId oid, std::string dkey,
                                                    std::string akey, ValueKind kind,
                                                    uint64_t offset, Buffer data,
                                                    UpdateFlags flags) {
  auto st = st_;
  auto bulk = std::make_shared<Buffer>(std::move(data));
  return submit<uint64_t>(
      st, [st, oid, dkey, akey, kind, offset, bulk, flags]() -> Result<uint64_t> {
        TESSERA_TRY(placement::check_oid(oid));
        const placement::ObjectClass* ec = ec_class(oid);
        auto once = [&](uint64_t off, const Buffer& data) -> Result<uint64_t> {
          if (ec != nullptr) return ec_update(st, *ec, oid, dkey, akey, kind, off, data, flags);
          uint32_t crc = crc32c(data.span());
          auto body = [&] {
            return update_body(oid, dkey, akey, kind, off, crc, flags, ctx_of(*st));
          };
          auto r = op(st, oid, dkey, Pick::leader, proto::kObjUpdate, body, data);
          if (!r) return r.status();
          return decoded(*r, decode_epoch);
        };
        // A single value is one request (up to the fabric's message limit).
        if (bulk->size() <= kSplitBytes || kind != ValueKind::array) return once(offset, *bulk);
        if (flags.cond != Cond::none) {
          return Status(
              Errc::invalid_argument,
              fmt::format("a conditional update is one request: at most {} bytes", kSplitBytes));
        }
        // A large array update goes as consecutive updates of whole records (and, erasure
        // coded, whole stripes), each durable on its own.
        const uint64_t rsize = std::max<uint32_t>(1, flags.rsize);
        const uint64_t unit = rsize * (ec != nullptr ? uint64_t{ec->data} * st->cell : 1);
        const uint64_t chunk = std::max(unit, kSplitBytes / unit * unit);
        uint64_t epoch = 0;
        for (uint64_t pos = 0; pos < bulk->size(); pos += chunk) {
          const uint64_t len = std::min(chunk, bulk->size() - pos);
          auto r = once(offset + pos / rsize, Buffer(bulk->data() + pos, len));
          if (!r) {
            return Status(r.status().code(),
                          fmt::format("{} (bytes [{}, {}) of {} were stored)", r.status().message(),
                                      0, pos, bulk->size()));
          }
          epoch = *r;
        }
        return epoch;
      });
}

namespace contimpl {
Result<FetchResult> fetch_once(const StatePtr& st, const placement::ObjectClass* ec, ObjectId oid,
                               const std::string& dkey, const std::string& akey, ValueKind kind,
                               uint64_t offset, uint64_t length, uint64_t epoch,
                               FetchFlags flags) {
  if (ec != nullptr) return ec_fetch(st, *ec, oid, dkey, akey, kind, offset, length, epoch, flags);
  auto body = [&] {
    return fetch_body(oid, dkey, akey, kind, offset, length, epoch, flags, ctx_of(*st));
  };
  auto r = op(st, oid, dkey, Pick::replica, proto::kObjFetch, body, {});
  if (!r) return r.status();
  return decoded(*r, decode_fetch);
}
}  // namespace contimpl

Container::Future<FetchResult> Container::fetch_async(ObjectId oid, std::string dkey,
                                                      std::string akey, ValueKind kind,
                                                      uint64_t offset, uint64_t length,
                                                      uint64_t epoch, FetchFlags flags) {
  auto st = st_;
  return submit<FetchResult>(st, [=]() -> Result<FetchResult> {
    TESSERA_TRY(placement::check_oid(oid));
    const placement::ObjectClass* ec = ec_class(oid);
    auto once = [&](uint64_t off, uint64_t len) {
      return fetch_once(st, ec, oid, dkey, akey, kind, off, len, epoch, flags);
    };
    const uint64_t rsize = std::max<uint32_t>(1, flags.rsize);
    if (kind != ValueKind::array) return once(offset, length);
    uint64_t want = length;
    if (want == 0) {  // up to the end: one request, unless the end is too far for one
      auto whole = once(offset, 0);
      if (whole || whole.status().code() != Errc::too_big) return whole;
      auto probe = once(offset, 1);
      if (!probe) return probe.status();
      want = probe->size > offset ? probe->size - offset : 0;
    }
    if (want * rsize <= kSplitBytes) return once(offset, want);
    // A large range comes as consecutive fetches of whole records, put together.
    const uint64_t chunk = std::max<uint64_t>(1, kSplitBytes / rsize);
    FetchResult out;
    out.data.reset(want * rsize);
    for (uint64_t at = 0; at < want; at += chunk) {
      const uint64_t n = std::min(chunk, want - at);
      auto r = once(offset + at, n);
      if (!r) return r.status();
      std::memcpy(out.data.data() + at * rsize, r->data.data(),
                  std::min<uint64_t>(r->data.size(), n * rsize));
      out.exists = out.exists || r->exists;
      out.size = std::max(out.size, r->size);
      out.epoch = std::max(out.epoch, r->epoch);
      for (const auto& h : r->holes) {
        if (!out.holes.empty() && out.holes.back().first + out.holes.back().second == h.first) {
          out.holes.back().second += h.second;
        } else {
          out.holes.push_back(h);
        }
      }
    }
    return out;
  });
}

Container::Future<uint64_t> Container::punch_async(ObjectId oid, std::string dkey,
                                                   std::string akey) {
  return punch_range_async(oid, std::move(dkey), std::move(akey), 0, 0, 1);
}

Container::Future<uint64_t> Container::punch_range_async(ObjectId oid, std::string dkey,
                                                         std::string akey, uint64_t offset,
                                                         uint64_t length, uint32_t rsize) {
  auto st = st_;
  return submit<uint64_t>(st, [=]() -> Result<uint64_t> {
    TESSERA_TRY(placement::check_oid(oid));
    if (const auto* ec = ec_class(oid); ec != nullptr && !akey.empty()) {
      TESSERA_TRY(ec_supported(*ec, akey, ValueKind::array, 1, Cond::none, length > 0));
      return ec_punch_akey(st, *ec, oid, dkey, akey);
    }
    // An object's punch is one transaction over its groups.
    if (dkey.empty()) return punch_object(st, oid);
    auto body = [&] { return punch_body(oid, dkey, akey, offset, length, rsize, ctx_of(*st)); };
    auto r = op(st, oid, dkey, Pick::leader, proto::kObjPunch, body, {});
    if (!r) return r.status();
    return decoded(*r, decode_epoch);
  });
}

namespace contimpl {
void cut_page(ListScope scope, const PageSpec& page, std::vector<KeyEntry>& all, bool* more) {
  *more = false;
  if (page.limit == 0) return;
  if (!page.after.empty()) {
    auto after = [&](const KeyEntry& e) {
      if (scope == ListScope::objects) {
        const auto from = oid_of_anchor(page.after);
        return !from || *from < e.oid;
      }
      if (scope == ListScope::recx) {
        const auto from = record_of_anchor(page.after);
        return !from || e.offset > *from;
      }
      return e.key > page.after;
    };
    all.erase(std::remove_if(all.begin(), all.end(), [&](const KeyEntry& e) { return !after(e); }),
              all.end());
  }
  if (all.size() > page.limit) {
    all.resize(page.limit);
    *more = true;
  }
}

Result<std::vector<KeyEntry>> list_keys(const StatePtr& st, ListScope scope, ObjectId oid,
                                        const std::string& dkey, const std::string& akey,
                                        uint64_t epoch, uint64_t tx_read, const PageSpec& page,
                                        bool* more) {
  std::vector<KeyEntry> all;
  // A page of keys or objects asks each shard for one page from the anchor on: the first
  // `limit` entries of the merged pages are the listing's next `limit` (every shard's entries up
  // to the last of them came in its page). Records are listed whole and cut.
  const bool paged = page.limit > 0 && scope != ListScope::recx;
  bool shard_more = false;
  auto finish_page = [&](std::vector<KeyEntry>& sorted) {
    bool cut = false;
    cut_page(scope, page, sorted, &cut);
    if (more != nullptr) *more = cut || shard_more;
  };

  // Pages from one shard until its anchor runs out (paged: or it gave `limit` entries; a page
  // may come back empty with an anchor, its entries all filtered out by the engine).
  auto drain = [&](const placement::Shard& s) -> Status {
    std::string anchor = paged ? page.after : std::string();
    const size_t first = all.size();
    do {
      auto r = send(*st, s, proto::kObjList,
                    list_body(scope, oid, dkey, akey, anchor, paged ? page.limit : 1000, epoch,
                              read_ctx(*st, {epoch, tx_read})),
                    {}, st->timeout);
      if (!r) return r.status();
      auto got = decoded(*r, decode_list);
      if (!got) return got.status();
      for (auto& e : got->first) all.push_back(std::move(e));
      anchor = std::move(got->second);
      if (paged && all.size() - first >= page.limit) {
        shard_more = shard_more || !anchor.empty();
        break;
      }
    } while (!anchor.empty());
    return Status();
  };
  if (scope == ListScope::objects) {
    // Every healthy target; replicas repeat objects, removed below. A target that fails to
    // answer is asked again until the container's timeout, as op() does: a send that stalls
    // while the fabric connects to it does not end the listing.
    const auto deadline = Clock::now() + st->timeout;
    for (const auto& e : st->view->pool.map.engines) {
      for (const auto& t : e.targets) {
        if (!placement::is_serving(t.state)) continue;
        while (true) {
          const size_t before = all.size();
          Status r = drain(placement::Shard{e.rank, t.index, true, false});
          if (r.is_ok()) break;
          all.resize(before);
          if (!retryable(r.code()) || Clock::now() >= deadline) return r;
          st->im->target->sleep_for(std::chrono::milliseconds(50));
        }
      }
    }
    std::sort(all.begin(), all.end(),
              [](const KeyEntry& a, const KeyEntry& b) { return a.oid < b.oid; });
    all.erase(std::unique(all.begin(), all.end(),
                          [](const KeyEntry& a, const KeyEntry& b) { return a.oid == b.oid; }),
              all.end());
    finish_page(all);
    return all;
  }
  TESSERA_TRY(placement::check_oid(oid));
  if (const auto* ec = ec_class(oid)) {
    // Listed whole (their positions store akeys under names of their own), then cut.
    auto r = ec_list(st, *ec, scope, oid, dkey, akey, epoch);
    if (r) finish_page(*r);
    return r;
  }
  auto placed = placement_of(*st, oid);
  if (!placed) return placed.status();
  const placement::Placement* place = placed->get();
  // Who to ask: per group of the layout (dkeys) or the dkey's group, the members
  // holding complete data in turn. While the map moves data, dkeys are listed
  // from every holder of complete data (a dkey's group may have changed).
  std::vector<std::vector<placement::Shard>> groups;
  if (scope == ListScope::dkeys && place->settled) {
    for (const auto& s : place->all_readers()) groups.push_back({s});
  } else if (scope == ListScope::dkeys) {
    for (uint32_t g = 0; g < place->now.groups; ++g) {
      std::vector<placement::Shard> members;
      for (uint32_t i = 0; i < place->now.group_size; ++i) {
        size_t idx = size_t{g} * place->now.group_size + i;
        if (place->now.shards[idx].available && place->home_up_in_at(idx)) {
          members.push_back(place->now.shards[idx]);
        }
      }
      groups.push_back(std::move(members));
    }
  } else {
    std::vector<placement::Shard> members;
    for (const auto& p : place->dkey(dkey)) {
      if (p.reader() != nullptr) members.push_back(*p.reader());
    }
    groups.push_back(std::move(members));
  }
  // A group that never saw the object (its dkeys hash elsewhere) has nothing to
  // list; the object is missing only when no group has it.
  uint32_t absent = 0;
  Status missing;
  for (const auto& members : groups) {
    Status last(Errc::unavailable, "no healthy replica of a group of this object");
    bool done = false;
    for (const auto& s : members) {
      size_t before = all.size();
      Status st2 = drain(s);
      if (st2.is_ok() || st2.code() == Errc::not_found) {
        done = true;
        if (!st2.is_ok()) {
          ++absent;
          missing = st2;
        }
        break;
      }
      all.resize(before);
      // The listing is incomplete without this group: say where it stopped.
      last = Status(st2.code(), fmt::format("listing incomplete: rank {} target {}: {}", s.rank,
                                            s.target, st2.message()));
      if (!retryable(st2.code())) return st2;
    }
    if (!done) return last;
  }
  if (absent == groups.size()) return missing;
  if (scope != ListScope::recx) {
    std::sort(all.begin(), all.end(),
              [](const KeyEntry& a, const KeyEntry& b) { return a.key < b.key; });
    all.erase(std::unique(all.begin(), all.end(),
                          [](const KeyEntry& a, const KeyEntry& b) { return a.key == b.key; }),
              all.end());
  }
  finish_page(all);
  return all;
}
}  // namespace contimpl

Result<std::vector<KeyEntry>> Container::list_all(ListScope scope, ObjectId oid, std::string dkey,
                                                  std::string akey, uint64_t epoch) {
  auto st = st_;
  return submit<std::vector<KeyEntry>>(
             st, [=]() { return list_keys(st, scope, oid, dkey, akey, epoch, 0); })
      .get();
}

Container::Future<Container::KeyPage> Container::list_page_async(ListScope scope, ObjectId oid,
                                                                 std::string dkey, std::string akey,
                                                                 uint64_t epoch, std::string anchor,
                                                                 uint32_t limit) {
  if (limit == 0) {
    return ready_future<KeyPage>(Status(Errc::invalid_argument, "a page holds at least one entry"));
  }
  auto st = st_;
  PageSpec page{std::move(anchor), limit};
  return submit<KeyPage>(st, [=]() -> Result<KeyPage> {
    KeyPage out;
    bool more = false;
    auto r = list_keys(st, scope, oid, dkey, akey, epoch, 0, page, &more);
    if (!r) return r.status();
    out.entries = std::move(*r);
    out.done = !more;
    if (more && out.entries.empty()) {  // an anchor that would not move: a loop
      return Status(Errc::internal, "a listing page came back empty before the end");
    }
    if (more) out.anchor = anchor_after(scope, out.entries.back());
    return out;
  });
}

std::string Container::anchor_after(ListScope scope, const KeyEntry& e) {
  if (scope == ListScope::objects) return oid_anchor(e.oid);
  if (scope == ListScope::recx) return record_anchor(e.offset);
  return e.key;
}

Result<uint64_t> Container::kv_put(const std::string& key, std::span<const uint8_t> value) {
  auto oid = make_oid(0, 0);
  if (!oid) return oid.status();
  return update(*oid, key, "value", ValueKind::single, 0, value);
}

Result<FetchResult> Container::kv_get(const std::string& key) {
  auto oid = make_oid(0, 0);
  if (!oid) return oid.status();
  FetchFlags f;
  f.must_exist = true;
  auto r = fetch(*oid, key, "value", ValueKind::single, 0, 0, 0, f);
  if (!r && r.status().code() == Errc::not_found) {
    return Status(Errc::not_found, fmt::format("no key '{}'", key));
  }
  return r;
}

Result<std::vector<std::string>> Container::kv_list() {
  auto oid = make_oid(0, 0);
  if (!oid) return oid.status();
  auto r = list_all(ListScope::dkeys, *oid);
  std::vector<std::string> keys;
  if (!r && r.status().code() == Errc::not_found) return keys;  // nothing stored yet
  if (!r) return r.status();
  for (auto& e : *r) keys.push_back(std::move(e.key));
  return keys;
}

Result<uint64_t> Container::kv_del(const std::string& key) {
  auto oid = make_oid(0, 0);
  if (!oid) return oid.status();
  return punch(*oid, key);
}

}  // namespace tessera
