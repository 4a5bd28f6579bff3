// TargetStore: distributed transactions on one target (docs/TRANSACTIONS.md).
//
// A transaction's changes on this target are staged (data extents written, log records kept
// aside), then logged as one prepare record: durable, but not in the index, so no read sees
// them. A commit applies the records to the index exactly as replay applies logged changes; an
// abort drops them and frees their extents after the next checkpoint. Commit and abort records
// are posted to the log without waiting: the prepare is what must be durable before anyone is
// told "done", and a lost outcome is found again by resolution after a restart.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "core/log.hpp"
#include "proto/capnp_util.hpp"
#include "storage/store.hpp"
#include "storage/store_internal.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {

using namespace detail;

namespace {
// Decisions are remembered this long (a participant that missed one asks for it), and at most
// this many (the oldest go first).
constexpr auto kDtxRemember = std::chrono::minutes(2);
constexpr size_t kDtxRememberMax = 1u << 18;
// Commits logged as one record at most (16 bytes each).
constexpr size_t kDtxUnloggedMax = 4096;

void ref_to(schema::DtxRef::Builder b, const DtxId& id) {
  b.setEpoch(id.epoch);
  b.setLeader(id.leader);
}
DtxId ref_from(schema::DtxRef::Reader r) {
  return {r.getEpoch(), r.getLeader()};
}

}  // namespace

std::string_view dtx_state_name(DtxState s) {
  switch (s) {
    case DtxState::unknown:
      return "unknown";
    case DtxState::prepared:
      return "prepared";
    case DtxState::committed:
      return "committed";
    case DtxState::aborted:
      return "aborted";
  }
  return "unknown";
}

Result<uint64_t> TargetStore::stage_record(DtxStage& stage, std::vector<uint8_t> record,
                                           std::vector<Extent> extents, uint64_t epoch) {
  stage.records.push_back(std::move(record));
  stage.extents.insert(stage.extents.end(), extents.begin(), extents.end());
  return epoch;
}

void TargetStore::dtx_discard(DtxStage& stage) {
  release_extents(stage.extents);
  stage.extents.clear();
  stage.records.clear();
  release_kinds(stage.holds);
}

// Registers a prepare record: the changes it holds become pending here.
Status TargetStore::dtx_load(std::span<const uint8_t> bytes) {
  auto d = std::make_unique<Dtx>();
  d->prepare.assign(bytes.begin(), bytes.end());
  d->prepared = target_.env().now();
  // Each change is decoded once, here: a commit applies the decoded change.
  auto change = [&](std::span<const uint8_t> r) {
    return with_record(r, [&](schema::WalRecord::Reader rec) -> Status {
      Dtx::Key k{{rec.getOidHi(), rec.getOidLo()},
                 from_data(rec.getDkey()),
                 from_data(rec.getAkey()),
                 rec.getEpoch(),
                 {}};
      k.busy = busy_key(k.oid, k.dkey, k.akey);
      Dtx::Change c;
      if (rec.isUpdate()) {
        auto u = rec.getUpdate();
        auto v = version_from(u.getVersion(), data_off_, q_->size());
        if (!v) return v.status();
        d->extents.insert(d->extents.end(), v->extents.begin(), v->extents.end());
        c.kind = u.getKind() == 1 ? ValueKind::array : ValueKind::single;
        c.rsize = u.getRsize();
        c.version = std::move(*v);
      } else if (rec.isPunch()) {
        c.punch = true;
      } else {
        return Status(Errc::internal, "a transaction holds a change of an unknown kind");
      }
      d->min_epoch = std::min(d->min_epoch, k.epoch);
      d->keys.push_back(std::move(k));
      d->changes.push_back(std::move(c));
      return Status();
    });
  };
  TESSERA_TRY(with_record(bytes, [&](schema::WalRecord::Reader rec) -> Status {
    if (!rec.isDtxPrepare()) return Status(Errc::internal, "not a transaction prepare record");
    auto p = rec.getDtxPrepare();
    d->id = ref_from(p.getId());
    d->user = p.getUser();
    for (uint64_t m : p.getParticipants()) d->participants.push_back(m);
    // Data inside a Cap'n Proto message starts on a word boundary, and a flat-array record is
    // whole words: each change is read where it lies.
    for (auto r : p.getRecords()) {
      auto inner = r.asBytes();
      TESSERA_TRY(change({inner.begin(), inner.size()}));
    }
    return Status();
  }));
  if (dtx_.count(d->id) != 0) return Status();  // replay after a checkpoint that holds it
  if (auto dec = dtx_decided_.find(d->id); dec != dtx_decided_.end()) return Status();
  for (const auto& k : d->keys) {
    ++dtx_keys_[k.busy];
    ++dtx_objects_[k.oid];
  }
  // Its updates hold their akeys' kind until it is decided (live, the stage held them so far).
  for (size_t i = 0; i < d->changes.size(); ++i) {
    const Dtx::Change& c = d->changes[i];
    if (c.punch) continue;
    const std::string& key = d->keys[i].busy;
    KindHold& kh = kind_holds_[key];
    if (kh.count++ == 0) {
      kh.kind = c.kind;
      kh.rsize = c.rsize;
    }
  }
  hlc_.observe(d->id.epoch);
  dtx_.emplace(d->id, std::move(d));
  return Status();
}

