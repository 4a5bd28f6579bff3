#include "rebuild/peer.hpp"

#include <fmt/format.h>

#include "shard/keys.hpp"
#include "proto/protocol.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "core/checksum.hpp"

namespace tessera::rebuild {

namespace {

constexpr auto kAskTimeout = std::chrono::seconds(10);
constexpr auto kRetryPause = std::chrono::milliseconds(200);

bool retryable(Errc e) {
  return e == Errc::unavailable || e == Errc::timeout || e == Errc::shutdown ||
         e == Errc::unreachable || e == Errc::stale;
}

}  // namespace

Result<Message> Peer::ask(const placement::Shard& dst, uint16_t method, const Buffer& body,
                          const Buffer& bulk) const {
  const auto deadline = rt.target().env().now() + retry;
  while (true) {
    Message m;
    m.dst = ActorAddr{dst.rank, static_cast<uint16_t>(dst.target), proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = method;
    m.body = Buffer(body.data(), body.size());
    m.bulk = Buffer(bulk.data(), bulk.size());
    auto r = rt.ask(std::move(m), kAskTimeout, proto::kObjectServiceActor);
    Status st = !r ? r.status() : r->status != Errc::ok ? Status(r->status, r->error) : Status();
    if (st.is_ok()) return r;
    if (!retryable(st.code()) || rt.target().env().now() >= deadline ||
        (cancelled && cancelled())) {
      return at_target(st, dst.rank, dst.target);
    }
    rt.target().sleep_for(kRetryPause);
  }
}

Result<storage::FetchResult> Peer::fetch(const placement::Shard& src, ObjectId key,
                                         const std::string& dkey, const std::string& akey,
                                         uint64_t off, uint64_t len, uint64_t epoch,
                                         storage::ValueKind kind, uint32_t rsize,
                                         uint64_t stamp) const {
  if (is_me(src)) {
    if (stamp != 0) {
      shard.store->observe_epoch(epoch);
      shard.store->read_stamps().note(key, dkey, akey, epoch, stamp);
    }
    storage::FetchOptions fo;
    fo.rsize = rsize;
    return shard.store->fetch(key, dkey, akey, kind, off, len, epoch, fo);
  }
  capnp::MallocMessageBuilder b(512);
  auto req = b.initRoot<schema::FetchReq>();
  req.initOid().setHi(key.hi);
  req.getOid().setLo(key.lo);
  req.setDkey(capn::as_data(dkey));
  req.setAkey(capn::as_data(akey));
  req.setKind(kind == storage::ValueKind::array ? schema::ValueKind::ARRAY
                                                : schema::ValueKind::SINGLE);
  req.setRsize(rsize);
  req.setOffset(off);
  req.setLength(len);
  req.setEpoch(epoch);
  req.initCtx().setPool(shard.id);
  req.getCtx().setMapVersion(map().version);
  req.getCtx().setTxRead(stamp);
  auto r = ask(src, proto::kObjShardFetch, capn::to_body(b), {});
  if (!r) return r.status();
  storage::FetchResult out;
  uint32_t crc = 0;
  {
    capn::DecodeScope ds;
    capn::BodyReader br(r->body);
    auto rep = br.root<schema::FetchRep>();
    out.size = rep.getSize();
    out.epoch = rep.getEpoch();
    out.exists = rep.getExists();
    crc = rep.getCrc();
    for (auto h : rep.getHoles()) out.holes.emplace_back(h.getOffset(), h.getLength());
    if (ds.failed()) return Status(Errc::protocol, "malformed fetch reply: " + ds.what());
  }
  out.data = std::move(r->bulk);
  if (crc32c(out.data.span()) != crc) {
    return Status(Errc::checksum, fmt::format("data fetched from rank {} target {} does not match "
                                              "its checksum",
                                              src.rank, src.target));
  }
  return out;
}

Buffer push_body(uint32_t pool, uint32_t map_version, ObjectId key, const std::string& dkey,
                 const std::string& akey, const storage::AkeyExport& x, uint64_t replace_upto) {
  capnp::MallocMessageBuilder b(1024);
  auto req = b.initRoot<schema::RebuildPush>();
  req.initCtx().setPool(pool);
  req.getCtx().setMapVersion(map_version);
  req.initOid().setHi(key.hi);
  req.getOid().setLo(key.lo);
  req.setDkey(capn::as_data(dkey));
  req.setAkey(capn::as_data(akey));
  req.setKind(x.kind == storage::ValueKind::array ? schema::ValueKind::ARRAY
                                                  : schema::ValueKind::SINGLE);
  req.setRsize(x.rsize);
  auto fill = [](auto list, const std::vector<uint64_t>& v) {
    for (size_t i = 0; i < v.size(); ++i) list.set(static_cast<unsigned>(i), v[i]);
  };
  fill(req.initObjectPunches(static_cast<unsigned>(x.object_punches.size())), x.object_punches);
  fill(req.initDkeyPunches(static_cast<unsigned>(x.dkey_punches.size())), x.dkey_punches);
  fill(req.initAkeyPunches(static_cast<unsigned>(x.akey_punches.size())), x.akey_punches);
  auto vs = req.initVersions(static_cast<unsigned>(x.versions.size()));
  for (size_t i = 0; i < x.versions.size(); ++i) {
    auto v = vs[static_cast<unsigned>(i)];
    v.setEpoch(x.versions[i].epoch);
    v.setLo(x.versions[i].lo);
    v.setHi(x.versions[i].hi);
    v.setPunch(x.versions[i].punch);
    v.setDataAt(x.versions[i].data_at);
  }
  req.setCrc(crc32c(x.data.span()));
  req.setReplaceUpto(replace_upto);
  return capn::to_body(b);
}

Result<PushMsg> parse_push(const Buffer& body, Buffer bulk) {
  PushMsg p;
  {
    capn::DecodeScope ds;
    capn::BodyReader br(body);
    auto req = br.root<schema::RebuildPush>();
    p.key = shard_keys::oid_of(req.getOid());
    p.dkey = capn::from_data(req.getDkey());
    p.akey = capn::from_data(req.getAkey());
    p.replace_upto = req.getReplaceUpto();
    p.x.kind = shard_keys::kind_of(req.getKind());
    p.x.rsize = std::max<uint32_t>(1, req.getRsize());
    for (uint64_t e : req.getObjectPunches()) p.x.object_punches.push_back(e);
    for (uint64_t e : req.getDkeyPunches()) p.x.dkey_punches.push_back(e);
    for (uint64_t e : req.getAkeyPunches()) p.x.akey_punches.push_back(e);
    for (auto v : req.getVersions()) {
      p.x.versions.push_back({v.getEpoch(), v.getLo(), v.getHi(), v.getPunch(), v.getDataAt()});
    }
    if (crc32c(bulk.span()) != req.getCrc()) {
      return Status(Errc::checksum, "a pushed history does not match its checksum");
    }
    if (ds.failed()) return Status(Errc::protocol, "malformed history push: " + ds.what());
  }
  if (p.dkey.empty()) return Status(Errc::protocol, "a history push without a dkey");
  p.x.data = std::move(bulk);
  p.x.verified = true;
  return p;
}

namespace {

Status push_piece(const Peer& peer, const placement::Shard& dst, ObjectId key,
                  const std::string& dkey, const std::string& akey, const storage::AkeyExport& x,
                  Pushed& sent, uint64_t replace_upto) {
  if (peer.is_me(dst)) {
    // This target fills a position of its own (erasure coding: it is also the holder of
    // another position of the group), or repairs its own copy.
    if (replace_upto > 0) {
      TESSERA_TRY(peer.shard.store->replace_history(key, dkey, akey, replace_upto, x));
    } else {
      TESSERA_TRY(peer.shard.store->import_akey(key, dkey, akey, x));
    }
  } else {
    Buffer body = push_body(peer.shard.id, peer.map().version, key, dkey, akey, x, replace_upto);
    auto r = peer.ask(dst, proto::kObjRebuildPush, body, x.data);
    if (!r) return r.status();
  }
  ++sent.records;
  sent.bytes += x.data.size();
  return Status();
}

}  // namespace

Status Peer::push(const placement::Shard& dst, ObjectId key, const std::string& dkey,
                  const std::string& akey, const storage::AkeyExport& x, Pushed& sent,
                  uint64_t replace_upto) const {
  if (x.data.size() <= kPushBytes) {
    return push_piece(*this, dst, key, dkey, akey, x, sent, replace_upto);
  }
  const uint64_t rsize = std::max<uint32_t>(1, x.rsize);
  const uint64_t step = std::max<uint64_t>(rsize, kPushBytes / rsize * rsize);
  storage::AkeyExport part;
  part.kind = x.kind;
  part.rsize = x.rsize;
  part.object_punches = x.object_punches;
  part.dkey_punches = x.dkey_punches;
  part.akey_punches = x.akey_punches;
  std::vector<uint8_t> bytes;
  uint64_t upto = replace_upto;  // the first piece replaces; the others merge into it
  auto flush = [&]() -> Status {
    if (part.versions.empty() && part.object_punches.empty() && part.dkey_punches.empty() &&
        part.akey_punches.empty()) {
      return Status();
    }
    part.data = Buffer(bytes.data(), bytes.size());
    TESSERA_TRY(push_piece(*this, dst, key, dkey, akey, part, sent, upto));
    upto = 0;
    part.versions.clear();
    part.object_punches.clear();
    part.dkey_punches.clear();
    part.akey_punches.clear();
    bytes.clear();
    return Status();
  };
  for (const auto& v : x.versions) {
    if (v.punch) {
      part.versions.push_back(v);
      continue;
    }
    const bool array = x.kind == storage::ValueKind::array;
    // A single value goes whole (it is one piece of at most the largest message).
    for (uint64_t lo = v.lo; lo < v.hi || (lo == v.hi && lo == v.lo);) {
      const uint64_t hi = array ? std::min(v.hi, lo + step) : v.hi;
      if (!bytes.empty() && bytes.size() + (hi - lo) > kPushBytes) TESSERA_TRY(flush());
      storage::AkeyExport::Ver p = v;
      p.lo = lo;
      p.hi = hi;
      p.data_at = bytes.size();
      const uint8_t* src = x.data.data() + v.data_at + (lo - v.lo);
      bytes.insert(bytes.end(), src, src + (hi - lo));
      part.versions.push_back(p);
      if (hi == lo) break;  // an empty single value
      lo = hi;
    }
  }
  return flush();
}

}  // namespace tessera::rebuild
