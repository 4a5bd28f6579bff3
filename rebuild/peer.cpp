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
                                         storage::ValueKind kind, uint32_t rsize) const {
  if (is_me(src)) {
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

}  // namespace tessera::rebuild
