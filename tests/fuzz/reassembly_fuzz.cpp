// Fuzz target: chunk reassembly (net/reassembly.hpp) as a fabric endpoint runs it, over a
// sequence of chunks an attacker chooses (senders, message ids, kinds, offsets, lengths and
// announced totals). Besides surviving any sequence, the reassembler must keep its bounds:
// never more than kMaxPartials messages in pieces, never more bytes held than its budget, and a
// message it delivers is exactly as long as its first chunk announced.
#include <cstring>
#include <vector>

#include "net/reassembly.hpp"
#include "tests/fuzz/fuzz_target.hpp"

using namespace tessera;

namespace {
constexpr uint64_t kMaxMessage = 64 * 1024;  // small, so the budget is reached

// Each chunk takes 8 bytes of input: sender (1), message id (1), kind (1), length (2),
// offset (2), announced total for a first chunk (1, in KiB units plus the offset byte).
struct Reader {
  const uint8_t* p;
  size_t n;
  bool next(uint8_t (&b)[8]) {
    if (n < 8) return false;
    std::memcpy(b, p, 8);
    p += 8;
    n -= 8;
    return true;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  net::Reassembler r(kMaxMessage);
  Reader in{data, size};
  uint8_t b[8];
  std::vector<uint8_t> payload(70 * 1024, 0xab);
  while (in.next(b)) {
    net::DecodedFrame fr;
    fr.pre.sender = b[0] % 4;
    fr.pre.msg_id = b[1] % 64;
    const bool first = (b[2] % 3) == 0;
    fr.pre.kind = first ? net::FrameKind::first : net::FrameKind::cont;
    const size_t len = (size_t{b[3]} | size_t{b[4]} << 8) % payload.size();
    fr.pre.bulk_offset = (uint64_t{b[5]} | uint64_t{b[6]} << 8) * 4;
    fr.bulk = std::span<const uint8_t>(payload.data(), len);
    if (first) {
      fr.pre.bulk_offset = 0;
      fr.bulk_total = uint64_t{b[7]} * 1024 + b[6];
      if (fr.bulk_total > kMaxMessage) fr.bulk_total = kMaxMessage;  // decode_frame's bound
      if (len > fr.bulk_total) fr.bulk = fr.bulk.first(fr.bulk_total);
      fr.msg.corr = b[1];
    }
    auto whole = r.add(fr);
    if (whole && whole->bulk.size() > kMaxMessage) __builtin_trap();
    if (r.partials() > net::Reassembler::kMaxPartials) __builtin_trap();
    if (r.bytes_held() > 2 * kMaxMessage) __builtin_trap();
  }
  r.expire(std::chrono::steady_clock::now() + std::chrono::hours(1), std::chrono::seconds(30));
  if (r.partials() != 0 || r.bytes_held() != 0) __builtin_trap();
  return 0;
}

namespace tessera::fuzz {
std::vector<std::vector<uint8_t>> seeds() {
  // A message of 8 KiB in a first chunk of 4 KiB and a continuation; the same with the
  // continuation first; two senders interleaved.
  auto chunk = [](uint8_t sender, uint8_t id, bool first, uint16_t len, uint16_t off4,
                  uint8_t total_kib) {
    return std::vector<uint8_t>{sender, id, static_cast<uint8_t>(first ? 0 : 1),
                                static_cast<uint8_t>(len & 0xff), static_cast<uint8_t>(len >> 8),
                                static_cast<uint8_t>(off4 & 0xff), static_cast<uint8_t>(off4 >> 8),
                                total_kib};
  };
  auto cat = [](std::initializer_list<std::vector<uint8_t>> parts) {
    std::vector<uint8_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  return {cat({chunk(1, 1, true, 4096, 0, 8), chunk(1, 1, false, 4096, 1024, 0)}),
          cat({chunk(1, 2, false, 4096, 1024, 0), chunk(1, 2, true, 4096, 0, 8)}),
          cat({chunk(1, 3, true, 4096, 0, 8), chunk(2, 3, true, 4096, 0, 8),
               chunk(2, 3, false, 4096, 1024, 0), chunk(1, 3, false, 4096, 1024, 0)})};
}
}  // namespace tessera::fuzz
