// Container-wide operations of the management service: destroy (the engines punch the
// container's objects) and snapshot rollback (docs/TRANSACTIONS.md, "Snapshot rollback").
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "mgmt/codec_state.hpp"
#include "proto/capnp_util.hpp"

namespace tessera::mgmt {

using nlohmann::json;

namespace {

// A rollback's epoch: this far past the highest epoch the pool's targets answered a fence with,
// so that writes to the pool's other containers meanwhile do not carry a target's clock past it
// before the rollback reaches it (a target whose clock has passed it refuses, and the rollback
// can be run again).
constexpr auto kRollbackAhead = std::chrono::seconds(1);
// How long one engine may take to roll its targets back.
constexpr auto kRollbackTimeout = std::chrono::minutes(30);

}  // namespace

Result<Buffer> MgmtService::cont_destroy(schema::MgmtReq::Destroy::Reader r, const Cred& cred) {
  std::vector<Member> engines;
  uint32_t pool_id, cont_id;
  {
    std::lock_guard lk(mu_);
    auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, 0);
    if (!pc) return pc.status();
    if (((pc->cont->acl.perms_for(cred) & kDelete) == 0) &&
        ((pc->pool->acl.perms_for(cred) & kWrite) == 0)) {
      return denied(cred, kDelete, fmt::format("container '{}'", pc->cont->props.label));
    }
    size_t open = state_.open_handles(pc->pool->id, pc->cont->id);
    if (open > 0 && !r.getForce()) {
      return Status(Errc::busy, fmt::format("container '{}' has {} open handle(s); close them or "
                                            "destroy with --force",
                                            pc->cont->props.label, open));
    }
    pool_id = pc->pool->id;
    cont_id = pc->cont->id;
    for (const auto& e : pc->pool->map.engines) {
      auto it = state_.members().find(e.rank);
      if (it != state_.members().end() && it->second.state == MemberState::joined) {
        engines.push_back(it->second);
      }
    }
    TESSERA_TRY(commit({{"op", "cont_destroy"}, {"pool", pool_id}, {"cont", cont_id}}));
  }
  // Engines punch the container's objects so aggregation frees their space.
  for (const Member& m : engines) {
    capnp::MallocMessageBuilder b(256);
    auto s = b.initRoot<schema::EngineReq>().initContPurge();
    s.setPool(pool_id);
    s.setCont(cont_id);
    Status st = engine_call(m, b);
    if (!st.is_ok())
      log::warn("container {} purge on rank {}: {}", cont_id, m.rank, st.to_string());
  }
  return none();
}

