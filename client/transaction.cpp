// User transactions, client side (client/transaction.hpp, docs/TRANSACTIONS.md).
#include "client/transaction.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "placement/layout.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "proto/tx_ops.hpp"

namespace tessera {

using namespace contimpl;

namespace {
constexpr size_t kMaxOps = 4096;             // as the coordinator allows
constexpr uint64_t kMaxBytes = 64ull << 20;  // as the coordinator allows
}  // namespace

struct Transaction::State {
  Container* cont = nullptr;
  StatePtr st;
  uint64_t epoch = 0;
  uint64_t owner = 0;  // the reader id the transaction's reads carry
  bool ro = false;
  bool done = false;
  // A change (its wire form, without the place of its bytes) and its bytes.
  struct Op : proto::TxChange {
    Buffer data;
    // The whole akey (a single value, or a punch of the akey), not a range of an array.
    bool whole() const { return update ? kind == ValueKind::single : length == 0; }
    uint64_t records() const { return update ? data.size() / rsize : length; }
  };
  std::vector<Op> ops;
  uint64_t bytes = 0;

  Status usable() const {
    if (done)
      return Status(Errc::invalid_argument,
                    "the transaction is finished (committed or "
                    "aborted)");
    return Status();
  }
  Status add(Op op);
  // The changes of this transaction under (oid, dkey, akey) (empty: under the object or dkey).
  const Op* covering(ObjectId oid, const std::string& dkey, const std::string& akey) const;
};

Status Transaction::State::add(Op op) {
  TESSERA_TRY(usable());
  if (ro) {
    return Status(Errc::invalid_argument,
                  "a read-only transaction (opened at a snapshot) changes nothing");
  }
  TESSERA_TRY(placement::check_oid(op.oid));
  op.rsize = std::max<uint32_t>(1, op.rsize);
  if (const auto* ec = ec_class(op.oid); ec != nullptr) {
    TESSERA_TRY(
        ec_supported(*ec, op.akey, op.kind, op.rsize, op.cond, !op.update && op.length > 0));
  }
  if (op.update && (op.dkey.empty() || op.akey.empty())) {
    return Status(Errc::invalid_argument, "an update needs a dkey and an akey");
  }
  if (!op.update && op.dkey.empty() && !op.akey.empty()) {
    return Status(Errc::invalid_argument, "punching an akey needs its dkey");
  }
  if (op.update && op.kind == ValueKind::array && op.data.size() % op.rsize != 0) {
    return Status(Errc::invalid_argument, "an array update holds whole records");
  }
  auto once = [] {
    return Status(Errc::unsupported,
                  "a transaction changes each key once: a dkey or object it punches is not "
                  "changed otherwise, and an array's ranges must not overlap");
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    Op& e = ops[i];
    if (e.oid != op.oid) continue;
    if (e.dkey.empty() || op.dkey.empty()) return once();
    if (e.dkey != op.dkey) continue;
    if (e.akey.empty() || op.akey.empty()) return once();
    if (e.akey != op.akey) continue;
    if (e.whole() && op.whole()) {
      if (e.cond != Cond::none || op.cond != Cond::none) {
        return Status(Errc::unsupported,
                      "a conditional change is its key's only change in a transaction");
      }
      bytes -= e.data.size();
      bytes += op.data.size();
      e = std::move(op);  // a single value: the last change wins
      return Status();
    }
    if (e.whole() || op.whole()) return once();
    if (e.offset < op.offset + op.records() && op.offset < e.offset + e.records()) return once();
  }
  if (ops.size() >= kMaxOps) {
    return Status(Errc::too_big, fmt::format("a transaction changes at most {} keys", kMaxOps));
  }
  if (bytes + op.data.size() > kMaxBytes) {
    return Status(Errc::too_big,
                  fmt::format("a transaction carries at most {} bytes of data", kMaxBytes));
  }
  bytes += op.data.size();
  ops.push_back(std::move(op));
  return Status();
}

const Transaction::State::Op* Transaction::State::covering(ObjectId oid, const std::string& dkey,
                                                           const std::string& akey) const {
  for (const Op& e : ops) {
    if (e.oid != oid) continue;
    if (e.dkey.empty()) return &e;  // the whole object
    if (e.dkey != dkey) continue;
    if (e.akey.empty() || (e.akey == akey && e.whole())) return &e;
  }
  return nullptr;
}

Transaction::~Transaction() = default;

uint64_t Transaction::epoch() const {
  return s_->epoch;
}
bool Transaction::read_only() const {
  return s_->ro;
}
size_t Transaction::pending() const {
  return s_->ops.size();
}

Status Transaction::update(ObjectId oid, std::string dkey, std::string akey, ValueKind kind,
                           uint64_t offset, std::span<const uint8_t> data, UpdateFlags flags) {
  State::Op op;
  op.update = true;
  op.oid = oid;
  op.dkey = std::move(dkey);
  op.akey = std::move(akey);
  op.kind = kind;
  op.offset = kind == ValueKind::array ? offset : 0;
  op.rsize = kind == ValueKind::array ? flags.rsize : 1;
  op.cond = flags.cond;
  op.data = Buffer(data.data(), data.size());
  return s_->add(std::move(op));
}

Status Transaction::punch(ObjectId oid, std::string dkey, std::string akey) {
  State::Op op;
  op.oid = oid;
  op.dkey = std::move(dkey);
  op.akey = std::move(akey);
  return s_->add(std::move(op));
}

Status Transaction::punch_range(ObjectId oid, std::string dkey, std::string akey, uint64_t offset,
                                uint64_t length, uint32_t rsize) {
  if (length == 0) return Status(Errc::invalid_argument, "empty range to punch");
  if (dkey.empty() || akey.empty()) {
    return Status(Errc::invalid_argument, "a range punch needs its dkey and akey");
  }
  State::Op op;
  op.oid = oid;
  op.dkey = std::move(dkey);
  op.akey = std::move(akey);
  op.kind = ValueKind::array;
  op.offset = offset;
  op.length = length;
  op.rsize = rsize;
  return s_->add(std::move(op));
}

namespace {
// Lays transaction `s`'s own changes of an array's records over what was read (`r`), and
// decides must_exist with them.
Result<FetchResult> overlay(const Transaction::State& s, Result<FetchResult> r, ObjectId oid,
                            const std::string& dkey, const std::string& akey, ValueKind kind,
                            uint64_t offset, uint64_t length, uint64_t epoch, FetchFlags flags) {
  if (!r) return r.status();
  if (kind == ValueKind::array) {
    // Lay this transaction's changes of the array's records over what was read.
    const uint64_t rsize = std::max<uint32_t>(1, flags.rsize);
    std::vector<const Transaction::State::Op*> mine;
    uint64_t end = r->size;
    for (const Transaction::State::Op& e : s.ops) {
      if (e.oid == oid && e.dkey == dkey && e.akey == akey) {
        mine.push_back(&e);
        if (e.update) end = std::max(end, e.offset + e.records());
      }
    }
    if (!mine.empty()) {
      const uint64_t n = length != 0 ? length : (end > offset ? end - offset : 0);
      std::vector<uint8_t> written(n, 1);
      for (const auto& [h, hn] : r->holes) {
        for (uint64_t i = h; i < h + hn && i >= offset && i - offset < n; ++i) {
          written[i - offset] = 0;
        }
      }
      const uint64_t had = r->data.size() / rsize;
      for (uint64_t i = had; i < n; ++i) written[i] = 0;
      Buffer data(n * rsize);
      std::memset(data.data(), 0, data.size());
      std::memcpy(data.data(), r->data.data(), std::min<uint64_t>(r->data.size(), data.size()));
      for (const Transaction::State::Op* e : mine) {
        const uint64_t lo = std::max(offset, e->offset);
        const uint64_t hi = std::min(offset + n, e->offset + e->records());
        for (uint64_t i = lo; i < hi; ++i) {
          written[i - offset] = e->update ? 1 : 0;
          uint8_t* to = data.data() + (i - offset) * rsize;
          if (e->update) {
            std::memcpy(to, e->data.data() + (i - e->offset) * rsize, rsize);
          } else {
            std::memset(to, 0, rsize);
          }
        }
      }
      r->holes.clear();
      uint64_t last = 0;  // one past the last written record of the window
      for (uint64_t i = 0; i < n; ++i) {
        if (written[i] != 0) {
          last = i + 1;
          continue;
        }
        if (!r->holes.empty() && r->holes.back().first + r->holes.back().second == offset + i) {
          ++r->holes.back().second;
        } else {
          r->holes.emplace_back(offset + i, 1);
        }
      }
      if (end <= offset + n) r->size = last != 0 ? offset + last : std::min(r->size, offset);
      r->data = std::move(data);
      r->exists = r->size != 0;
      r->epoch = epoch;
    }
  }
  if (!r->exists && flags.must_exist) return Status(Errc::not_found, "no value at this key");
  return r;
}
}  // namespace

Result<FetchResult> Transaction::fetch(ObjectId oid, std::string dkey, std::string akey,
                                       ValueKind kind, uint64_t offset, uint64_t length,
                                       FetchFlags flags) {
  return fetch_async(oid, std::move(dkey), std::move(akey), kind, offset, length, flags).get();
}

Client::Future<FetchResult> Transaction::fetch_async(ObjectId oid, std::string dkey,
                                                     std::string akey, ValueKind kind,
                                                     uint64_t offset, uint64_t length,
                                                     FetchFlags flags) {
  if (Status u = s_->usable(); !u.is_ok()) return ready_future<FetchResult>(u);
  if (Status c = placement::check_oid(oid); !c.is_ok()) return ready_future<FetchResult>(c);
  if (s_->ro) {
    return s_->cont->fetch_async(oid, std::move(dkey), std::move(akey), kind, offset, length,
                                 s_->epoch, flags);
  }
  // This transaction's own change of the whole key answers without asking anyone.
  if (const State::Op* c = s_->covering(oid, dkey, akey); c != nullptr) {
    FetchResult r;
    r.epoch = s_->epoch;
    if (c->update && kind == ValueKind::single) {
      r.exists = true;
      r.size = c->data.size();
      r.data = Buffer(c->data.data(), c->data.size());
      return ready_future<FetchResult>(std::move(r));
    }
    if (flags.must_exist) {
      return ready_future<FetchResult>(Status(Errc::not_found, "punched by this transaction"));
    }
    return ready_future<FetchResult>(std::move(r));
  }
  auto st = s_->st;
  const uint64_t epoch = s_->epoch, owner = s_->owner;
  const State* s = s_.get();  // kept by the caller until the future is ready
  return submit<FetchResult>(st, [=]() -> Result<FetchResult> {
    if (const auto* ec = ec_class(oid); ec != nullptr) {
      FetchFlags f = flags;
      f.must_exist = false;  // decided below, with this transaction's changes
      return overlay(
          *s, ec_fetch(st, *ec, oid, dkey, akey, kind, offset, length, ReadAt(epoch, owner), f),
          oid, dkey, akey, kind, offset, length, epoch, flags);
    }
    auto body = [&] {
      FetchFlags f = flags;
      f.must_exist = false;  // decided below, with this transaction's changes
      return fetch_body(oid, dkey, akey, kind, offset, length, epoch, f,
                        read_ctx(*st, {epoch, owner}));
    };
    auto m = op(st, oid, dkey, Pick::leader, proto::kObjFetch, body, {});
    if (!m) return m.status();
    return overlay(*s, decoded(*m, decode_fetch), oid, dkey, akey, kind, offset, length, epoch,
                   flags);
  });
}

Result<std::vector<KeyEntry>> Transaction::list_all(ListScope scope, ObjectId oid, std::string dkey,
                                                    std::string akey) {
  TESSERA_TRY(s_->usable());
  if (scope == ListScope::objects) {
    return Status(Errc::unsupported, "a transaction lists the keys of an object, not objects");
  }
  TESSERA_TRY(placement::check_oid(oid));
  if (s_->ro) return s_->cont->list_all(scope, oid, dkey, akey, s_->epoch);
  if (scope == ListScope::recx) {
    for (const State::Op& e : s_->ops) {
      if (e.oid == oid && e.dkey == dkey && e.akey == akey && !e.whole()) {
        return Status(Errc::unsupported,
                      "list an array's records in the transaction before changing them");
      }
    }
  }
  auto st = s_->st;
  const uint64_t epoch = s_->epoch, owner = s_->owner;
  auto r = submit<std::vector<KeyEntry>>(st, [=] {
             if (const auto* ec = ec_class(oid); ec != nullptr) {
               return ec_list(st, *ec, scope, oid, dkey, akey, ReadAt(epoch, owner));
             }
             return list_keys(st, scope, oid, dkey, akey, epoch, owner);
           }).get();
  if (!r && r.status().code() != Errc::not_found) return r.status();
  std::vector<KeyEntry> out = r ? std::move(*r) : std::vector<KeyEntry>{};
  // With this transaction's changes: keys it creates appear, keys it punches go.
  auto drop = [&](const std::string& k) {
    std::erase_if(out, [&](const KeyEntry& e) { return e.key == k; });
  };
  for (const State::Op& e : s_->ops) {
    if (e.oid != oid) continue;
    if (e.dkey.empty()) {
      out.clear();  // the whole object is punched, and nothing else of it changes
      continue;
    }
    if (scope == ListScope::dkeys) {
      if (e.update && std::none_of(out.begin(), out.end(),
                                   [&](const KeyEntry& k) { return k.key == e.dkey; })) {
        out.push_back(KeyEntry{e.dkey, oid, ValueKind::single, 0, 0, 0});
      }
      if (!e.update && e.akey.empty()) drop(e.dkey);
      continue;
    }
    if (e.dkey != dkey) continue;
    if (e.akey.empty()) {
      out.clear();
      continue;
    }
    if (scope == ListScope::akeys) {
      if (e.update) {
        auto it = std::find_if(out.begin(), out.end(),
                               [&](const KeyEntry& k) { return k.key == e.akey; });
        uint64_t size = e.kind == ValueKind::single ? e.data.size() : e.offset + e.records();
        if (it == out.end()) {
          out.push_back(KeyEntry{e.akey, oid, e.kind, size, 0, 0});
        } else if (e.kind == ValueKind::single) {
          it->size = size;
        } else {
          it->size = std::max(it->size, size);
        }
      } else if (e.whole()) {
        drop(e.akey);
      }
    } else if (e.akey == akey && e.whole()) {
      out.clear();
    }
  }
  if (scope != ListScope::recx) {
    std::sort(out.begin(), out.end(),
              [](const KeyEntry& a, const KeyEntry& b) { return a.key < b.key; });
  }
  return out;
}

namespace {
// A transaction's changes as the coordinator takes them, their bytes in one bulk. A change of an
// erasure-coded akey goes as its positions' pieces (cells, parity, copies: container_ec.cpp),
// each for one position of the dkey's group.
struct Wire {
  std::vector<proto::TxChange> changes;
  Buffer bulk;
};

Result<Wire> wire_of(const Transaction::State& s) {
  Wire w;
  std::vector<std::pair<const uint8_t*, uint64_t>> bytes;  // each change's, in order
  // Keeps the pieces' bytes until copied (a Buffer's bytes stay put when it moves).
  std::vector<EcPieces> pieces;
  uint64_t total = 0;
  for (const auto& op : s.ops) {
    const auto* ec = ec_class(op.oid);
    if (ec == nullptr || op.akey.empty()) {
      proto::TxChange c = op;
      if (op.update) c.length = 0;
      c.data_len = op.data.size();
      c.crc = crc32c(op.data.span());
      w.changes.push_back(c);
      bytes.emplace_back(op.data.data(), op.data.size());
      total += op.data.size();
      continue;
    }
    auto p = op.update ? ec_update_pieces(*s.st, *ec, op.dkey, op.akey, op.kind, op.offset, op.data,
                                          UpdateFlags{})
                       : ec_punch_pieces(*s.st, *ec, op.dkey, op.akey);
    if (!p) return p.status();
    pieces.push_back(std::move(*p));
    const EcPieces& ps = pieces.back();
    for (const EcPiece& x : ps.pieces) {
      proto::TxChange c;
      c.update = !x.punch;
      c.oid = op.oid;
      c.dkey = op.dkey;
      c.akey = x.akey;
      c.kind = x.kind;
      c.offset = x.offset;
      c.length = x.punch ? x.length : 0;
      c.data_len = x.punch ? 0 : x.length;
      c.crc = x.crc;
      c.pos = x.pos + 1;
      bytes.emplace_back(ps.bulk.data() + x.bulk_offset, c.data_len);
      total += c.data_len;
      w.changes.push_back(std::move(c));
    }
  }
  if (w.changes.size() > kMaxOps) {
    return Status(Errc::too_big,
                  fmt::format("a transaction changes at most {} keys; this one's changes come to "
                              "{} (a change of an erasure-coded akey counts once per piece)",
                              kMaxOps, w.changes.size()));
  }
  if (total > kMaxBytes) {
    return Status(Errc::too_big,
                  fmt::format("a transaction carries at most {} bytes; this one's changes come to "
                              "{} (with the parity and copies of erasure-coded ones)",
                              kMaxBytes, total));
  }
  w.bulk.reset(total);
  uint64_t at = 0;
  for (size_t i = 0; i < w.changes.size(); ++i) {
    w.changes[i].data_off = at;
    if (bytes[i].second > 0) std::memcpy(w.bulk.data() + at, bytes[i].first, bytes[i].second);
    at += bytes[i].second;
  }
  return w;
}

Buffer commit_body(const Transaction::State& s, const std::vector<proto::TxChange>& changes,
                   const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(1024);
  auto req = b.initRoot<schema::TxReq>();
  set_ctx(req.initCtx(), ctx);
  req.setEpoch(s.epoch);
  req.setOwner(s.owner);
  auto l = req.initOps(static_cast<unsigned>(changes.size()));
  for (size_t i = 0; i < changes.size(); ++i)
    proto::set_tx_op(l[static_cast<unsigned>(i)], changes[i]);
  return capn::to_body(b);
}
}  // namespace

namespace contimpl {
Result<uint64_t> punch_object(const StatePtr& st, ObjectId oid) {
  Transaction::State s;  // one change, its epoch stamped by the coordinator
  s.st = st;
  s.ops.emplace_back();
  s.ops.back().oid = oid;
  auto w = wire_of(s);
  if (!w) return w.status();
  for (int attempt = 0;; ++attempt) {
    auto body = [&] { return commit_body(s, w->changes, ctx_of(*st)); };
    auto m = op(st, oid, "", Pick::leader, proto::kObjTxCommit, body, {});
    if (m) return decoded(*m, decode_epoch);
    // Under a transaction's read of the object: again, at a new epoch. A punch whose answer was
    // lost is sent again as well: punching twice leaves what punching once does.
    if ((m.status().code() != Errc::restart && m.status().code() != Errc::uncertain) ||
        attempt >= 16) {
      return m.status();
    }
    st->im->target->sleep_for(std::chrono::milliseconds(1 << std::min(attempt, 6)));
  }
}
}  // namespace contimpl

Result<uint64_t> Transaction::commit() {
  return commit_async().get();
}

Client::Future<uint64_t> Transaction::commit_async() {
  if (Status u = s_->usable(); !u.is_ok()) return ready_future<uint64_t>(u);
  s_->done = true;
  if (s_->ro || s_->ops.empty()) return ready_future<uint64_t>(s_->epoch);
  auto st = s_->st;
  State* s = s_.get();  // kept by the caller until the future is ready
  // The leader of the first change's group coordinates (it holds a part of it); for a piece of
  // an erasure-coded change, the holder of the piece's position (a small write leaves the
  // group's first position out).
  return submit<uint64_t>(st, [st, s]() -> Result<uint64_t> {
    auto r = [&]() -> Result<uint64_t> {
      auto w = wire_of(*s);
      if (!w) return w.status();
      const auto& first = w->changes.front();
      auto body = [&] { return commit_body(*s, w->changes, ctx_of(*st)); };
      auto m = op(st, first.oid, first.dkey, Pick::leader, proto::kObjTxCommit, body, w->bulk,
                  static_cast<int>(first.pos) - 1);
      if (!m) return m.status();
      return decoded(*m, decode_epoch);
    }();
    s->ops.clear();
    return r;
  });
}

void Transaction::abort() {
  s_->done = true;
  s_->ops.clear();
}

// ---- Container ------------------------------------------------------------------------------

Result<std::unique_ptr<Transaction>> Container::tx_open(uint64_t snapshot) {
  std::unique_ptr<Transaction> tx(new Transaction());
  tx->s_ = std::make_unique<Transaction::State>();
  tx->s_->cont = this;
  tx->s_->st = st_;
  if (snapshot != 0) {
    tx->s_->ro = true;
    tx->s_->epoch = snapshot;
    return tx;
  }
  auto st = st_;
  // The epoch comes from a target's clock (the serving targets in turn).
  auto r =
      submit<std::pair<uint64_t, uint64_t>>(st, [st]() -> Result<std::pair<uint64_t, uint64_t>> {
        Status last(Errc::unavailable, "no serving target in the pool map");
        for (int round = 0; round < 3; ++round) {
          std::vector<placement::Shard> targets;
          for (const auto& e : st->view->pool.map.engines) {
            for (const auto& t : e.targets) {
              if (placement::is_serving(t.state)) {
                targets.push_back(placement::Shard{e.rank, t.index, true, false});
              }
            }
          }
          for (size_t i = 0; i < targets.size(); ++i) {
            const auto& t = targets[(st->rotation + i) % targets.size()];
            capnp::MallocMessageBuilder b(128);
            set_ctx(b.initRoot<schema::TxBeginReq>().initCtx(), ctx_of(*st));
            auto m = send(*st, t, proto::kObjTxBegin, capn::to_body(b), {},
                          std::chrono::duration_cast<Nanos>(st->timeout) / 4);
            if (!m) {
              last = m.status();
              if (last.code() == Errc::stale) break;
              if (!retryable(last.code())) return last;
              continue;
            }
            ++st->rotation;
            return decoded(*m, decode_tx_begin);
          }
          (void)refresh(st);
        }
        return last;
      }).get();
  if (!r) return r.status();
  tx->s_->epoch = r->first;
  tx->s_->owner = r->second;
  return tx;
}

Result<uint64_t> Container::run_tx(const std::function<Status(Transaction&)>& body, int attempts) {
  thread_local std::minstd_rand rng(std::random_device{}());
  Status last(Errc::restart, "no attempt");
  for (int a = 0; a < attempts; ++a) {
    if (a > 0) {
      // Transactions that met each other back off by different amounts.
      const int cap = 1 << std::min(a, 6);
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % static_cast<unsigned>(cap)));
    }
    auto tx = tx_open();
    if (!tx) return tx.status();
    last = body(**tx);
    if (last.is_ok()) {
      auto r = (*tx)->commit();
      if (r || r.status().code() != Errc::restart) return r;
      last = r.status();
    } else if (last.code() != Errc::restart) {
      return last;
    }
  }
  return Status(Errc::restart,
                fmt::format("{} (gave up after {} attempts)", last.message(), attempts));
}

}  // namespace tessera
