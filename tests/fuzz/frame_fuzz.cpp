// Fuzz target for the frame/message decoder: any byte string must decode to a frame or a typed
// error, never crash, hang or read out of bounds. Built as a libFuzzer target with clang, and
// as a standalone driver (fuzz_driver.cpp) with any compiler so the suite always runs it.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "net/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Frames arrive in aligned buffers; copy to mimic that (and to give ASan exact bounds).
  tessera::Buffer frame(data, size);
  auto d = tessera::net::decode_frame(frame.span(), 1u << 20);
  if (d && !d->msg.body.empty()) {
    // Also push the body through the object schema as a service would.
    try {
      tessera::capn::BodyReader br(d->msg.body);
      auto req = br.root<tessera::schema::UpdateReq>();
      (void)req.getDkey().size();
      (void)req.getOid().getHi();
    } catch (const kj::Exception&) {
    }
  }
  return 0;
}
