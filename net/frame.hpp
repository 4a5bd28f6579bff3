// Frame: how a Message is laid out on the wire (fabric and control socket alike).
//
//   offset size  field
//        0    4  magic "TSRA" (0x41525354 little-endian)
//        4    1  version (1)
//        5    1  kind: 0 whole message, 1 first chunk, 2 continuation chunk
//        6    2  pad: zero bytes between body and bulk (so large bulks start 4 KiB aligned)
//        8    4  envelope bytes (multiple of 8; 0 on continuation chunks)
//       12    4  body bytes (multiple of 8; 0 on continuation chunks)
//       16    4  bulk bytes in this frame
//       20    4  crc32c of envelope + body (ISA-L)
//       24    8  sender id (random per endpoint; keys chunk reassembly)
//       32    8  message id (per sender)
//       40    8  offset of this frame's bulk within the whole message's bulk
//       48       envelope (Cap'n Proto flat array), body (Cap'n Proto flat array), pad, bulk
//
// Frames whose bulk is at least kAlignBulkMin bytes are padded so the bulk begins at a 4 KiB
// boundary of the frame: the receiver hands its (aligned) receive buffer to the message and the
// store writes it with O_DIRECT without a copy.
//
// Decoding is total: any byte string yields a frame or a typed error, never a crash.
#pragma once

#include <cstdint>
#include <span>

#include "core/actor.hpp"
#include "core/status.hpp"

namespace tessera::security {
class SystemKey;
}

namespace tessera::net {

inline constexpr uint32_t kFrameMagic = 0x41525354;  // "TSRA"
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kPreambleSize = 48;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;  // envelope + body of one fabric frame
// The same on a control socket (TCP, one request at a time per connection): a management reply
// carries a whole pool view, its containers and their snapshots. As large as a body decodes
// (capn::BodyReader).
inline constexpr size_t kMaxControlHeaderBytes = 8u << 20;
inline constexpr size_t kAlignBulkMin = 16 * 1024;    // bulks this large start 4 KiB aligned

enum class FrameKind : uint8_t { whole = 0, first = 1, cont = 2 };

struct Preamble {
  uint32_t magic = kFrameMagic;
  uint8_t version = kFrameVersion;
  FrameKind kind = FrameKind::whole;
  uint16_t pad = 0;
  uint32_t env_len = 0;
  uint32_t body_len = 0;
  uint32_t bulk_len = 0;
  uint32_t crc = 0;
  uint64_t sender = 0;
  uint64_t msg_id = 0;
  uint64_t bulk_offset = 0;
};
static_assert(sizeof(Preamble) == kPreambleSize);

// The header part of a message (preamble + envelope + body + pad) encoded once.
struct EncodedHeader {
  Buffer bytes;  // preamble + envelope + body + pad, preamble filled for a whole frame
  uint64_t bulk_total = 0;
};

// Encodes m's routing fields, credential and body. The bulk is not copied. `first_bulk` is how
// many bulk bytes travel in the same frame (decides the padding). With `key` (an engine or an
// administrator), the envelope carries the message's MAC (security/system_key.hpp).
// `max_header`: the largest envelope + body the frame may carry (too_big beyond).
Result<EncodedHeader> encode_header(const Message& m, uint64_t sender, uint64_t msg_id,
                                    size_t first_bulk, const security::SystemKey* key = nullptr,
                                    size_t max_header = kMaxHeaderBytes);

// Writes a preamble for a frame that carries bulk bytes [offset, offset+len).
void set_chunk(Buffer& header, FrameKind kind, uint64_t offset, uint32_t len);
// Continuation header (preamble + pad) for bulk bytes [offset, offset+len).
Buffer make_cont_header(uint64_t sender, uint64_t msg_id, uint64_t offset, uint32_t len);

struct DecodedFrame {
  Preamble pre;
  Message msg;                    // routing fields + body (empty for continuations)
  std::span<const uint8_t> bulk;  // this frame's bulk bytes (points into the input)
  size_t bulk_offset_in_frame = 0;
  uint64_t bulk_total = 0;  // whole-message bulk size (from the envelope)
};

// How a receiver decides a message's origin (Message::origin), the one place it is decided:
// with `key`, a message whose MAC verifies is an engine's and one whose MAC does not is forged;
// a message without a MAC is a peer's (a client), unless `insecure` (the system runs without
// keys, configured explicitly), where it counts as an engine's.
struct Trust {
  const security::SystemKey* key = nullptr;
  bool insecure = false;
};

// Validates and decodes one frame. `max_message` bounds bulk_total. The message's origin as
// `trust` decides (continuation chunks carry none: their message's first chunk decides).
Result<DecodedFrame> decode_frame(std::span<const uint8_t> frame, uint64_t max_message,
                                  const Trust& trust = {}, size_t max_header = kMaxHeaderBytes);

}  // namespace tessera::net
