// Built when TESSERA_WITH_URING=OFF: the uring backend reports itself unavailable so "auto"
// selects libaio.
#include "storage/block_queue.hpp"

namespace tessera::storage {
Result<std::unique_ptr<BlockQueue>> open_uring_queue(const BlockQueueOptions&) {
  return Status(Errc::unsupported, "built without io_uring (TESSERA_WITH_URING=OFF)");
}
size_t uring_rings_open() { return 0; }
}  // namespace tessera::storage
