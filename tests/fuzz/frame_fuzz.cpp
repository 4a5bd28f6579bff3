// Fuzz target: the frame decoder (net/frame.hpp), as fabric endpoints and the control socket
// use it. Any byte string must decode to a frame or a typed error. In fuzz builds the frame
// checksum is not checked (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION), so mutations reach the
// envelope parser; the standalone driver also fixes the checksum up on half of its inputs.
#include <array>
#include <cstring>
#include <random>

#include "core/checksum.hpp"
#include "net/frame.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "security/system_key.hpp"
#include "tests/fuzz/fuzz_target.hpp"

using namespace tessera;

namespace {
const security::SystemKey* test_key() {
  static const auto k = security::SystemKey::from_bytes([] {
    std::array<uint8_t, security::SystemKey::kBytes> b{};
    b.fill(0x6b);
    return b;
  }());
  return k.get();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Frames arrive in aligned buffers; copy to mimic that (and to give ASan exact bounds).
  Buffer frame(data, size);
  // One bit of the input picks the checksum fix-up (so both paths are explored without the
  // fuzz-build bypass too), another the key the receiver holds.
  if (size > net::kPreambleSize && (data[size - 1] & 1) != 0) {
    net::Preamble pre;
    std::memcpy(&pre, frame.data(), sizeof(pre));
    const uint64_t hdr = uint64_t{pre.env_len} + pre.body_len;
    if (net::kPreambleSize + hdr <= size) {
      pre.crc = crc32c(frame.data() + net::kPreambleSize, hdr);
      std::memcpy(frame.data(), &pre, sizeof(pre));
    }
  }
  net::Trust trust;
  if (size > 0 && (data[0] & 1) != 0) trust.key = test_key();
  auto d = net::decode_frame(frame.span(), 1u << 20, trust);
  if (d && d->bulk.size() > 0) {
    // The bulk span must lie inside the frame.
    if (d->bulk.data() < frame.data() || d->bulk.data() + d->bulk.size() > frame.data() + size) {
      __builtin_trap();
    }
  }
  return 0;
}

namespace tessera::fuzz {
std::vector<std::vector<uint8_t>> seeds() {
  std::vector<std::vector<uint8_t>> out;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 8; ++i) {
    Message m;
    m.dst = {0, 1, 1};
    m.corr = rng();
    m.protocol = 1;
    m.method = 1;
    m.cred = i % 2 ? std::string(64, 'c') : std::string();
    capnp::MallocMessageBuilder b;
    auto req = b.initRoot<schema::UpdateReq>();
    req.initOid().setLo(rng());
    req.setDkey(capn::as_data("dkey"));
    req.setAkey(capn::as_data("akey"));
    m.body = capn::to_body(b);
    const size_t bulk = i < 4 ? rng() % 300 : 20000;  // whole frames, and a first chunk
    m.bulk = Buffer(bulk);
    const bool chunked = i >= 4;
    const size_t first = chunked ? 4096 : bulk;
    auto h = net::encode_header(m, 1, 2, first, i % 3 == 0 ? test_key() : nullptr);
    net::set_chunk(h->bytes, chunked ? net::FrameKind::first : net::FrameKind::whole, 0,
                   static_cast<uint32_t>(first));
    std::vector<uint8_t> f(h->bytes.data(), h->bytes.data() + h->bytes.size());
    f.insert(f.end(), m.bulk.data(), m.bulk.data() + first);
    out.push_back(std::move(f));
    if (chunked) {
      Buffer c = net::make_cont_header(1, 2, first, 512);
      std::vector<uint8_t> g(c.data(), c.data() + c.size());
      g.resize(g.size() + 512);
      out.push_back(std::move(g));
    }
  }
  return out;
}
}  // namespace tessera::fuzz