void TargetStore::dtx_remember(const DtxId& id, bool committed) {
  const Nanos now = target_.env().now();
  const bool added =
      dtx_decided_.insert_or_assign(id, std::pair<bool, Nanos>{committed, now}).second;
  if (added) dtx_decided_order_.push_back(id);
  // Forget the oldest decisions beyond the bound, and the expired ones at the front.
  while (!dtx_decided_order_.empty()) {
    auto old = dtx_decided_.find(dtx_decided_order_.front());
    if (old != dtx_decided_.end() && dtx_decided_.size() <= kDtxRememberMax &&
        now - old->second.second <= kDtxRemember) {
      break;
    }
    if (old != dtx_decided_.end()) dtx_decided_.erase(old);
    dtx_decided_order_.pop_front();
  }
}

// Applies a decision to a prepared transaction (normal operation and replay alike).
void TargetStore::dtx_apply_outcome(const DtxId& id, bool commit) {
  auto it = dtx_.find(id);
  if (it != dtx_.end()) {
    Dtx& d = *it->second;
    for (const auto& k : d.keys) {
      auto kit = dtx_keys_.find(k.busy);
      if (kit != dtx_keys_.end() && --kit->second == 0) dtx_keys_.erase(kit);
      auto oit = dtx_objects_.find(k.oid);
      if (oit != dtx_objects_.end() && --oit->second == 0) dtx_objects_.erase(oit);
    }
    if (commit) {
      // As replay applies each logged change (apply_record).
      for (size_t i = 0; i < d.changes.size(); ++i) {
        const Dtx::Key& k = d.keys[i];
        Dtx::Change& c = d.changes[i];
        hlc_.observe(k.epoch);
        if (c.punch) {
          apply_punch(k.oid, k.dkey, k.akey, k.epoch);
        } else {
          apply_version(k.oid, k.dkey, k.akey, c.kind, std::max<uint32_t>(1, c.rsize),
                        std::move(c.version));
        }
      }
      updates_ += d.changes.size();
      ++dtx_committed_;
    } else {
      ++dtx_aborted_;
      log::info("{}: transaction {} of rank {} target {} aborted: {} changes dropped", who(),
                id.epoch, id.leader >> 32, id.leader & 0xffffffffu, d.changes.size());
      // Freed after the next checkpoint: the current one may still name them as prepared.
      for (const Extent& e : d.extents) {
        pending_free_.push_back(e);
        pending_bytes_ += round_block(e.len);
      }
    }
    // Its updates' kind holds end (committed: its versions are in the index now).
    for (size_t i = 0; i < d.changes.size(); ++i) {
      if (!d.changes[i].punch) release_kind(d.keys[i].busy);
    }
    dtx_.erase(it);
  }
  dtx_remember(id, commit);
  dtx_cv_.notify_all();
  busy_cv_.notify_all();
}

