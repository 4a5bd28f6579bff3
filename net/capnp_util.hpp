// Helpers to move Cap'n Proto messages in and out of Message bodies.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <string>
#include <string_view>

#include "core/buffer.hpp"

namespace tessera::net {

inline Buffer to_body(capnp::MessageBuilder& b) {
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return Buffer(bytes.begin(), bytes.size());
}

// Parses a body; the reader borrows `body`, which must outlive it. Throws kj::Exception on a
// malformed body: callers catch it and answer with a protocol error.
class BodyReader {
 public:
  explicit BodyReader(const Buffer& body)
      : reader_(kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(body.data()),
                                                body.size() / 8),
                options()) {}
  template <typename T>
  typename T::Reader root() {
    return reader_.getRoot<T>();
  }

 private:
  static capnp::ReaderOptions options() {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = 1u << 20;
    o.nestingLimit = 16;
    return o;
  }
  capnp::FlatArrayMessageReader reader_;
};

inline capnp::Data::Reader as_data(std::string_view s) {
  return {reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}
inline std::string from_data(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

}  // namespace tessera::net
