#include "client/mgmt_client.hpp"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "mgmt/codec.hpp"
#include "net/stream.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"

namespace tessera {

namespace {
using Fill = std::function<void(schema::MgmtReq::Builder)>;

// Requests that change nothing: one whose connection broke after it was sent (a leader that
// died or stepped down) is safely sent again, to the next access point.
bool is_query(schema::MgmtReq::Which w) {
  using W = schema::MgmtReq::Which;
  return w == W::SYSTEM_QUERY || w == W::POOL_LIST || w == W::POOL_QUERY || w == W::CONT_QUERY ||
         w == W::HANDLE_QUERY || w == W::POOL_MAP || w == W::POOL_SNAPSHOTS || w == W::POOL_PROPS ||
         w == W::REPLICA_INFO;
}

// One request; `decode` reads the reply inside a DecodeScope.
template <typename T, typename D>
Result<T> call(const mgmt::LeaderFinder& service, std::chrono::milliseconds timeout,
               const mgmt::Cred& cred, const Fill& fill, D decode) {
  capnp::MallocMessageBuilder b(512);
  auto r = b.initRoot<schema::MgmtReq>();
  mgmt::encode_cred(r.initCred(), cred);
  fill(r);
  const bool resend = is_query(r.which());
  const Buffer body = capn::to_body(b);
  // The leader among the access points (a follower names it; a dead one is skipped).
  auto rep = service.call<Message>(
      timeout, [&](const std::string& addr, bool& reached) -> Result<Message> {
        return net::control_attempt(addr, service.connect_timeout(timeout), timeout,
                                    proto::kProtoMgmt, proto::kMgmtCall, body.clone(), resend,
                                    reached);
      });
  if (!rep) return rep.status();
  try {
    capn::DecodeScope ds;
    capn::BodyReader br(rep->body);
    Result<T> out = decode(br.root<schema::MgmtRep>());
    if (ds.failed()) return Status(Errc::protocol, "malformed management reply: " + ds.what());
    return out;
  } catch (const kj::Exception& e) {
    return Status(Errc::protocol,
                  fmt::format("malformed management reply: {}", e.getDescription().cStr()));
  }
}

Status call_none(const mgmt::LeaderFinder& addr, std::chrono::milliseconds timeout,
                 const mgmt::Cred& cred, const Fill& fill) {
  return call<bool>(addr, timeout, cred, fill,
                    [](schema::MgmtRep::Reader) -> Result<bool> { return true; })
      .status();
}

Result<mgmt::PoolView> pool_of(schema::MgmtRep::Reader r) {
  if (!r.isPool()) return Status(Errc::protocol, "reply carries no pool");
  return mgmt::decode_pool(r.getPool());
}
Result<mgmt::ContView> cont_of(schema::MgmtRep::Reader r) {
  if (!r.isCont()) return Status(Errc::protocol, "reply carries no container");
  return mgmt::decode_cont(r.getCont());
}
Result<mgmt::Acl> acl_of(schema::MgmtRep::Reader r) {
  if (!r.isAcl()) return Status(Errc::protocol, "reply carries no ACL");
  return mgmt::decode_acl(r.getAcl());
}
}  // namespace

Result<std::vector<mgmt::Member>> MgmtClient::system_query() const {
  return call<std::vector<mgmt::Member>>(
      addr_, timeout_, cred_, [](auto r) { r.setSystemQuery(); },
      [](schema::MgmtRep::Reader r) -> Result<std::vector<mgmt::Member>> {
        std::vector<mgmt::Member> out;
        for (auto m : r.getMembers()) {
          auto d = mgmt::decode_member(m);
          if (!d) return d.status();
          out.push_back(std::move(*d));
        }
        return out;
      });
}

Status MgmtClient::system_stop() const {
  return call_none(addr_, timeout_, cred_, [](auto r) { r.setSystemStop(); });
}

Status MgmtClient::rank_exclude(uint32_t rank, bool exclude) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto x = r.initRankExclude();
    x.setRank(rank);
    x.setExclude(exclude);
  });
}

