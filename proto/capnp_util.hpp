// Cap'n Proto helpers shared by every layer that reads or writes schema messages.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <string>
#include <string_view>

#include "core/buffer.hpp"

namespace tessera::capn {

inline Buffer to_body(capnp::MessageBuilder& b) {
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return Buffer(bytes.begin(), bytes.size());
}

// Decodes without exceptions: while a DecodeScope lives on the current thread, Cap'n Proto
// reports malformed input here (and substitutes defaults) instead of throwing. Exceptions would
// unwind across fiber stacks, which sanitizers cannot follow; decoding never suspends, so the
// scope never spans a fiber switch. Use: { DecodeScope d; ...read...; if (d.failed()) ... }
class DecodeScope : public kj::ExceptionCallback {
 public:
  void onRecoverableException(kj::Exception&& e) override {
    if (!failed_) {
      failed_ = true;
      what_ = e.getDescription().cStr();
    }
  }
  bool failed() const { return failed_; }
  const std::string& what() const { return what_; }

 private:
  bool failed_ = false;
  std::string what_;
};

// Parses a body; the reader borrows `body`, which must outlive it. Read it inside a DecodeScope.
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

}  // namespace tessera::capn
