#include "net/frame.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <fmt/format.h>

#include <cstring>

#include "core/checksum.hpp"
#include "proto/capnp_util.hpp"
#include "proto/envelope.capnp.h"
#include "security/system_key.hpp"

namespace tessera::net {

namespace {
uint16_t pad_for(size_t header, size_t bulk) {
  if (bulk < kAlignBulkMin) return 0;
  return static_cast<uint16_t>((4096 - header % 4096) % 4096);
}
}  // namespace

Result<EncodedHeader> encode_header(const Message& m, uint64_t sender, uint64_t msg_id,
                                    size_t first_bulk, const security::SystemKey* key,
                                    size_t max_header) {
  if (m.body.size() % 8 != 0) return Status(Errc::invalid_argument, "body not word aligned");
  capnp::MallocMessageBuilder b(256);
  auto env = b.initRoot<schema::Envelope>();
  env.setSrcRank(m.src.rank);
  env.setSrcTarget(m.src.target);
  env.setSrcActor(m.src.actor);
  env.setDstRank(m.dst.rank);
  env.setDstTarget(m.dst.target);
  env.setDstActor(m.dst.actor);
  env.setCorr(m.corr);
  env.setProtocol(m.protocol);
  env.setMethod(m.method);
  env.setFlags(m.flags);
  env.setStatus(static_cast<uint16_t>(m.status));
  if (!m.error.empty()) env.setError(m.error);
  if (!m.reply_to.empty()) {
    env.setReplyTo(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(m.reply_to.data()),
                                       m.reply_to.size()));
  }
  env.setBulkTotal(m.bulk.size());
  if (!m.cred.empty()) {
    env.setCred(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(m.cred.data()), m.cred.size()));
  }
  if (key != nullptr) {
    auto tag = key->mac(m, m.bulk.size());
    env.setMac(capnp::Data::Reader(tag.data(), tag.size()));
  }
  auto words = capnp::messageToFlatArray(b);
  auto env_bytes = words.asBytes();
  size_t head = kPreambleSize + env_bytes.size() + m.body.size();
  if (head - kPreambleSize > max_header) {
    return Status(Errc::too_big, fmt::format("message header of {} bytes over the {} KiB a frame "
                                             "carries",
                                             head - kPreambleSize, max_header / 1024));
  }
  EncodedHeader out;
  out.bulk_total = m.bulk.size();
  uint16_t pad = pad_for(head, first_bulk);
  out.bytes.reset(head + pad);
  if (pad > 0) std::memset(out.bytes.data() + head, 0, pad);
  Preamble pre;
  pre.pad = pad;
  pre.env_len = static_cast<uint32_t>(env_bytes.size());
  pre.body_len = static_cast<uint32_t>(m.body.size());
  pre.sender = sender;
  pre.msg_id = msg_id;
  uint8_t* p = out.bytes.data();
  std::memcpy(p + kPreambleSize, env_bytes.begin(), env_bytes.size());
  if (!m.body.empty()) {
    std::memcpy(p + kPreambleSize + env_bytes.size(), m.body.data(), m.body.size());
  }
  pre.crc = crc32c(p + kPreambleSize, head - kPreambleSize);
  std::memcpy(p, &pre, sizeof(pre));
  return out;
}

void set_chunk(Buffer& header, FrameKind kind, uint64_t offset, uint32_t len) {
  Preamble pre;
  std::memcpy(&pre, header.data(), sizeof(pre));
  pre.kind = kind;
  pre.bulk_offset = offset;
  pre.bulk_len = len;
  std::memcpy(header.data(), &pre, sizeof(pre));
}

Buffer make_cont_header(uint64_t sender, uint64_t msg_id, uint64_t offset, uint32_t len) {
  Preamble pre;
  pre.kind = FrameKind::cont;
  pre.sender = sender;
  pre.msg_id = msg_id;
  pre.bulk_offset = offset;
  pre.bulk_len = len;
  pre.pad = pad_for(kPreambleSize, len);
  pre.crc = crc32c(nullptr, 0);
  Buffer b(kPreambleSize + pre.pad);
  std::memset(b.data(), 0, b.size());
  std::memcpy(b.data(), &pre, sizeof(pre));
  return b;
}