Result<Buffer> MgmtService::cont_rollback(schema::MgmtReq::ContRollback::Reader r,
                                          const Cred& cred) {
  std::vector<Member> engines;
  uint32_t pool_id = 0, cont_id = 0;
  uint64_t snap = 0, at = 0;
  std::vector<uint64_t> protect;  // the pool's snapshots: the targets learn them first
  std::string label;
  {
    std::lock_guard lk(mu_);
    auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, kWrite);
    if (!pc) return pc.status();
    const Pool& pool = *pc->pool;
    const Container& cont = *pc->cont;
    label = cont.props.label;
    const std::string name = r.getSnap();
    if (!name.empty()) {
      for (const auto& s : cont.snapshots) {
        if (s.name == name) snap = s.epoch;
      }
      if (snap == 0) {
        return Status(Errc::not_found,
                      fmt::format("container '{}' has no snapshot named '{}'", label, name));
      }
    } else {
      snap = r.getEpoch();
    }
    if (snap == 0) {
      return Status(Errc::invalid_argument,
                    "epoch 0 is not in the past: give a snapshot (--snap) or an epoch");
    }
    if (snap < cont.created_epoch) {
      return Status(Errc::invalid_argument,
                    fmt::format("epoch {} is before container '{}' was created (epoch {})", snap,
                                label, cont.created_epoch));
    }
    const size_t open = state_.open_handles(pool.id, cont.id);
    if (open > 0 && !r.getForce()) {
      return Status(Errc::busy,
                    fmt::format("container '{}' has {} open handle(s): writes in flight would "
                                "land on either side of the rollback; close them or roll back "
                                "with --force",
                                label, open));
    }
    // Every target holding the container's data must make the same changes: none may be down
    // or being filled (its copy would miss them), and no data may be moving.
    if (pool.map.moving() || pool.rebuild.state == "busy") {
      return Status(Errc::busy,
                    fmt::format("pool '{}' is rebuilding: roll back when it is done", pool.label));
    }
    for (const auto& e : pool.map.engines) {
      bool holds = false;
      for (const auto& t : e.targets) {
        if (t.state == placement::TargetState::up_in) {
          holds = true;
        } else if (t.state != placement::TargetState::down_out &&
                   t.state != placement::TargetState::new_) {
          return Status(Errc::unavailable,
                        fmt::format("pool '{}': rank {} target {} is {}: a rollback needs every "
                                    "target up-in (reintegrate or exclude it first)",
                                    pool.label, e.rank, t.index, placement::state_name(t.state)));
        }
      }
      if (!holds) continue;
      auto it = state_.members().find(e.rank);
      if (it == state_.members().end() || it->second.state != MemberState::joined) {
        return Status(Errc::unavailable,
                      fmt::format("pool '{}': rank {} is not joined: its targets cannot roll back",
                                  pool.label, e.rank));
      }
      engines.push_back(it->second);
    }
    pool_id = pool.id;
    cont_id = cont.id;
    const auto epochs = pool.snapshot_epochs();
    protect.assign(epochs.begin(), epochs.end());
  }
  // The snapshot must lie below every epoch the targets have issued (nothing written after it
  // can be in it), and the rollback's changes above them all.
  auto highest = fence_epochs(engines, pool_id, wall_epoch());
  if (!highest) return highest.status();
  if (snap >= *highest) {
    return Status(Errc::invalid_argument,
                  fmt::format("epoch {} is not in the past: give a snapshot (--snap) or an epoch "
                              "below {}",
                              snap, *highest));
  }
  at = epoch_at_wall(wall_of_epoch(*highest) + kRollbackAhead);
  log::info("container '{}' (pool {}): rollback to epoch {} at epoch {} by uid {}", label, pool_id,
            snap, at, cred.uid);
  // The engines work at once; each rolls its targets back in parallel.
  const auto replies = ask_engines(
      engines,
      [&](schema::EngineReq::Builder q) {
        auto s = q.initContRollback();
        s.setPool(pool_id);
        s.setCont(cont_id);
        s.setSnap(snap);
        s.setAt(at);
        auto p = s.initProtect(static_cast<unsigned>(protect.size()));
        for (size_t i = 0; i < protect.size(); ++i) p.set(static_cast<unsigned>(i), protect[i]);
      },
      kRollbackTimeout);
  uint64_t objects = 0, rewritten = 0, punched = 0, bytes = 0;
  std::vector<std::string> failed;
  for (const auto& body : replies) {
    if (!body) {
      failed.push_back(body.status().to_string());
      continue;
    }
    capn::DecodeScope ds;
    capn::BodyReader br(*body);
    auto d = br.root<schema::RollbackDone>();
    objects += d.getObjects();
    rewritten += d.getRewritten();
    punched += d.getPunched();
    bytes += d.getBytes();
    if (ds.failed()) failed.push_back("malformed engine reply: " + ds.what());
  }
  if (!failed.empty()) {
    return Status(Errc::unavailable,
                  fmt::format("the rollback of container '{}' to epoch {} did not finish: {}; "
                              "part of it may show: run it again",
                              label, snap, fmt::join(failed, "; ")));
  }
  log::info(
      "container '{}': rolled back to epoch {} at epoch {}: {} object shards, {} akeys "
      "rewritten, {} keys punched, {} bytes",
      label, snap, at, objects, rewritten, punched, bytes);
  return reply([&](schema::MgmtRep::Builder rep) {
    auto d = rep.initRollback();
    d.setFrom(snap);
    d.setAt(at);
    d.setObjects(objects);
    d.setRewritten(rewritten);
    d.setPunched(punched);
    d.setBytes(bytes);
  });
}