Status MgmtClient::target_stop(uint32_t rank, uint32_t target) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto x = r.initTargetStop();
    x.setRank(rank);
    x.setTarget(target);
  });
}

Result<mgmt::PoolView> MgmtClient::pool_create(const std::string& label, uint64_t target_bytes,
                                               const std::vector<uint32_t>& ranks) const {
  return call<mgmt::PoolView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto c = r.initPoolCreate();
        c.setLabel(label);
        c.setTargetBytes(target_bytes);
        auto l = c.initRanks(static_cast<unsigned>(ranks.size()));
        for (size_t i = 0; i < ranks.size(); ++i) l.set(static_cast<unsigned>(i), ranks[i]);
      },
      pool_of);
}

Result<std::vector<mgmt::PoolView>> MgmtClient::pool_list() const {
  return call<std::vector<mgmt::PoolView>>(
      addr_, timeout_, cred_, [](auto r) { r.setPoolList(); },
      [](schema::MgmtRep::Reader r) -> Result<std::vector<mgmt::PoolView>> {
        std::vector<mgmt::PoolView> out;
        for (auto p : r.getPools()) {
          auto d = mgmt::decode_pool(p);
          if (!d) return d.status();
          out.push_back(std::move(*d));
        }
        return out;
      });
}

Result<mgmt::PoolView> MgmtClient::pool_query(const std::string& pool) const {
  return call<mgmt::PoolView>(
      addr_, timeout_, cred_, [&](auto r) { r.setPoolQuery(pool); }, pool_of);
}

Status MgmtClient::pool_destroy(const std::string& pool, bool force, bool recursive) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto d = r.initPoolDestroy();
    d.setPool(pool);
    d.setForce(force);
    d.setRecursive(recursive);
  });
}

Status MgmtClient::pool_set_prop(const std::string& pool, const std::string& name,
                                 const std::string& value) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto p = r.initPoolSetProp();
    p.setPool(pool);
    p.setName(name);
    p.setValue(value);
    p.setHasValue(true);
  });
}

Result<mgmt::PoolView> MgmtClient::target_state(const std::string& pool, uint32_t rank,
                                                int32_t target,
                                                placement::TargetState state) const {
  return call<mgmt::PoolView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto t = r.initTargetState();
        t.setPool(pool);
        t.setRank(rank);
        t.setTarget(target);
        t.setState(static_cast<uint8_t>(state));
      },
      pool_of);
}

Result<mgmt::PoolView> MgmtClient::pool_op(const std::string& pool, const std::string& op,
                                           const std::vector<uint32_t>& ranks,
                                           int32_t target) const {
  return call<mgmt::PoolView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto o = r.initPoolOp();
        o.setPool(pool);
        o.setOp(op);
        auto l = o.initRanks(static_cast<unsigned>(ranks.size()));
        for (size_t i = 0; i < ranks.size(); ++i) l.set(static_cast<unsigned>(i), ranks[i]);
        o.setTarget(target);
      },
      pool_of);
}

Result<mgmt::Acl> MgmtClient::get_acl(const std::string& pool, const std::string& cont) const {
  return call<mgmt::Acl>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto e = r.initUpdateAcl();
        e.setPool(pool);
        e.setCont(cont);
        e.setGet(true);
      },
      acl_of);
}

Result<mgmt::Acl> MgmtClient::update_acl(const std::string& pool, const std::string& cont,
                                         const AclChange& change) const {
  return call<mgmt::Acl>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto e = r.initUpdateAcl();
        e.setPool(pool);
        e.setCont(cont);
        e.setReplace(change.replace);
        auto s = e.initSet(static_cast<unsigned>(change.set.size()));
        for (size_t i = 0; i < change.set.size(); ++i) {
          mgmt::encode_ace(s[static_cast<unsigned>(i)], change.set[i]);
        }
        auto d = e.initRemove(static_cast<unsigned>(change.remove.size()));
        for (size_t i = 0; i < change.remove.size(); ++i) {
          mgmt::encode_ace(d[static_cast<unsigned>(i)], change.remove[i]);
        }
      },
      acl_of);
}

