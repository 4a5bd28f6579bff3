// Namespace: file data. A file's bytes live in its data object, one dkey per chunk (chunk
// index, big-endian), each an array of bytes at offsets inside the chunk (docs/POSIX.md).
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fs/namespace.hpp"
#include "fs/namespace_internal.hpp"

namespace tessera::fs {

using namespace detail;

namespace {

// Writes that fit in one transaction with their new size; a larger one writes its data first
// and then the size (a reader may see the data before the size covers it).
constexpr size_t kTxDataMax = 32u << 20;
// A write inside the file updates the modification time only when it is older than this, so
// writers sharing a file (N-to-1) do not all change its inode.
constexpr int64_t kMtimeSlackNs = 1'000'000'000;
constexpr uint64_t kMaxFileSize = uint64_t{1} << 62;

struct Piece {
  uint64_t chunk;    // chunk index
  uint64_t at;       // offset inside the chunk
  uint64_t buf_off;  // offset in the caller's buffer
  uint64_t len;
};

std::vector<Piece> pieces(uint32_t cs, uint64_t offset, uint64_t len) {
  std::vector<Piece> out;
  uint64_t done = 0;
  while (done < len) {
    const uint64_t pos = offset + done;
    const uint64_t at = pos % cs;
    const uint64_t n = std::min<uint64_t>(len - done, cs - at);
    out.push_back({pos / cs, at, done, n});
    done += n;
  }
  return out;
}

}  // namespace

Res<size_t> Namespace::read(Ino ino, uint64_t offset, std::span<char> buf) {
  auto a = load_inode(c_, inode_oid(ino), ino);
  if (!a) return a.error();
  return read(*a, offset, buf);
}

Res<size_t> Namespace::read(const Attr& attr, uint64_t offset, std::span<char> buf) {
  const Attr* a = &attr;
  const Ino ino = attr.ino;
  if (a->is_dir()) return Error{EISDIR, fmt::format("inode {} is a directory", ino)};
  if (!a->is_reg()) return Error{EINVAL, fmt::format("inode {} is not a regular file", ino)};
  if (offset >= a->size || buf.empty()) return size_t{0};
  const uint64_t n = std::min<uint64_t>(buf.size(), a->size - offset);
  const ObjectId d = data_oid(ino);
  std::vector<std::pair<Piece, Container::Future<FetchResult>>> reads;
  for (const Piece& p : pieces(a->chunk_size, offset, n)) {
    reads.emplace_back(p, c_.fetch_async(d, chunk_dkey(p.chunk), std::string(kDataAkey),
                                         ValueKind::array, p.at, p.len));
  }
  Error first;
  for (auto& [p, f] : reads) {
    auto r = f.get();
    char* out = buf.data() + p.buf_off;
    if (!r) {
      if (first.ok()) first = from_status(r.status(), fmt::format("reading inode {}", ino));
      continue;
    }
    const uint64_t got = std::min<uint64_t>(r->data.size(), p.len);
    if (r->exists && got > 0) std::memcpy(out, r->data.data(), got);
    if (!r->exists) {
      std::memset(out, 0, p.len);
      continue;
    }
    if (got < p.len) std::memset(out + got, 0, p.len - got);
    for (const auto& [ho, hl] : r->holes) {
      // Holes are record offsets inside the chunk; clip them to this piece.
      const uint64_t lo = std::max(ho, p.at), hi = std::min(ho + hl, p.at + p.len);
      if (lo < hi) std::memset(out + (lo - p.at), 0, hi - lo);
    }
  }
  if (!first.ok()) return first;
  return static_cast<size_t>(n);
}

Res<uint64_t> Namespace::write(Ino ino, uint64_t offset, std::span<const char> data, bool append) {
  const ObjectId io = inode_oid(ino), d = data_oid(ino);
  auto a = load_inode(c_, io, ino);
  if (!a) return a.error();
  if (a->is_dir()) return Error{EISDIR, fmt::format("inode {} is a directory", ino)};
  if (!a->is_reg()) return Error{EINVAL, fmt::format("inode {} is not a regular file", ino)};
  if (data.empty()) return append ? a->size : offset;
  if (offset > kMaxFileSize || data.size() > kMaxFileSize - offset) {
    return Error{EFBIG, fmt::format("a write past {} bytes", kMaxFileSize)};
  }
  const uint32_t cs = a->chunk_size;
  auto put_plain = [&](uint64_t at) -> Error {
    std::vector<Container::Future<uint64_t>> w;
    for (const Piece& p : pieces(cs, at, data.size())) {
      w.push_back(c_.update_async(d, chunk_dkey(p.chunk), std::string(kDataAkey), ValueKind::array,
                                  p.at, Buffer(data.data() + p.buf_off, p.len)));
    }
    Error first;
    for (auto& f : w) {
      auto r = f.get();
      if (!r && first.ok()) first = from_status(r.status(), fmt::format("writing inode {}", ino));
    }
    return first;
  };
  const int64_t now = now_ns();
  const uint64_t end = offset + data.size();
  if (!append && end <= a->size && now - a->mtime_ns < kMtimeSlackNs) {
    if (Error e = put_plain(offset); !e) return e;
    return offset;
  }
  if (append && data.size() > kTxDataMax) {
    return Error{EFBIG, fmt::format("an appending write of more than {} bytes", kTxDataMax)};
  }
  const bool data_in_tx = data.size() <= kTxDataMax;
  if (!data_in_tx) {
    if (Error e = put_plain(offset); !e) return e;
  }
  uint64_t at = offset;
  Error failed = transact(
      c_, *marks_, fmt::format("writing inode {}", ino),
      [&](Transaction& tx, TxBody& b) -> Status {
        auto cur = load_inode(tx, io, ino);
        if (!cur) return b.fail(cur.error());
        at = append ? cur->size : offset;
        if (at > kMaxFileSize - data.size()) return b.fail(EFBIG, "a write past the largest file");
        if (data_in_tx) {
          for (const Piece& p : pieces(cs, at, data.size())) {
            TESSERA_TRY(tx.update(d, chunk_dkey(p.chunk), std::string(kDataAkey), ValueKind::array,
                                  p.at,
                                  {reinterpret_cast<const uint8_t*>(data.data()) + p.buf_off,
                                   static_cast<size_t>(p.len)}));
          }
        }
        cur->size = std::max(cur->size, at + data.size());
        cur->mtime_ns = cur->ctime_ns = now_ns();
        return put_inode(tx, io, *cur);
      },
      append ? Replay::marked : Replay::safe);
  if (!failed) return failed;
  return at;
}

Error Namespace::data_punch_from(const Attr& a, uint64_t from, uint64_t old_size) {
  const ObjectId d = data_oid(a.ino);
  if (from == 0) {
    auto r = c_.punch(d);
    return r ? Error{} : from_status(r.status(), fmt::format("truncating inode {}", a.ino));
  }
  const uint64_t cs = a.chunk_size;
  uint64_t first = from / cs;
  std::vector<Container::Future<uint64_t>> w;
  if (from % cs != 0) {
    // The chunk cut in two: zeros over its tail (every object class takes them).
    const uint64_t at = from % cs;
    const uint64_t len = std::min<uint64_t>(cs, old_size - first * cs) - at;
    if (len > 0) {
      Buffer zeros(len);
      std::memset(zeros.data(), 0, len);
      w.push_back(c_.update_async(d, chunk_dkey(first), std::string(kDataAkey), ValueKind::array,
                                  at, std::move(zeros)));
    }
    ++first;
  }
  const uint64_t chunks = (old_size + cs - 1) / cs;
  for (uint64_t k = first; k < chunks; ++k) w.push_back(c_.punch_async(d, chunk_dkey(k)));
  Error e;
  for (auto& f : w) {
    auto r = f.get();
    if (!r && e.ok()) e = from_status(r.status(), fmt::format("truncating inode {}", a.ino));
  }
  return e;
}

Error Namespace::reclaim(Ino ino) {
  auto a = load_inode(c_, inode_oid(ino), ino);
  if (!a) return a.error().no == ENOENT ? Error{} : a.error();
  if (a->nlink > 0) return {};  // linked again: nothing to reclaim
  if (a->is_reg()) {
    auto r = c_.punch(data_oid(ino));
    if (!r) return from_status(r.status(), fmt::format("reclaiming inode {}", ino));
  }
  auto r = c_.punch(inode_oid(ino));
  return r ? Error{} : from_status(r.status(), fmt::format("reclaiming inode {}", ino));
}

}  // namespace tessera::fs