Result<DecodedFrame> decode_frame(std::span<const uint8_t> frame, uint64_t max_message,
                                  const Trust& trust, size_t max_header) {
  if (frame.size() < kPreambleSize) {
    return Status(Errc::protocol,
                  fmt::format("frame of {} bytes is shorter than its preamble", frame.size()));
  }
  DecodedFrame out;
  Preamble& pre = out.pre;
  std::memcpy(&pre, frame.data(), sizeof(pre));
  if (pre.magic != kFrameMagic) {
    return Status(Errc::protocol, fmt::format("bad frame magic {:#010x}", pre.magic));
  }
  if (pre.version != kFrameVersion) {
    return Status(Errc::protocol, fmt::format("unsupported frame version {}", pre.version));
  }
  if (pre.kind > FrameKind::cont || pre.pad >= 4096) {
    return Status(Errc::protocol, "bad frame kind or padding");
  }
  if (pre.env_len % 8 != 0 || pre.body_len % 8 != 0 ||
      uint64_t{pre.env_len} + pre.body_len > max_header) {
    return Status(Errc::protocol, "bad envelope/body length");
  }
  uint64_t expect = kPreambleSize + uint64_t{pre.env_len} + pre.body_len + pre.pad + pre.bulk_len;
  if (expect != frame.size()) {
    return Status(Errc::protocol, fmt::format("frame length {} does not match its preamble ({})",
                                              frame.size(), expect));
  }
  const uint8_t* hdr = frame.data() + kPreambleSize;
  size_t hdr_len = pre.env_len + pre.body_len;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // let the fuzzer past the crc to the parser
  if (crc32c(hdr, hdr_len) != pre.crc) {
    return Status(Errc::protocol, "frame header checksum mismatch");
  }
#endif
  out.bulk_offset_in_frame = kPreambleSize + hdr_len + pre.pad;
  out.bulk = frame.subspan(out.bulk_offset_in_frame, pre.bulk_len);
  if (pre.kind == FrameKind::cont) {
    if (pre.env_len != 0 || pre.body_len != 0) {
      return Status(Errc::protocol, "continuation frame carries a header");
    }
    return out;
  }
  if (pre.env_len == 0) return Status(Errc::protocol, "frame without envelope");
  // The envelope must be parsed from word-aligned memory; frames arrive in aligned buffers but
  // a fuzzer or a stream reader may hand us anything, so copy when needed.
  Buffer aligned;
  const uint8_t* env_ptr = hdr;
  if (reinterpret_cast<uintptr_t>(hdr) % 8 != 0) {
    aligned = Buffer(hdr, pre.env_len);
    env_ptr = aligned.data();
  }
  std::vector<uint8_t> mac;
  try {
    capn::DecodeScope ds;
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = kMaxHeaderBytes / 8;
    opts.nestingLimit = 16;
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(env_ptr),
                                          pre.env_len / 8);
    capnp::FlatArrayMessageReader reader(words, opts);
    auto env = reader.getRoot<schema::Envelope>();
    Message& m = out.msg;
    m.src = ActorAddr{env.getSrcRank(), env.getSrcTarget(), env.getSrcActor()};
    m.dst = ActorAddr{env.getDstRank(), env.getDstTarget(), env.getDstActor()};
    m.corr = env.getCorr();
    m.protocol = env.getProtocol();
    m.method = env.getMethod();
    m.flags = env.getFlags();
    uint16_t st = env.getStatus();
    if (st > static_cast<uint16_t>(Errc::kLast)) {
      return Status(Errc::protocol, fmt::format("unknown status code {}", st));
    }
    m.status = static_cast<Errc>(st);
    if (env.hasError()) m.error = env.getError();
    if (env.hasReplyTo()) {
      auto r = env.getReplyTo();
      m.reply_to.assign(reinterpret_cast<const char*>(r.begin()), r.size());
    }
    out.bulk_total = env.getBulkTotal();
    if (env.hasCred()) {
      auto c = env.getCred();
      m.cred.assign(reinterpret_cast<const char*>(c.begin()), c.size());
    }
    if (env.hasMac()) {
      auto t = env.getMac();
      mac.assign(t.begin(), t.end());
    }
    if (ds.failed()) return Status(Errc::protocol, "malformed envelope: " + ds.what());
  } catch (const kj::Exception& e) {
    return Status(Errc::protocol, fmt::format("malformed envelope: {}", e.getDescription().cStr()));
  }
  if (out.bulk_total > max_message) {
    return Status(Errc::too_big, fmt::format("message bulk of {} bytes exceeds the {} byte limit",
                                             out.bulk_total, max_message));
  }
  if (pre.kind == FrameKind::whole && (pre.bulk_len != out.bulk_total || pre.bulk_offset != 0)) {
    return Status(Errc::protocol, "whole frame bulk does not match the envelope");
  }
  if (pre.kind == FrameKind::first && (pre.bulk_offset != 0 || pre.bulk_len > out.bulk_total)) {
    return Status(Errc::protocol, "first chunk out of range");
  }
  if (pre.body_len > 0) out.msg.body = Buffer(hdr + pre.env_len, pre.body_len);
  out.msg.origin = Origin::peer;
  if (trust.key != nullptr && !mac.empty()) {
    out.msg.origin =
        trust.key->verify(out.msg, out.bulk_total, mac) ? Origin::engine : Origin::forged;
  } else if (trust.insecure) {
    out.msg.origin = Origin::engine;  // the system runs without keys: every sender is trusted
  }
  return out;
}

}  // namespace tessera::net