Result<mgmt::ContView> MgmtClient::cont_create(const std::string& pool,
                                               const mgmt::ContProps& props) const {
  return call<mgmt::ContView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto c = r.initContCreate();
        c.setPool(pool);
        mgmt::encode_props(c.initProps(), props);
      },
      cont_of);
}

Result<mgmt::ContView> MgmtClient::cont_query(const std::string& pool,
                                              const std::string& cont) const {
  return call<mgmt::ContView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto c = r.initContQuery();
        c.setPool(pool);
        c.setCont(cont);
      },
      cont_of);
}

Status MgmtClient::cont_destroy(const std::string& pool, const std::string& cont,
                                bool force) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto d = r.initContDestroy();
    d.setPool(pool);
    d.setCont(cont);
    d.setForce(force);
  });
}

Status MgmtClient::cont_set_prop(const std::string& pool, const std::string& cont,
                                 const mgmt::ContProps& props, bool healthy) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto c = r.initContSetProp();
    c.setPool(pool);
    c.setCont(cont);
    mgmt::encode_props(c.initProps(), props);
    c.setHealthy(healthy);
  });
}

Status MgmtClient::cont_set_props(
    const std::string& pool, const std::string& cont,
    const std::vector<std::pair<std::string, std::string>>& changes) const {
  auto v = cont_query(pool, cont);
  if (!v) return v.status();
  mgmt::ContProps p = v->c.props;
  bool healthy = false;
  for (const auto& [name, value] : changes) {
    if (name == "status") {
      if (value != "healthy") {
        return Status(Errc::invalid_argument,
                      fmt::format("status can only be set to 'healthy' (it clears UNCLEAN once "
                                  "a rebuild found the container beyond its redundancy "
                                  "factor), not '{}'",
                                  value));
      }
      healthy = true;
      continue;
    }
    TESSERA_TRY(mgmt::set_cont_prop(p, name, value));
  }
  return cont_set_prop(pool, cont, p, healthy);
}

Status MgmtClient::cont_set_attr(const std::string& pool, const std::string& cont,
                                 const std::string& name, std::optional<std::string> value) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto a = r.initContSetAttr();
    a.setPool(pool);
    a.setCont(cont);
    a.setName(name);
    a.setHasValue(value.has_value());
    if (value) a.setValue(*value);
  });
}

Result<mgmt::ContView> MgmtClient::snap_create(const std::string& pool, const std::string& cont,
                                               const std::string& name, uint64_t epoch) const {
  return call<mgmt::ContView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto s = r.initSnapCreate();
        s.setPool(pool);
        s.setCont(cont);
        s.setName(name);
        s.setEpoch(epoch);
      },
      cont_of);
}

Result<mgmt::ContView> MgmtClient::snap_destroy(const std::string& pool, const std::string& cont,
                                                uint64_t epoch) const {
  return call<mgmt::ContView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto s = r.initSnapDestroy();
        s.setPool(pool);
        s.setCont(cont);
        s.setEpoch(epoch);
      },
      cont_of);
}

