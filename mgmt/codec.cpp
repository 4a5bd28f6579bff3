#include "mgmt/codec.hpp"

#include <fmt/format.h>

#include "proto/capnp_util.hpp"

namespace tessera::mgmt {

using capn::as_data;
using capn::from_data;

void encode_cred(schema::Cred::Builder b, const Cred& c) {
  b.setUid(c.uid);
  b.setGid(c.gid);
  auto g = b.initGroups(static_cast<unsigned>(c.groups.size()));
  for (size_t i = 0; i < c.groups.size(); ++i) g.set(static_cast<unsigned>(i), c.groups[i]);
  b.setUser(c.user);
}

Cred decode_cred(schema::Cred::Reader r) {
  Cred c;
  c.uid = r.getUid();
  c.gid = r.getGid();
  for (auto g : r.getGroups()) c.groups.push_back(g);
  c.user = r.getUser();
  return c;
}

void encode_ace(schema::Ace::Builder b, const Ace& a) {
  b.setWho(static_cast<uint8_t>(a.who));
  b.setId(a.id);
  b.setName(a.name);
  b.setPerms(a.perms);
}

Result<Ace> decode_ace(schema::Ace::Reader r) {
  if (r.getWho() > static_cast<uint8_t>(Principal::everyone)) {
    return Status(Errc::invalid_argument, "unknown ACL principal kind");
  }
  if ((r.getPerms() & ~uint32_t{kAllPerms}) != 0) {
    return Status(Errc::invalid_argument, "unknown permission bits in an ACL entry");
  }
  return Ace{static_cast<Principal>(r.getWho()), r.getId(), r.getName(), r.getPerms()};
}

void encode_acl(schema::Acl::Builder b, const Acl& a) {
  b.setOwnerUid(a.owner_uid);
  b.setOwnerGid(a.owner_gid);
  auto es = b.initEntries(static_cast<unsigned>(a.entries.size()));
  for (size_t i = 0; i < a.entries.size(); ++i)
    encode_ace(es[static_cast<unsigned>(i)], a.entries[i]);
}

Acl decode_acl(schema::Acl::Reader r) {
  Acl a;
  a.owner_uid = r.getOwnerUid();
  a.owner_gid = r.getOwnerGid();
  for (auto e : r.getEntries()) {
    if (auto ace = decode_ace(e)) a.entries.push_back(*ace);
  }
  return a;
}

void encode_props(schema::ContProps::Builder b, const ContProps& p) {
  b.setLabel(p.label);
  b.setType(std::string(cont_type_name(p.type)));
  b.setOclass(p.oclass);
  b.setRf(p.rf);
  b.setChecksum(p.checksum);
  b.setCellSize(p.cell_size);
}

Result<ContProps> decode_props(schema::ContProps::Reader r) {
  ContProps p;
  p.label = r.getLabel();
  auto t = parse_cont_type(r.getType().cStr());
  if (!t) {
    return Status(
        Errc::invalid_argument,
        fmt::format("unknown container type '{}' (POSIX, KV or ARRAY)", r.getType().cStr()));
  }
  p.type = *t;
  p.oclass = r.getOclass();
  p.rf = r.getRf();
  p.checksum = r.getChecksum();
  p.cell_size = r.getCellSize();
  return p;
}

void encode_member(schema::Member::Builder b, const Member& m) {
  b.setRank(m.rank);
  b.setHost(m.host);
  b.setControlAddr(m.control_addr);
  b.setMetricsAddr(m.metrics_addr);
  b.setProvider(m.provider);
  auto fa = b.initFabricAddrs(static_cast<unsigned>(m.fabric_addrs.size()));
  for (size_t i = 0; i < m.fabric_addrs.size(); ++i) {
    fa.set(static_cast<unsigned>(i), as_data(m.fabric_addrs[i]));
  }
  b.setState(std::string(member_state_name(m.state)));
  b.setIncarnation(m.incarnation);
  b.setPid(m.pid);
}

Result<Member> decode_member(schema::Member::Reader r) {
  Member m;
  m.rank = r.getRank();
  m.host = r.getHost();
  m.control_addr = r.getControlAddr();
  m.metrics_addr = r.getMetricsAddr();
  m.provider = r.getProvider();
  for (auto a : r.getFabricAddrs()) m.fabric_addrs.push_back(from_data(a));
  std::string st = r.getState();
  for (auto s :
       {MemberState::joined, MemberState::stopped, MemberState::excluded, MemberState::dead}) {
    if (member_state_name(s) == st) m.state = s;
  }
  m.incarnation = r.getIncarnation();
  m.pid = r.getPid();
  return m;
}

Result<ContView> decode_cont(schema::ContInfo::Reader r) {
  ContView v;
  v.c.id = r.getId();
  v.c.uuid = r.getUuid();
  auto props = decode_props(r.getProps());
  if (!props) return props.status();
  v.c.props = std::move(*props);
  v.c.acl = decode_acl(r.getAcl());
  for (auto a : r.getAttrs()) v.c.attrs[a.getName()] = a.getValue();
  for (auto sn : r.getSnapshots()) v.c.snapshots.push_back({sn.getEpoch(), sn.getName()});
  v.open_handles = r.getOpenHandles();
  v.health = {r.getFailedEngines(), r.getHealth(), r.getRedundancy()};
  v.c.created_epoch = r.getCreatedEpoch();
  v.c.lost_data = r.getLostData();
  for (auto o : r.getHandles()) {
    Handle h;
    h.id = o.getId();
    h.pool = 0;
    h.cont = v.c.id;
    h.uid = o.getUid();
    h.host = o.getHost();
    h.pid = o.getPid();
    h.perms = o.getPerms();
    h.opened_ms = o.getOpenedMs();
    v.handles.push_back(std::move(h));
  }
  return v;
}

void encode_map_engine(schema::MapEngine::Builder eb, const placement::MapEngine& e) {
  eb.setRank(e.rank);
  eb.setHost(e.host);
  auto ts = eb.initTargets(static_cast<unsigned>(e.targets.size()));
  for (size_t t = 0; t < e.targets.size(); ++t) {
    ts[static_cast<unsigned>(t)].setIndex(e.targets[t].index);
    ts[static_cast<unsigned>(t)].setState(static_cast<uint8_t>(e.targets[t].state));
  }
}

namespace {
Result<placement::MapEngine> decode_map_engine(schema::MapEngine::Reader e) {
  placement::MapEngine me{e.getRank(), e.getHost(), {}};
  for (auto t : e.getTargets()) {
    if (t.getState() > static_cast<uint8_t>(placement::TargetState::new_)) {
      return Status(Errc::protocol, "unknown target state in a pool map");
    }
    me.targets.push_back({t.getIndex(), static_cast<placement::TargetState>(t.getState())});
  }
  return me;
}
}  // namespace

Result<PoolView> decode_pool(schema::PoolInfo::Reader r) {
  PoolView v;
  v.pool.id = r.getId();
  v.pool.uuid = r.getUuid();
  v.pool.label = r.getLabel();
  v.pool.target_bytes = r.getTargetBytes();
  auto m = r.getMap();
  v.pool.map.version = m.getVersion();
  v.provider = m.getProvider();
  for (auto e : m.getEngines()) {
    auto de = decode_map_engine(e);
    if (!de) return de.status();
    placement::MapEngine me = std::move(*de);
    EngineAddr a;
    a.control_addr = e.getControlAddr();
    a.state = e.getState();
    for (auto f : e.getFabricAddrs()) a.fabric_addrs.push_back(from_data(f));
    v.addrs[me.rank] = std::move(a);
    v.pool.map.engines.push_back(std::move(me));
  }
  for (auto e : m.getSettled()) {
    auto de = decode_map_engine(e);
    if (!de) return de.status();
    v.pool.map.settled.push_back(std::move(*de));
  }
  auto rb = r.getRebuild();
  v.pool.rebuild.state = rb.getState();
  if (v.pool.rebuild.state.empty()) v.pool.rebuild.state = "idle";
  v.pool.rebuild.gen = rb.getGen();
  v.pool.rebuild.version = rb.getVersion();
  v.pool.rebuild.start_ms = rb.getStartMs();
  v.pool.rebuild.end_ms = rb.getEndMs();
  v.pool.rebuild.objects = rb.getObjects();
  v.pool.rebuild.records = rb.getRecords();
  v.pool.rebuild.bytes = rb.getBytes();
  v.pool.rebuild.planned = rb.getBytesTotal();
  v.pool.rebuild.lost = rb.getLost();
  v.pool.rebuild.error = rb.getError();
  v.redundancy = rb.getRedundancy();
  v.reclaim_pending = rb.getReclaimPending();
  v.progress.targets_done = rb.getTargetsDone();
  v.progress.targets_total = rb.getTargetsTotal();
  if (v.pool.rebuild.state == "busy") {
    v.progress.objects = rb.getObjects();
    v.progress.records = rb.getRecords();
    v.progress.bytes = rb.getBytes();
    v.progress.lost = rb.getLost();
    v.progress.bytes_total = rb.getBytesTotal();
    v.progress.targets_reported = rb.getTargetsReported();
  }
  v.pool.acl = decode_acl(r.getAcl());
  for (auto kv : r.getProps()) v.pool.props[kv.getName()] = kv.getValue();
  for (auto c : r.getContainers()) {
    auto cv = decode_cont(c);
    if (!cv) return cv.status();
    v.pool.containers[cv->c.id] = cv->c;
    v.conts.push_back(std::move(*cv));
  }
  v.open_handles = r.getOpenHandles();
  for (auto d : r.getDamaged()) {
    v.pool.damaged.push_back({d.getRank(), d.getTarget(), d.getReason(), d.getAtMs()});
  }
  return v;
}

}  // namespace tessera::mgmt