Result<Buffer> MgmtService::cmd_cont_create(schema::MgmtReq::Reader req, const Cred& cred,
                                            uint64_t /*session*/) {
  auto r = req.getContCreate();
  auto props = decode_props(r.getProps());
  if (!props) return props.status();
  std::lock_guard lk(mu_);
  auto p = find_pool(r.getPool());
  if (!p) return p.status();
  const Pool& pool = **p;
  uint32_t perms = pool.acl.perms_for(cred);
  if ((perms & (kCreateCont | kWrite)) == 0) {
    return denied(cred, kCreateCont, fmt::format("pool '{}'", pool.label));
  }
  if (props->checksum != "crc32c" && props->checksum != "crc64") {
    return Status(Errc::invalid_argument,
                  fmt::format("unknown checksum '{}' (crc32c or crc64)", props->checksum));
  }
  if (props->cell_size < 4096 || props->cell_size > (1u << 20) ||
      (props->cell_size & (props->cell_size - 1)) != 0) {
    return Status(Errc::invalid_argument,
                  "EC cell size must be a power of two between 4 KiB and 1 MiB");
  }
  if (props->oclass == 0) {
    props->oclass = placement::find_class(props->rf >= 2   ? "RP_3GX"
                                          : props->rf == 1 ? "RP_2GX"
                                                           : "SX")
                        ->id;
  }
  const placement::ObjectClass* cls = placement::find_class(props->oclass);
  if (cls == nullptr) return Status(Errc::invalid_argument, "unknown object class");
  if (cls->tolerated() < props->rf) {
    return Status(Errc::invalid_argument,
                  fmt::format("object class {} survives {} engine failures, below the "
                              "redundancy factor {}",
                              cls->name, cls->tolerated(), props->rf));
  }
  auto groups = placement::group_count(*cls, pool.map);
  if (!groups) return groups.status();
  json cmd = {{"op", "cont_create"},
              {"pool", pool.id},
              {"uuid", new_uuid()},
              {"props", props_json(*props)},
              {"acl", acl_json(default_cont_acl(cred))},
              {"epoch", wall_epoch()}};
  TESSERA_TRY(commit(cmd));
  const Container* c = pool.container(props->label);
  return reply(
      [&](schema::MgmtRep::Builder rep) { encode_cont(rep.initCont(), pool, *c, state_); });
}

Result<Buffer> MgmtService::cmd_cont_query(schema::MgmtReq::Reader req, const Cred& cred,
                                           uint64_t /*session*/) {
  auto r = req.getContQuery();
  std::lock_guard lk(mu_);
  auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, kGetProp);
  if (!pc) return pc.status();
  return reply([&](schema::MgmtRep::Builder rep) {
    encode_cont(rep.initCont(), *pc->pool, *pc->cont, state_, true);
  });
}

Result<Buffer> MgmtService::cmd_cont_set_prop(schema::MgmtReq::Reader req, const Cred& cred,
                                              uint64_t /*session*/) {
  auto r = req.getContSetProp();
  auto props = decode_props(r.getProps());
  if (!props) return props.status();
  std::lock_guard lk(mu_);
  auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, kSetProp);
  if (!pc) return pc.status();
  const ContProps& old = pc->cont->props;
  // Layout-defining properties are fixed at create: existing objects were placed by them.
  if (props->type != old.type || props->oclass != old.oclass || props->rf != old.rf ||
      props->checksum != old.checksum || props->cell_size != old.cell_size) {
    return Status(Errc::invalid_argument,
                  "only the label can change after create (type, object class, redundancy "
                  "factor, checksum and cell size decide how existing data is stored)");
  }
  json cmd = {{"op", "cont_set_prop"},
              {"pool", pc->pool->id},
              {"cont", pc->cont->id},
              {"props", props_json(*props)}};
  if (r.getHealthy()) {
    // status=healthy: the operator accepts what a rebuild beyond the rf left (lost_data). Not
    // while the map itself is beyond the rf: that ends when the engines are back.
    Container cleared = *pc->cont;
    cleared.lost_data = false;
    if (Status st = write_refusal(*pc->pool, cleared, state_.gone_ranks()); !st.is_ok()) {
      return Status(Errc::rf_exceeded,
                    fmt::format("cannot set status=healthy: {}; bring the engines back "
                                "(reintegrate) or exclude them and let a rebuild finish first",
                                st.message()));
    }
    if (pc->cont->lost_data) cmd["healthy"] = true;
  }
  TESSERA_TRY(commit(std::move(cmd)));
  return none();
}

Result<Buffer> MgmtService::cmd_cont_set_attr(schema::MgmtReq::Reader req, const Cred& cred,
                                              uint64_t /*session*/) {
  auto r = req.getContSetAttr();
  std::lock_guard lk(mu_);
  auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, kSetProp);
  if (!pc) return pc.status();
  json v = r.getHasValue() ? json(std::string(r.getValue().cStr())) : json(nullptr);
  TESSERA_TRY(commit({{"op", "cont_attr"},
                      {"pool", pc->pool->id},
                      {"cont", pc->cont->id},
                      {"name", std::string(r.getName().cStr())},
                      {"value", v}}));
  return none();
}