Result<mgmt::RollbackView> MgmtClient::cont_rollback(const std::string& pool,
                                                     const std::string& cont,
                                                     const std::string& snap, uint64_t epoch,
                                                     bool force) const {
  // The engines rewrite what changed since the snapshot: it may take a while.
  const auto timeout = std::max<std::chrono::milliseconds>(timeout_, std::chrono::minutes(31));
  return call<mgmt::RollbackView>(
      addr_, timeout, cred_,
      [&](auto r) {
        auto s = r.initContRollback();
        s.setPool(pool);
        s.setCont(cont);
        s.setSnap(snap);
        s.setEpoch(epoch);
        s.setForce(force);
      },
      [](schema::MgmtRep::Reader r) -> Result<mgmt::RollbackView> {
        if (!r.isRollback()) return Status(Errc::protocol, "reply carries no rollback");
        auto d = r.getRollback();
        return mgmt::RollbackView{d.getFrom(),      d.getAt(),      d.getObjects(),
                                  d.getRewritten(), d.getPunched(), d.getBytes()};
      });
}

Result<mgmt::HandleView> MgmtClient::cont_open(const std::string& pool, const std::string& cont,
                                               bool write) const {
  return call<mgmt::HandleView>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto o = r.initContOpen();
        o.setPool(pool);
        o.setCont(cont);
        o.setWrite(write);
        char host[256] = {};
        if (::gethostname(host, sizeof(host) - 1) == 0) o.setHost(host);
        o.setPid(static_cast<uint32_t>(::getpid()));
      },
      [](schema::MgmtRep::Reader r) -> Result<mgmt::HandleView> {
        if (!r.isHandle()) return Status(Errc::protocol, "reply carries no handle");
        auto h = r.getHandle();
        mgmt::HandleView v;
        v.cookie = h.getCookie();
        v.perms = h.getPerms();
        v.lease_ms = h.getLeaseMs();
        auto p = mgmt::decode_pool(h.getPool());
        if (!p) return p.status();
        v.pool = std::move(*p);
        auto c = mgmt::decode_cont(h.getCont());
        if (!c) return c.status();
        v.cont = std::move(*c);
        return v;
      });
}

Status MgmtClient::handle_renew(const std::vector<uint64_t>& cookies) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto l = r.initHandleRenew(static_cast<unsigned>(cookies.size()));
    for (size_t i = 0; i < cookies.size(); ++i) l.set(static_cast<unsigned>(i), cookies[i]);
  });
}

Result<uint32_t> MgmtClient::pool_evict(const std::string& pool, const std::string& cont,
                                        uint64_t handle_id) const {
  return call<uint32_t>(
      addr_, timeout_, cred_,
      [&](auto r) {
        auto e = r.initPoolEvict();
        e.setPool(pool);
        e.setCont(cont);
        e.setHandle(handle_id);
      },
      [](schema::MgmtRep::Reader r) -> Result<uint32_t> {
        if (!r.isEvicted()) return Status(Errc::protocol, "reply carries no eviction count");
        return r.getEvicted();
      });
}

Status MgmtClient::cont_close(uint32_t pool_id, uint64_t cookie) const {
  return call_none(addr_, timeout_, cred_, [&](auto r) {
    auto c = r.initContClose();
    c.setPool(pool_id);
    c.setCookie(cookie);
  });
}

Result<ReplicaView> MgmtClient::replica_info(const std::string& addr) const {
  const mgmt::LeaderFinder only(addr);  // this access point, whether it leads or not
  // A replica answers at once (nothing is proposed): a host that does not (cut off) is given
  // a few seconds, not the whole request time, so `system query` names it promptly.
  return call<ReplicaView>(
      only, std::min(timeout_, std::chrono::milliseconds(5000)), cred_,
      [](auto r) { r.setReplicaInfo(); },
      [&](schema::MgmtRep::Reader r) -> Result<ReplicaView> {
        if (!r.isReplica()) return Status(Errc::protocol, "reply carries no replica");
        auto x = r.getReplica();
        ReplicaView v;
        v.address = addr;
        v.rank = x.getRank();
        v.role = x.getRole();
        v.serving = x.getServing();
        v.leader_rank = x.getLeaderRank();
        v.term = x.getTerm();
        v.last_index = x.getLastIndex();
        v.applied = x.getApplied();
        return v;
      });
}

}  // namespace tessera
