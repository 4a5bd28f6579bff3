// The encoders that read the management state (open handles, members, health): the service's
// side of mgmt/codec.hpp, in library tessera_mgmt; the client library links only the records'
// codec (tessera_mgmt_records).
#include "mgmt/codec_state.hpp"

#include "proto/capnp_util.hpp"

namespace tessera::mgmt {

using capn::as_data;

void encode_cont(schema::ContInfo::Builder b, const Pool& p, const Container& c, const MgmtState& s,
                 bool with_handles) {
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
  b.setLostData(c.lost_data);
  if (!with_handles) return;
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

}  // namespace tessera::mgmt
