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

void encode_cont(schema::ContInfo::Builder b, const Pool& p, const Container& c,
                 const MgmtState& s) {
  b.setId(c.id);
  b.setUuid(c.uuid);
  encode_props(b.initProps(), c.props);
  encode_acl(b.initAcl(), c.acl);
  auto at = b.initAttrs(static_cast<unsigned>(c.attrs.size()));
  unsigned i = 0;
  for (const auto& [k, v] : c.attrs) {
    at[i].setName(k);
    at[i++].setValue(v);
  }
  auto sn = b.initSnapshots(static_cast<unsigned>(c.snapshots.size()));
  for (size_t j = 0; j < c.snapshots.size(); ++j) {
    sn[static_cast<unsigned>(j)].setEpoch(c.snapshots[j].epoch);
    sn[static_cast<unsigned>(j)].setName(c.snapshots[j].name);
  }
  b.setOpenHandles(static_cast<uint32_t>(s.open_handles(p.id, c.id)));
  ContHealth h = container_health(p, c, s.gone_ranks());
  b.setHealth(h.status);
  b.setRedundancy(h.redundancy);
  b.setFailedEngines(h.failed_engines);
  b.setCreatedEpoch(c.created_epoch);
  std::vector<const Handle*> owners;
  for (const auto& [cookie, hd] : s.handles()) {
    if (hd.pool == p.id && hd.cont == c.id) owners.push_back(&hd);
  }
  auto hs = b.initHandles(static_cast<unsigned>(owners.size()));
  for (size_t j = 0; j < owners.size(); ++j) {
    auto o = hs[static_cast<unsigned>(j)];
    o.setId(owners[j]->id);
    o.setUid(owners[j]->uid);
    o.setHost(owners[j]->host);
    o.setPid(owners[j]->pid);
    o.setPerms(owners[j]->perms);
    o.setOpenedMs(owners[j]->opened_ms);
  }
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

namespace {
void encode_map_engine(schema::MapEngine::Builder eb, const placement::MapEngine& e) {
  eb.setRank(e.rank);
  eb.setHost(e.host);
  auto ts = eb.initTargets(static_cast<unsigned>(e.targets.size()));
  for (size_t t = 0; t < e.targets.size(); ++t) {
    ts[static_cast<unsigned>(t)].setIndex(e.targets[t].index);
    ts[static_cast<unsigned>(t)].setState(static_cast<uint8_t>(e.targets[t].state));
  }
}

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

void encode_pool(schema::PoolInfo::Builder b, const Pool& p, const MgmtState& s, bool with_conts) {
  b.setId(p.id);
  b.setUuid(p.uuid);
  b.setLabel(p.label);
  b.setTargetBytes(p.target_bytes);
  auto m = b.initMap();
  m.setVersion(p.map.version);
  auto es = m.initEngines(static_cast<unsigned>(p.map.engines.size()));
  for (size_t i = 0; i < p.map.engines.size(); ++i) {
    const auto& e = p.map.engines[i];
    auto eb = es[static_cast<unsigned>(i)];
    encode_map_engine(eb, e);
    auto it = s.members().find(e.rank);
    if (it != s.members().end()) {
      const Member& mem = it->second;
      m.setProvider(mem.provider);
      eb.setControlAddr(mem.control_addr);
      eb.setState(std::string(member_state_name(mem.state)));
      auto fa = eb.initFabricAddrs(static_cast<unsigned>(mem.fabric_addrs.size()));
      for (size_t t = 0; t < mem.fabric_addrs.size(); ++t) {
        fa.set(static_cast<unsigned>(t), as_data(mem.fabric_addrs[t]));
      }
    }
  }
  auto st = m.initSettled(static_cast<unsigned>(p.map.settled.size()));
  for (size_t i = 0; i < p.map.settled.size(); ++i) {
    const auto& e = p.map.settled[i];
    encode_map_engine(st[static_cast<unsigned>(i)], e);
  }
  auto rb = b.initRebuild();
  rb.setState(p.rebuild.state);
  rb.setGen(p.rebuild.gen);
  rb.setVersion(p.rebuild.version);
  rb.setStartMs(p.rebuild.start_ms);
  rb.setEndMs(p.rebuild.end_ms);
  rb.setObjects(p.rebuild.objects);
  rb.setRecords(p.rebuild.records);
  rb.setBytes(p.rebuild.bytes);
  rb.setBytesTotal(p.rebuild.planned);
  rb.setLost(p.rebuild.lost);
  rb.setError(p.rebuild.error);
  rb.setRedundancy(p.redundancy(s.gone_ranks()));
  encode_acl(b.initAcl(), p.acl);
  auto pr = b.initProps(static_cast<unsigned>(p.props.size()));
  unsigned i = 0;
  for (const auto& [k, v] : p.props) {
    pr[i].setName(k);
    pr[i++].setValue(v);
  }
  if (with_conts) {
    auto cs = b.initContainers(static_cast<unsigned>(p.containers.size()));
    unsigned j = 0;
    for (const auto& [id, c] : p.containers) encode_cont(cs[j++], p, c, s);
  }
  b.setOpenHandles(static_cast<uint32_t>(s.open_handles(p.id)));
  auto ds = b.initDamaged(static_cast<unsigned>(p.damaged.size()));
  for (size_t k = 0; k < p.damaged.size(); ++k) {
    auto d = ds[static_cast<unsigned>(k)];
    d.setRank(p.damaged[k].rank);
    d.setTarget(p.damaged[k].target);
    d.setReason(p.damaged[k].reason);
    d.setAtMs(p.damaged[k].at_ms);
  }
}

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