namespace {
std::vector<uint8_t> outcome_record(std::span<const DtxId> ids, bool commit) {
  capnp::MallocMessageBuilder b(static_cast<unsigned>(8 + 2 * ids.size()));
  auto rec = b.initRoot<schema::WalRecord>();
  auto out = commit ? rec.initDtxCommit() : rec.initDtxAbort();
  auto list = out.initIds(static_cast<unsigned>(ids.size()));
  for (size_t i = 0; i < ids.size(); ++i) ref_to(list[static_cast<unsigned>(i)], ids[i]);
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}
}  // namespace

void TargetStore::dtx_post(std::span<const DtxId> ids, bool commit) {
  if (ids.empty()) return;
  if (!commit) {
    wal_->post(outcome_record(ids, false));
    return;
  }
  // Commits wait for the next group, and every commit decided until it forms goes in one
  // record (dtx_unlogged_record); a long queue goes at once.
  dtx_unlogged_.insert(dtx_unlogged_.end(), ids.begin(), ids.end());
  if (dtx_unlogged_.size() >= kDtxUnloggedMax) {
    wal_->post(dtx_unlogged_record());
  } else {
    wal_->hold();
  }
}

std::vector<uint8_t> TargetStore::dtx_unlogged_record() {
  if (dtx_unlogged_.empty()) return {};
  auto rec = outcome_record(dtx_unlogged_, true);
  dtx_unlogged_.clear();
  return rec;
}

Status TargetStore::dtx_abort_durable(const DtxId& id) {
  if (dtx_state(id) == DtxState::committed) {
    return Status(Errc::exists, fmt::format("{}: transaction {} was committed", who(), id.epoch));
  }
  if (dtx_state(id) != DtxState::aborted) dtx_apply_outcome(id, false);
  // Logged again when aborted already: the earlier record may only have been posted.
  const auto rec = outcome_record({&id, 1}, false);
  return wal_->append(std::span<const uint8_t>(rec.data(), rec.size()), [] {});
}

