// Standalone driver for LLVMFuzzerTestOneInput when libFuzzer is not available: feeds seed
// frames (valid messages), their mutations (bit flips, truncations, splices, length edits) and
// random bytes. Deterministic: `fuzz_frame_driver [iterations] [seed]`.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "net/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
std::vector<uint8_t> seed_frame(std::mt19937_64& rng) {
  tessera::Message m;
  m.dst = {0, 1, 1};
  m.corr = rng();
  m.protocol = 1;
  m.method = 1;
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<tessera::schema::UpdateReq>();
  req.initOid().setLo(rng());
  req.setDkey(tessera::capn::as_data("dkey"));
  req.setAkey(tessera::capn::as_data("akey"));
  m.body = tessera::capn::to_body(b);
  m.bulk = tessera::Buffer(rng() % 300);
  auto h = tessera::net::encode_header(m, 1, 2, m.bulk.size());
  tessera::net::set_chunk(h->bytes, tessera::net::FrameKind::whole, 0,
                          static_cast<uint32_t>(m.bulk.size()));
  std::vector<uint8_t> out(h->bytes.data(), h->bytes.data() + h->bytes.size());
  out.insert(out.end(), m.bulk.data(), m.bulk.data() + m.bulk.size());
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  long iters = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 1);
  for (long i = 0; i < iters; ++i) {
    std::vector<uint8_t> f = seed_frame(rng);
    switch (rng() % 6) {
      case 0:  // flip bits
        for (int k = 0, n = 1 + rng() % 8; k < n; ++k)
          f[rng() % f.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // truncate
        f.resize(rng() % f.size());
        break;
      case 2:  // edit a length field
        if (f.size() >= 20) {
          uint32_t v = static_cast<uint32_t>(rng());
          std::memcpy(f.data() + 8 + 4 * (rng() % 3), &v, 4);
        }
        break;
      case 3:  // random bytes after a valid preamble
        for (size_t k = 48; k < f.size(); ++k) f[k] = static_cast<uint8_t>(rng());
        break;
      case 4:  // pure noise
        f.resize(rng() % 1024);
        for (auto& b : f) b = static_cast<uint8_t>(rng());
        break;
      default:  // unmodified valid frame
        break;
    }
    LLVMFuzzerTestOneInput(f.data(), f.size());
  }
  std::printf("fuzz driver: %ld inputs decoded without a crash\n", iters);
  return 0;
}
