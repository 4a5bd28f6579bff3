#include "rebuild/check.hpp"
#include "rebuild/check_internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/repair.hpp"
#include "shard/keys.hpp"

namespace tessera::rebuild {

void CheckCounters::add(CheckFinding f) {
  if (findings.size() < kMaxFindings) {
    findings.push_back(std::move(f));
  } else {
    ++left_off;
  }
}

Result<DkeyDigests> dkey_digests(storage::TargetStore& store, ObjectId key, const std::string& dkey,
                                 uint64_t epoch, const std::string& after, size_t limit) {
  DkeyDigests out;
  const auto names = store.akey_names(key, dkey);
  out.known = !names.empty();
  for (const auto& [akey, kind] : names) {
    if (!after.empty() && akey <= after) continue;
    if (placement::parse_ec_cell_akey(akey)) continue;  // cells are checked stripe by stripe
    if (out.akeys.size() >= limit) {
      out.more = true;
      break;
    }
    auto d = store.akey_digest(key, dkey, akey, epoch);
    if (!d) return d.status();
    if (d->exists) out.akeys.emplace_back(akey, *d);
  }
  return out;
}

Result<storage::AkeyExport> history_upto(storage::TargetStore& store, ObjectId key,
                                         const std::string& dkey, const std::string& akey,
                                         uint64_t upto) {
  auto x = store.export_akey(key, dkey, akey);
  if (!x) return x.status();
  std::erase_if(x->versions, [upto](const storage::AkeyExport::Ver& v) { return v.epoch > upto; });
  for (auto* p : {&x->object_punches, &x->dkey_punches, &x->akey_punches}) {
    std::erase_if(*p, [upto](uint64_t e) { return e > upto; });
  }
  return x;
}

namespace detail {

std::string where(const Shard& s) {
  return fmt::format("rank {} target {}", s.rank, s.target);
}

std::string akey_text(const std::string& akey) {
  const std::string user = fmt::format("'{}'", placement::ec_user_akey(akey));
  if (auto cell = placement::parse_ec_cell_akey(akey)) {
    return fmt::format("{} (cell of position {})", user, cell->second);
  }
  if (placement::is_ec_sum_akey(akey)) return user + " (checksum record)";
  if (placement::is_ec_copy_akey(akey)) return user + " (partial-stripe copies)";
  return user;
}

namespace {

std::string describe(const storage::AkeyDigest& d) {
  if (!d.exists) return "nothing";
  if (d.kind == ValueKind::single) {
    return fmt::format("a {}-byte value of epoch {} (digest {:016x})", d.size, d.epoch, d.digest);
  }
  return fmt::format("an array of {} records of {} bytes (digest {:016x})", d.size, d.rsize,
                     d.digest);
}

bool same(const storage::AkeyDigest& a, const storage::AkeyDigest& b) {
  if (!a.exists && !b.exists) return true;
  return a == b;
}

}  // namespace

Result<DkeyDigests> Checker::digests(const Shard& m, ObjectId key, const std::string& dkey,
                                     uint64_t epoch, bool probe) {
  DkeyDigests all;
  std::string after;
  while (true) {
    DkeyDigests page;
    if (peer.is_me(m)) {
      if (probe) {
        page.known = !store().akey_names(key, dkey).empty();
      } else {
        if (o.settle) TESSERA_TRY(o.settle(key, dkey, epoch));
        auto r = dkey_digests(store(), key, dkey, epoch, after);
        if (!r) return r.status();
        page = std::move(*r);
      }
    } else {
      capnp::MallocMessageBuilder b(256);
      auto req = b.initRoot<schema::DigestReq>();
      req.initCtx().setPool(peer.shard.id);
      req.getCtx().setMapVersion(peer.map().version);
      req.initOid().setHi(key.hi);
      req.getOid().setLo(key.lo);
      req.setDkey(capn::as_data(dkey));
      req.setEpoch(epoch);
      req.setAfter(capn::as_data(after));
      req.setProbe(probe);
      auto r = peer.ask(m, proto::kObjDigest, capn::to_body(b), {});
      if (!r) return r.status();
      capn::DecodeScope ds;
      capn::BodyReader br(r->body);
      auto rep = br.root<schema::DigestRep>();
      page.known = rep.getKnown();
      page.more = rep.getMore();
      for (auto a : rep.getAkeys()) {
        storage::AkeyDigest d;
        d.kind = shard_keys::kind_of(a.getKind());
        d.rsize = a.getRsize();
        d.exists = a.getExists();
        d.size = a.getSize();
        d.epoch = a.getEpoch();
        d.digest = a.getDigest();
        d.damaged = a.getDamaged();
        page.akeys.emplace_back(capn::from_data(a.getAkey()), d);
      }
      if (ds.failed()) return Status(Errc::protocol, "malformed digest reply: " + ds.what());
    }
    all.known |= page.known;
    for (auto& a : page.akeys) all.akeys.push_back(std::move(a));
    if (!page.more || all.akeys.empty()) break;
    after = all.akeys.back().first;
  }
  return all;
}

Result<storage::AkeyExport> Checker::history(const Shard& src, ObjectId key,
                                             const std::string& dkey, const std::string& akey,
                                             uint64_t upto) {
  if (peer.is_me(src)) return history_upto(store(), key, dkey, akey, upto);
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::FetchReq>();
  req.initOid().setHi(key.hi);
  req.getOid().setLo(key.lo);
  req.setDkey(capn::as_data(dkey));
  req.setAkey(capn::as_data(akey));
  req.setEpoch(upto);
  req.initCtx().setPool(peer.shard.id);
  req.getCtx().setMapVersion(peer.map().version);
  auto r = peer.ask(src, proto::kObjShardExport, capn::to_body(b), {});
  if (!r) return r.status();
  auto p = parse_push(r->body, std::move(r->bulk));
  if (!p) return p.status();
  return std::move(p->x);
}

void Checker::pause(int attempt) {
  auto d = kFirstPause;
  for (int i = 0; i < attempt; ++i) d *= 3;
  target().sleep_for(d);
}

Result<uint64_t> Checker::read_settled(const std::function<Result<bool>(uint64_t epoch)>& read) {
  const Nanos busy_until = target().env().now() + kBusyWait;
  uint64_t epoch = 0;
  for (int attempt = 0; attempt < kAttempts;) {
    if (attempt > 0) pause(attempt - 1);
    epoch = store().new_epoch();
    auto done = read(epoch);
    if (!done && done.status().code() == Errc::busy && target().env().now() < busy_until) {
      target().sleep_for(kFirstPause);
      continue;
    }
    if (!done) return done.status();
    if (*done) break;
    ++attempt;
  }
  return epoch;
}

void Checker::report(CheckFinding f, const std::function<Status()>& repair) {
  ++c.inconsistent;
  if (o.repair) {
    Status st = repair();
    f.repaired = st.is_ok();
    if (f.repaired) {
      ++c.fixed;
    } else {
      c.last_error = st.to_string();
      f.what += fmt::format(" (not repaired: {})", st.to_string());
    }
  }
  log::warn("rank {} target {}: pool {} object {:x}.{:x} dkey '{}'{}: {}{}", peer.rank, peer.target,
            peer.shard.id, f.oid.hi, f.oid.lo, f.dkey,
            f.akey.empty() ? "" : fmt::format(" akey '{}'", f.akey), f.what,
            f.repaired ? " (repaired)" : "");
  c.add(std::move(f));
}

void Checker::verify_dkey(ObjectId key, const std::string& dkey) {
  for (const auto& [akey, kind] : store().akey_names(key, dkey)) {
    ++c.akeys;
    uint64_t damaged = 0, healed = 0, left = 0;
    std::string why;
    if (!o.repair) {
      auto v = store().verify_akey(key, dkey, akey);
      if (!v) {
        c.last_error = v.status().to_string();
        continue;
      }
      c.extents += v->extents;
      c.bytes += v->bytes;
      damaged = left = v->damaged.size();
      if (damaged > 0) why = v->damaged.front().error;
    } else {
      // From another copy of the same version, or for an erasure-coded cell from its stripe.
      RepairCounters rc;
      Status st = repair_akey(peer, key, dkey, akey, rc);
      if (!st.is_ok()) c.last_error = st.to_string();
      c.extents += rc.extents;
      c.bytes += rc.bytes;
      damaged = rc.damaged;
      healed = rc.repaired;
      left = rc.unrepaired;  // the rest were aggregated away meanwhile
      why = rc.last_error;
    }
    if (damaged == 0) continue;
    c.damaged += damaged;
    c.repaired += healed;
    c.unrepaired += left;
    if (!why.empty()) c.last_error = why;
    CheckFinding f;
    f.oid = shard_keys::user_oid(key);
    f.dkey = dkey;
    f.akey = placement::ec_user_akey(akey);
    f.what =
        fmt::format("{} stored piece{} of {} fail{} {} checksum{}", damaged,
                    damaged == 1 ? "" : "s", akey_text(akey), damaged == 1 ? "s" : "",
                    damaged == 1 ? "its" : "their", left == 0 ? "" : fmt::format(" ({})", why));
    f.copies = where(Shard{peer.rank, peer.target});
    f.repaired = o.repair && left == 0;
    c.add(std::move(f));
  }
}

// The positions that keep identical copies of `akey` (in order).
std::vector<uint32_t> Checker::holders_of(const std::optional<placement::EcGeometry>& g, size_t n,
                                          const std::string& akey) {
  std::vector<uint32_t> out;
  if (!g) {
    for (uint32_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  if (placement::parse_ec_cell_akey(akey)) return out;  // checked stripe by stripe
  if (placement::is_ec_sum_akey(akey)) {
    for (uint32_t i = 0; i < g->n(); ++i) out.push_back(i);
    return out;
  }
  // Partial-stripe copies: whole on every parity position (a data position holds only the
  // bytes of its own cells). Single values: data position 0 and every parity position.
  if (!placement::is_ec_copy_akey(akey)) out.push_back(g->data_pos(0));
  for (uint32_t q = 0; q < g->p; ++q) out.push_back(g->parity_pos(q));
  return out;
}

// The akeys whose copies disagree at `epoch`.
Result<std::vector<Diff>> Checker::differences(const std::vector<Position>& pos, ObjectId key,
                                               const std::string& dkey,
                                               const std::optional<placement::EcGeometry>& g,
                                               uint64_t epoch, uint64_t& compared) {
  // Each reader's digests, once per reader (one may read for two positions).
  std::vector<Shard> readers;
  std::vector<std::map<std::string, storage::AkeyDigest>> seen;
  std::set<std::string> names;
  for (const auto& p : pos) {
    const Shard* r = p.reader();
    if (r == nullptr) continue;
    bool dup = false;
    for (const auto& s : readers) dup |= s.rank == r->rank && s.target == r->target;
    if (dup) continue;
    auto d = digests(*r, key, dkey, epoch);
    if (!d) return d.status();
    readers.push_back(*r);
    seen.emplace_back();
    for (auto& [akey, dg] : d->akeys) {
      names.insert(akey);
      seen.back().emplace(akey, dg);
    }
  }
  auto index_of = [&](const Shard& s) {
    for (size_t i = 0; i < readers.size(); ++i) {
      if (readers[i].rank == s.rank && readers[i].target == s.target) return i;
    }
    return readers.size();
  };
  std::vector<Diff> out;
  compared = 0;
  for (const auto& akey : names) {
    Diff d;
    d.akey = akey;
    for (uint32_t i : holders_of(g, pos.size(), akey)) {
      const Shard* r = pos[i].reader();
      if (r == nullptr) continue;
      const size_t m = index_of(*r);
      if (m == readers.size()) continue;
      bool dup = false;
      for (const auto& h : d.holders) dup |= h.rank == r->rank && h.target == r->target;
      if (dup) continue;
      auto it = seen[m].find(akey);
      // A damaged copy is left to the repair of damaged pieces (its holder's own check).
      if (it != seen[m].end() && it->second.damaged) continue;
      d.holders.push_back(*r);
      d.seen.push_back(it == seen[m].end() ? storage::AkeyDigest{} : it->second);
    }
    if (d.holders.size() < 2) continue;
    ++compared;
    bool agree = true;
    for (const auto& s : d.seen) agree &= same(s, d.seen[0]);
    if (agree) continue;
    // The majority's copy; on a tie, the first position's.
    size_t best = 0, best_n = 0;
    for (size_t i = 0; i < d.seen.size(); ++i) {
      size_t n = 0;
      for (const auto& s : d.seen) n += same(s, d.seen[i]) ? 1 : 0;
      if (n > best_n) {
        best = i;
        best_n = n;
      }
    }
    d.good = best;
    out.push_back(std::move(d));
  }
  return out;
}

Status Checker::compare_dkey(const std::vector<Position>& pos, ObjectId key,
                             const std::string& dkey,
                             const std::optional<placement::EcGeometry>& g) {
  std::vector<Diff> diffs;
  uint64_t compared = 0;
  auto read = read_settled([&](uint64_t epoch) -> Result<bool> {
    auto d = differences(pos, key, dkey, g, epoch, compared);
    if (!d) return d.status();
    diffs = std::move(*d);
    return diffs.empty();
  });
  if (!read) return read.status();
  const uint64_t epoch = *read;
  c.compared += compared;
  for (const Diff& d : diffs) {
    CheckFinding f;
    f.oid = shard_keys::user_oid(key);
    f.dkey = dkey;
    f.akey = placement::ec_user_akey(d.akey);
    std::string bad, good = where(d.holders[d.good]);
    for (size_t i = 0; i < d.holders.size(); ++i) {
      if (i == d.good) continue;
      if (same(d.seen[i], d.seen[d.good])) {
        good += ", " + where(d.holders[i]);
      } else {
        bad += fmt::format("{}{} holds {}", bad.empty() ? "" : "; ", where(d.holders[i]),
                           describe(d.seen[i]));
      }
    }
    f.what = fmt::format("copies{} differ at epoch {}: {}; {} hold{} {}",
                         d.akey == f.akey ? "" : " of " + akey_text(d.akey), epoch, bad, good,
                         good.find(',') == std::string::npos ? "s" : "", describe(d.seen[d.good]));
    f.copies = bad;
    report(std::move(f), [&] { return repair_copies(key, dkey, d, epoch); });
  }
  return Status();
}

// Gives every disagreeing holder the good copy's history at or below `epoch`, then checks
// that they agree.
Status Checker::repair_copies(ObjectId key, const std::string& dkey, const Diff& d,
                              uint64_t epoch) {
  auto x = history(d.holders[d.good], key, dkey, d.akey, epoch);
  if (!x) return x.status();
  for (size_t i = 0; i < d.holders.size(); ++i) {
    if (same(d.seen[i], d.seen[d.good])) continue;
    Pushed sent;
    TESSERA_TRY(peer.push(d.holders[i], key, dkey, d.akey, *x, sent, epoch));
  }
  for (size_t i = 0; i < d.holders.size(); ++i) {
    if (same(d.seen[i], d.seen[d.good])) continue;
    auto now = digests(d.holders[i], key, dkey, epoch);
    if (!now) return now.status();
    storage::AkeyDigest got;
    for (const auto& [a, dg] : now->akeys) {
      if (a == d.akey) got = dg;
    }
    if (!same(got, d.seen[d.good])) {
      return Status(Errc::internal, fmt::format("{} still holds {} after the repair",
                                                where(d.holders[i]), describe(got)));
    }
  }
  return Status();
}

Status Checker::dkey_work(const placement::ObjectClass& cls, const placement::Placement& place,
                          ObjectId key, const std::string& dkey) {
  const auto pos = place.dkey(dkey);
  bool reader = false;
  for (const auto& p : pos) reader |= p.reader() != nullptr && peer.is_me(*p.reader());
  if (!reader) return Status();  // not a holder of complete data here: rebuild's business
  ++c.dkeys;
  std::optional<placement::EcGeometry> g;
  if (cls.redundancy == placement::Redundancy::erasure) {
    const uint64_t cell = peer.cell_size(shard_keys::cont_of(key));
    if (cell == 0) return Status(Errc::not_found, "the container is not in the pool map");
    g = placement::ec_geometry(cls.data, cls.parity, cell, dkey);
  }
  verify_dkey(key, dkey);
  if (pos.size() < 2) return Status();
  // The first position's holder compares the group; another holder does only when that one
  // does not know the dkey at all (its copy is wholly missing).
  const int first = placement::first_holder(pos);
  if (first < 0) return Status();
  const Shard& checker = *pos[static_cast<size_t>(first)].reader();
  if (!peer.is_me(checker)) {
    auto probe = digests(checker, key, dkey, 0, true);
    if (!probe) return probe.status();
    if (probe->known) return Status();
  }
  TESSERA_TRY(compare_dkey(pos, key, dkey, g));
  if (!g) return Status();
  for (const auto& [akey, kind] : store().akey_names(key, dkey)) {
    if (placement::is_ec_sum_akey(akey)) {
      TESSERA_TRY(check_stripes(*g, pos, key, dkey, placement::ec_user_akey(akey)));
    }
  }
  return Status();
}

}  // namespace detail

Result<CheckCounters> check(ActorRuntime& rt, uint32_t rank, uint16_t target, PoolShard& shard,
                            const CheckOptions& opts) {
  if (!shard.view) return Status(Errc::unavailable, "no pool map");
  detail::Checker k{Peer{rt, rank, target, shard, kRepairRetry, opts.cancelled}, opts, {}};
  const double share = std::clamp(opts.share, 0.01, 1.0);
  Env& env = rt.target().env();
  std::vector<ObjectId> keys = shard.store->object_keys();
  std::erase_if(keys, [&](const ObjectId& key) { return shard_keys::cont_of(key) != opts.cont; });
  uint64_t total = 0, done = 0;
  for (const ObjectId& key : keys) total += shard.store->dkey_names(key).size();
  if (opts.progress) opts.progress(0, total);
  for (const ObjectId& key : keys) {
    const ObjectId uoid = shard_keys::user_oid(key);
    const auto* cls = placement::find_class(placement::oid_class(uoid));
    if (cls == nullptr) continue;
    auto place = placement::place(uoid, k.peer.map());
    if (!place) continue;
    ++k.c.objects;
    for (const auto& dkey : shard.store->dkey_names(key)) {
      if (k.cancelled()) return Status(Errc::shutdown, "check cancelled");
      const Nanos t0 = env.now();
      Status st = k.dkey_work(*cls, *place, key, dkey);
      if (!st.is_ok()) {
        if (st.code() == Errc::shutdown) return st;
        k.c.last_error = st.to_string();
        CheckFinding f;
        f.oid = uoid;
        f.dkey = dkey;
        f.what = fmt::format("not checked: {}", st.to_string());
        ++k.c.unchecked;
        k.c.add(std::move(f));
      }
      if (opts.progress) opts.progress(std::min(++done, total), total);
      const Nanos busy = env.now() - t0;
      if (share < 1.0 && busy > Nanos(0)) {
        rt.target().sleep_for(
            Nanos(static_cast<int64_t>(static_cast<double>(busy.count()) * (1.0 - share) / share)));
      }
    }
  }
  if (opts.progress) opts.progress(total, total);
  return std::move(k.c);
}

}  // namespace tessera::rebuild
