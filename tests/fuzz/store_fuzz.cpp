// Fuzz target: opening a target store from a damaged device: the superblock, checkpoint
// loading and WAL replay (storage/store_open.cpp, storage/wal.cpp). A template image is made
// once with the real store (values inline and in extents, arrays, punches, a checkpoint, then
// log records after it); each input is a list of patches over a copy of it:
//   [u32 offset][u8 length][length bytes] ...   (offsets wrap around the image)
// The store must open or refuse with an error, and what it opens must answer listings and
// fetches without crashing. Runs on one real target thread, with the memory block queue.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/checksum.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "storage/block_queue.hpp"
#include "storage/store.hpp"
#include "tests/fuzz/fuzz_target.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::storage;

namespace {
constexpr uint64_t kImageBytes = 4ull << 20;  // room for the checkpoint reserve
constexpr uint64_t kWalBytes = 256 * 1024;

StoreOptions store_options() {
  StoreOptions so;
  so.wal_bytes = kWalBytes;
  so.zero_fill = false;
  so.checkpoint_interval = std::chrono::milliseconds(0);
  so.aggregation_interval = std::chrono::milliseconds(0);
  return so;
}

Target* g_target = nullptr;

// The target thread stops before the process exits: left running, it would use the statics
// (the environment, the log) as exit destroys them, and the leak checker's scan of its threads
// at exit would race with it. Registered after RealEnv::instance() exists, so it runs first.
void stop_target() {
  if (g_target == nullptr) return;
  g_target->stop();
  delete g_target;
  g_target = nullptr;
}

Target& target() {
  static Target* t = [] {
    log::set_level(log::Level::off);
    g_target = new Target(RealEnv::instance(), TargetOptions{});
    if (!g_target->start().is_ok()) std::abort();
    std::atexit(stop_target);
    return g_target;
  }();
  return *t;
}

Result<std::unique_ptr<TargetStore>> open_image(std::shared_ptr<std::vector<uint8_t>> image) {
  BlockQueueOptions qo;
  qo.backend = "memory";
  qo.size = kImageBytes;
  qo.image = std::move(image);
  auto q = open_block_queue(qo);
  if (!q) return q.status();
  return TargetStore::open(target(), std::move(*q), store_options());
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The image every input patches: made once with the real store.
const std::vector<uint8_t>& base_image() {
  static const std::vector<uint8_t> image = [] {
    auto img = std::make_shared<std::vector<uint8_t>>(kImageBytes);
    Status st = testing::run_on(target(), [&]() -> Status {
      auto s = open_image(img);
      if (!s) return s.status();
      auto put = [&](uint64_t lo, const std::string& dkey, const std::string& akey, ValueKind kind,
                     uint64_t off, const std::string& v) {
        return (*s)
            ->update({1, lo}, dkey, akey, kind, off, bytes(v), crc32c(v.data(), v.size()))
            .status();
      };
      TESSERA_TRY(put(1, "d", "small", ValueKind::single, 0, "a small inline value"));
      TESSERA_TRY(put(1, "d", "large", ValueKind::single, 0, std::string(9000, 'L')));
      TESSERA_TRY(put(2, "d", "arr", ValueKind::array, 0, std::string(5000, 'A')));
      TESSERA_TRY(put(2, "d", "arr", ValueKind::array, 100, "overwrite"));
      TESSERA_TRY((*s)->punch({1, 3}, "d", "gone", 0).status());
      TESSERA_TRY((*s)->checkpoint());
      TESSERA_TRY(put(3, "e", "after", ValueKind::single, 0, "logged after the checkpoint"));
      TESSERA_TRY(put(1, "d", "small", ValueKind::single, 0, "a second version"));
      TESSERA_TRY((*s)->punch({1, 2}, "d", "arr", 0).status());
      (*s)->close();
      return Status();
    });
    if (!st.is_ok()) {
      std::fprintf(stderr, "store fuzz: cannot make the template image: %s\n",
                   st.to_string().c_str());
      std::abort();
    }
    return *img;
  }();
  return image;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto img = std::make_shared<std::vector<uint8_t>>(base_image());
  size_t i = 0;
  while (i + 5 <= size) {
    uint32_t off;
    std::memcpy(&off, data + i, 4);
    size_t len = data[i + 4];
    i += 5;
    len = std::min(len, size - i);
    for (size_t k = 0; k < len; ++k) (*img)[(off + k) % img->size()] = data[i + k];
    i += len;
  }
  testing::run_on(target(), [&] {
    auto s = open_image(img);
    if (!s) {
      if (size == 0) std::abort();  // the undamaged image must open
      return;                       // a damaged one may be refused
    }
    std::string anchor;
    for (int page = 0; page < 8; ++page) {
      auto l = (*s)->list(ListScope::objects, {}, {}, {}, anchor, 100, 0);
      if (!l || l->done) break;
      anchor = l->anchor;
    }
    auto small = (*s)->fetch({1, 1}, "d", "small", ValueKind::single, 0, 0, 0);
    if (size == 0 && (!small || small->data.view() != "a second version")) {
      std::abort();  // the undamaged image must read back what was written (log replayed)
    }
    (void)(*s)->fetch({1, 1}, "d", "large", ValueKind::single, 0, 0, 0);
    (void)(*s)->fetch({1, 2}, "d", "arr", ValueKind::array, 0, 0, 0);
    (*s)->close();
  });
  return 0;
}

namespace tessera::fuzz {
std::vector<std::vector<uint8_t>> seeds() {
  auto patch = [](uint32_t off, std::vector<uint8_t> b) {
    std::vector<uint8_t> out(4);
    std::memcpy(out.data(), &off, 4);
    out.push_back(static_cast<uint8_t>(b.size()));
    out.insert(out.end(), b.begin(), b.end());
    return out;
  };
  (void)base_image();
  return {{},
          patch(0, {0x00}),                         // the superblock
          patch(4096 + 24, {0xff, 0x01}),           // a checkpoint slot
          patch(12288 + 8, {0x02}),                 // the first log group's header
          patch(12288 + 40, {0x10, 0x00}),          // the first record's length
          patch(12288 + 4096 + 64, {0x5a}),         // a later group
          patch(12288 + kWalBytes + 100, {0x00})};  // data
}
}  // namespace tessera::fuzz