Status TargetStore::dtx_prepare(const DtxId& id, std::vector<uint64_t> participants,
                                DtxStage&& stage, const DtxChecks& checks) {
  if (auto st = dtx_state(id); st != DtxState::unknown) {
    dtx_discard(stage);
    if (st == DtxState::aborted) {
      return Status(Errc::aborted, fmt::format("{}: transaction {} was already decided aborted "
                                               "here",
                                               who(), id.epoch));
    }
    return Status(Errc::exists, fmt::format("{}: transaction {} is already {} here", who(),
                                            id.epoch, dtx_state_name(st)));
  }
  // One part per transaction and target: a second prepare of the same id while the first is
  // being logged would be taken for a replayed duplicate, and its changes dropped.
  if (!dtx_preparing_.insert(id).second) {
    dtx_discard(stage);
    return Status(Errc::exists, fmt::format("{}: transaction {} is already being prepared here",
                                            who(), id.epoch));
  }
  struct Preparing {
    TargetStore& store;
    std::set<DtxId>& set;
    DtxId id;
    DtxStage& stage;
    // The stage's kind holds end here: the prepared transaction holds the kinds from its
    // registration (dtx_load) on, and a refused one holds nothing.
    ~Preparing() {
      set.erase(id);
      store.release_kinds(stage.holds);
    }
  } preparing{*this, dtx_preparing_, id, stage};
  // One first segment that holds the whole record: its changes, its participants and the
  // pointers around them (a smaller guess costs a second segment, a larger one zeroed memory).
  size_t need = 32 + participants.size() + stage.records.size();
  for (const auto& r : stage.records) need += (r.size() + 7) / 8;
  capnp::MallocMessageBuilder b(static_cast<unsigned>(need));
  auto rec = b.initRoot<schema::WalRecord>();
  rec.setEpoch(id.epoch);
  auto p = rec.initDtxPrepare();
  ref_to(p.initId(), id);
  p.setUser(checks.user);
  auto parts = p.initParticipants(static_cast<unsigned>(participants.size()));
  for (size_t i = 0; i < participants.size(); ++i)
    parts.set(static_cast<unsigned>(i), participants[i]);
  auto list = p.initRecords(static_cast<unsigned>(stage.records.size()));
  for (size_t i = 0; i < stage.records.size(); ++i) {
    list.set(static_cast<unsigned>(i),
             capnp::Data::Reader(stage.records[i].data(), stage.records[i].size()));
  }
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  std::span<const uint8_t> span(bytes.begin(), bytes.size());
  Status loaded;
  std::function<void()> apply = [&] { loaded = dtx_load(span); };
  Status st = wal_->append(span, apply);
  if (!st.is_ok()) {
    dtx_discard(stage);
    return st;
  }
  if (!loaded.is_ok()) return loaded;
  if (dtx_.count(id) == 0) {
    // Decided aborted while the log was written (a resolver gave up on it): the decision
    // stands, and the data is freed once no checkpoint can name it.
    for (const Extent& e : stage.extents) {
      pending_free_.push_back(e);
      pending_bytes_ += round_block(e.len);
    }
    return Status(Errc::aborted, fmt::format("{}: transaction {} was decided aborted while it "
                                             "was prepared",
                                             who(), id.epoch));
  }
  if (wal_->used() > wal_len_ / 2 && !ckpt_wanted_) {
    ckpt_wanted_ = true;
    bg_cv_.notify_all();
  }
  // Registered: a read from now on meets the prepared changes and waits for their outcome. A
  // read that came before left its stamp, and a change that would slide under it is refused.
  if (Status c = dtx_conflict(*dtx_.at(id), checks); !c.is_ok()) {
    // Durable before anyone hears it: a replay must not find this part prepared again, for
    // participants deciding without their coordinator would then commit what was refused.
    Status st = dtx_abort_durable(id);
    return st.is_ok() ? c : st;
  }
  return Status();
}

Status TargetStore::dtx_conflict(const Dtx& d, const DtxChecks& checks) const {
  for (const auto& k : d.keys) {
    if (checks.reads) {
      if (uint64_t at = reads_.conflict(k.oid, k.dkey, k.akey, k.epoch, checks.owner); at != 0) {
        return Status(Errc::restart,
                      fmt::format("{}: a transaction read this key at epoch {}, after the change's "
                                  "epoch {}: run the transaction again",
                                  who(), at, k.epoch));
      }
    }
    if (!checks.newer) continue;
    // At the same epoch too: epochs of different clocks can be equal, and two changes of a
    // key at one epoch would leave which one shows undecided.
    if (uint64_t at = newest_change(k.oid, k.dkey, k.akey); at >= k.epoch) {
      return Status(Errc::restart, fmt::format("{}: the key changed at epoch {}, at or after "
                                               "the transaction's epoch {}: run it again",
                                               who(), at, k.epoch));
    }
    for (const auto& [other, od] : dtx_) {
      if (other == d.id) continue;
      for (const auto& ok : od->keys) {
        if (ok.oid != k.oid || ok.epoch < k.epoch) continue;
        bool dkey_meets = k.dkey.empty() || ok.dkey.empty() || ok.dkey == k.dkey;
        bool akey_meets = k.akey.empty() || ok.akey.empty() || ok.akey == k.akey;
        if (dkey_meets && akey_meets) {
          return Status(Errc::restart,
                        fmt::format("{}: another transaction is changing the key at epoch {}, "
                                    "after this one's {}: run it again",
                                    who(), ok.epoch, k.epoch));
        }
      }
    }
  }
  return Status();
}