Result<Buffer> MgmtService::cmd_snap(schema::MgmtReq::Reader req, const Cred& cred,
                                     uint64_t /*session*/) {
  if (req.which() == schema::MgmtReq::SNAP_CREATE) return snap_create(req.getSnapCreate(), cred);
  auto r = req.getSnapDestroy();
  std::lock_guard lk(mu_);
  auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, kWrite);
  if (!pc) return pc.status();
  TESSERA_TRY(commit({{"op", "snap_destroy"},
                      {"pool", pc->pool->id},
                      {"cont", pc->cont->id},
                      {"epoch", r.getEpoch()},
                      {"name", std::string(r.getName().cStr())}}));
  return reply([&](schema::MgmtRep::Builder rep) {
    encode_cont(rep.initCont(), *pc->pool, *pc->cont, state_);
  });
}

// A snapshot holds every write acknowledged before it was asked for and nothing written after
// it was answered, whatever the engines' clocks: its epoch is the highest of one epoch issued
// by every target of the pool (each above all it issued before), and the targets learn that
// epoch before the answer, so that they issue only epochs above it from then on.
Result<Buffer> MgmtService::snap_create(schema::MgmtReq::SnapReq::Reader r, const Cred& cred) {
  const std::string pool_key = r.getPool(), cont_key = r.getCont(), name = r.getName();
  uint64_t epoch = r.getEpoch();
  std::vector<Member> engines;
  uint32_t pool_id = 0;
  {
    std::lock_guard lk(mu_);
    auto pc = find_pool_cont(pool_key, cont_key, cred, kWrite);
    if (!pc) return pc.status();
    auto serving = serving_engines(*pc->pool);
    if (!serving) {
      return Status(serving.status().code(),
                    fmt::format("cannot snapshot container '{}': {}", pc->cont->props.label,
                                serving.status().message()));
    }
    engines = std::move(*serving);
    pool_id = pc->pool->id;
  }
  auto highest = fence_epochs(engines, pool_id, wall_epoch());
  if (!highest) return highest.status();
  if (epoch == 0) {
    epoch = *highest;
    TESSERA_TRY(fence_epochs(engines, pool_id, epoch).status());
  } else if (epoch >= *highest) {
    return Status(Errc::invalid_argument,
                  fmt::format("epoch {} is not in the past: the pool's targets are at epoch {}",
                              epoch, *highest));
  }
  std::lock_guard lk(mu_);
  auto pc = find_pool_cont(pool_key, cont_key, cred, kWrite);  // (it may have gone meanwhile)
  if (!pc) return pc.status();
  TESSERA_TRY(commit({{"op", "snap_create"},
                      {"pool", pc->pool->id},
                      {"cont", pc->cont->id},
                      {"epoch", epoch},
                      {"name", name}}));
  return reply([&](schema::MgmtRep::Builder rep) {
    encode_cont(rep.initCont(), *pc->pool, *pc->cont, state_);
  });
}

Result<std::vector<Member>> MgmtService::serving_engines(const Pool& pool) const {
  std::vector<Member> out;
  for (const auto& e : pool.map.engines) {
    bool serves = false;
    for (const auto& t : e.targets) {
      serves |= placement::is_available(t.state) || placement::is_serving(t.state);
    }
    if (!serves) continue;
    auto it = state_.members().find(e.rank);
    if (it == state_.members().end() || it->second.state != MemberState::joined) {
      return Status(Errc::unavailable,
                    fmt::format("pool '{}': rank {} serves it but is {}: start it, or take it "
                                "out (tessera pool exclude)",
                                pool.label, e.rank,
                                it == state_.members().end()
                                    ? std::string("unknown")
                                    : std::string(member_state_name(it->second.state))));
    }
    out.push_back(it->second);
  }
  return out;
}

Result<uint64_t> MgmtService::fence_epochs(const std::vector<Member>& engines, uint32_t pool,
                                           uint64_t observe) {
  const auto replies = ask_engines(engines, [&](schema::EngineReq::Builder q) {
    auto f = q.initEpochFence();
    f.setPool(pool);
    f.setObserve(observe);
  });
  uint64_t highest = observe;
  std::vector<std::string> failed;
  for (size_t i = 0; i < replies.size(); ++i) {
    const auto& body = replies[i];
    if (!body) {
      failed.push_back(body.status().to_string());  // (it names the rank)
      continue;
    }
    capn::DecodeScope ds;
    capn::BodyReader br(*body);
    const uint64_t h = br.root<schema::EpochFenced>().getHighest();
    if (ds.failed()) {
      failed.push_back(fmt::format("rank {}: malformed reply: {}", engines[i].rank, ds.what()));
      continue;
    }
    highest = std::max(highest, h);
  }
  if (!failed.empty()) {
    return Status(Errc::unavailable, fmt::format("pool {}: not every engine fenced its epochs: {}",
                                                 pool, fmt::join(failed, "; ")));
  }
  return highest;
}

}  // namespace tessera::mgmt