uint64_t TargetStore::newest_change(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey) const {
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return 0;
  const Object& o = oit->second;
  uint64_t best = o.punches.empty() ? 0 : o.punches.back();
  auto of_akey = [&](const AkeyVal& a) {
    if (!a.punches.empty()) best = std::max(best, a.punches.back());
    for (const auto& v : a.versions) best = std::max(best, v.epoch);
  };
  auto of_dkey = [&](const Dkey& d) {
    if (!d.punches.empty()) best = std::max(best, d.punches.back());
    if (akey.empty()) {
      for (const auto& [name, a] : d.akeys) of_akey(a);
    } else if (auto a = d.akeys.find(akey); a != d.akeys.end()) {
      of_akey(a->second);
    }
  };
  if (dkey.empty()) {
    for (const auto& [name, d] : o.dkeys) of_dkey(d);
  } else if (auto d = o.dkeys.find(dkey); d != o.dkeys.end()) {
    of_dkey(d->second);
  }
  return best;
}

Status TargetStore::dtx_commit(const DtxId& id) {
  switch (dtx_state(id)) {
    case DtxState::committed:
      return Status();
    case DtxState::aborted:
      return Status(Errc::aborted,
                    fmt::format("{}: transaction {} was decided aborted", who(), id.epoch));
    case DtxState::unknown:
      return Status(Errc::not_found,
                    fmt::format("{}: transaction {} is not prepared here", who(), id.epoch));
    case DtxState::prepared:
      break;
  }
  dtx_apply_outcome(id, true);
  dtx_post({&id, 1}, true);
  return Status();
}

void TargetStore::dtx_commit_prepared(std::span<const DtxId> ids) {
  std::vector<DtxId> done;
  done.reserve(ids.size());
  for (const DtxId& id : ids) {
    if (dtx_state(id) != DtxState::prepared) continue;
    dtx_apply_outcome(id, true);
    done.push_back(id);
  }
  dtx_post(done, true);
}

Status TargetStore::dtx_abort(const DtxId& id) {
  switch (dtx_state(id)) {
    case DtxState::aborted:
      return Status();
    case DtxState::committed:
      return Status(Errc::exists, fmt::format("{}: transaction {} was committed", who(), id.epoch));
    case DtxState::unknown:
    case DtxState::prepared:
      break;
  }
  dtx_apply_outcome(id, false);
  dtx_post({&id, 1}, false);
  return Status();
}

DtxState TargetStore::dtx_state(const DtxId& id) const {
  if (dtx_.count(id) != 0) return DtxState::prepared;
  auto it = dtx_decided_.find(id);
  if (it == dtx_decided_.end()) return DtxState::unknown;
  return it->second.first ? DtxState::committed : DtxState::aborted;
}

std::optional<DtxId> TargetStore::dtx_blocking(const ObjectId& oid, std::string_view dkey,
                                               std::string_view akey, uint64_t epoch) const {
  if (dtx_objects_.count(oid) == 0) return std::nullopt;
  if (epoch == 0) epoch = kMaxEpoch;
  for (const auto& [id, d] : dtx_) {
    for (const auto& k : d->keys) {
      if (k.oid != oid || k.epoch > epoch) continue;
      // A change of the whole object or dkey, or one under the key asked about.
      bool dkey_meets = dkey.empty() || k.dkey.empty() || k.dkey == dkey;
      bool akey_meets = akey.empty() || k.akey.empty() || k.akey == akey;
      if (dkey_meets && akey_meets) return id;
    }
  }
  return std::nullopt;
}

std::vector<TargetStore::DtxInfo> TargetStore::dtx_prepared() const {
  std::vector<DtxInfo> out;
  out.reserve(dtx_.size());
  for (const auto& [id, d] : dtx_) out.push_back(*dtx_info(id));
  return out;
}

std::optional<TargetStore::DtxInfo> TargetStore::dtx_info(const DtxId& id) const {
  auto it = dtx_.find(id);
  if (it == dtx_.end()) return std::nullopt;
  const Dtx& d = *it->second;
  DtxInfo i{id, d.participants, d.prepared, {}, {}, d.user};
  if (!d.keys.empty()) {
    i.oid = d.keys.front().oid;
    i.dkey = d.keys.front().dkey;
  }
  return i;
}

}  // namespace tessera::storage
