#include "fs/layout.hpp"

#include <cerrno>
#include <cstring>

namespace tessera::fs {
namespace {

constexpr uint8_t kSbVersion = 1;
constexpr uint8_t kInodeVersion = 1;
constexpr uint8_t kEntryVersion = 1;
constexpr char kSbMagic[8] = {'T', 'E', 'S', 'S', 'E', 'R', 'A', 'F'};

// Little-endian fields appended to / read from a byte string.
struct Writer {
  std::string out;
  template <typename T>
  void put(T v) {
    auto u = static_cast<std::make_unsigned_t<T>>(v);
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
};
struct Reader {
  std::string_view in;
  size_t at = 0;
  bool ok = true;
  template <typename T>
  T get() {
    std::make_unsigned_t<T> u = 0;
    if (at + sizeof(T) > in.size()) {
      ok = false;
      return 0;
    }
    for (size_t i = 0; i < sizeof(T); ++i) {
      u |= static_cast<std::make_unsigned_t<T>>(static_cast<uint8_t>(in[at + i])) << (8 * i);
    }
    at += sizeof(T);
    return static_cast<T>(u);
  }
};

}  // namespace

std::string encode(const Superblock& s) {
  Writer w;
  w.out.assign(kSbMagic, sizeof kSbMagic);
  w.put<uint8_t>(kSbVersion);
  w.put(s.version);
  w.put(s.chunk_size);
  w.put(s.created_ns);
  return std::move(w.out);
}

std::optional<Superblock> decode_superblock(std::string_view b) {
  if (b.size() < sizeof kSbMagic || std::memcmp(b.data(), kSbMagic, sizeof kSbMagic) != 0) {
    return std::nullopt;
  }
  Reader r{b.substr(sizeof kSbMagic)};
  if (r.get<uint8_t>() != kSbVersion) return std::nullopt;
  Superblock s;
  s.version = r.get<uint32_t>();
  s.chunk_size = r.get<uint32_t>();
  s.created_ns = r.get<int64_t>();
  if (!r.ok || s.chunk_size == 0) return std::nullopt;
  return s;
}

std::string encode(const DiskInode& i) {
  Writer w;
  w.put<uint8_t>(kInodeVersion);
  w.put(i.mode);
  w.put(i.uid);
  w.put(i.gid);
  w.put(i.nlink);
  w.put(i.chunk_size);
  w.put(i.size);
  w.put(i.parent);
  w.put(i.atime_ns);
  w.put(i.mtime_ns);
  w.put(i.ctime_ns);
  w.put(i.rdev);
  return std::move(w.out);
}

std::optional<DiskInode> decode_inode(std::string_view b) {
  Reader r{b};
  if (r.get<uint8_t>() != kInodeVersion) return std::nullopt;
  DiskInode i;
  i.mode = r.get<uint32_t>();
  i.uid = r.get<uint32_t>();
  i.gid = r.get<uint32_t>();
  i.nlink = r.get<uint32_t>();
  i.chunk_size = r.get<uint32_t>();
  i.size = r.get<uint64_t>();
  i.parent = r.get<uint64_t>();
  i.atime_ns = r.get<int64_t>();
  i.mtime_ns = r.get<int64_t>();
  i.ctime_ns = r.get<int64_t>();
  i.rdev = r.get<uint64_t>();
  if (!r.ok || i.chunk_size == 0) return std::nullopt;
  return i;
}

std::string encode(const DiskEntry& e) {
  Writer w;
  w.put<uint8_t>(kEntryVersion);
  w.put(e.ino);
  w.put(e.type);
  return std::move(w.out);
}

std::optional<DiskEntry> decode_entry(std::string_view b) {
  Reader r{b};
  if (r.get<uint8_t>() != kEntryVersion) return std::nullopt;
  DiskEntry e;
  e.ino = r.get<uint64_t>();
  e.type = r.get<uint32_t>();
  if (!r.ok) return std::nullopt;
  return e;
}

std::string encode_time(int64_t ns) {
  Writer w;
  w.put(ns);
  return std::move(w.out);
}

std::optional<int64_t> decode_time(std::string_view b) {
  Reader r{b};
  const auto v = r.get<int64_t>();
  if (!r.ok) return std::nullopt;
  return v;
}

std::string encode_u64(uint64_t v) {
  Writer w;
  w.put(v);
  return std::move(w.out);
}

std::optional<uint64_t> decode_u64(std::string_view b) {
  Reader r{b};
  const auto v = r.get<uint64_t>();
  if (!r.ok) return std::nullopt;
  return v;
}

std::string index_key(uint64_t index) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>((index >> (56 - 8 * i)) & 0xff);
  return k;
}

std::optional<uint64_t> chunk_index(std::string_view dkey) {
  if (dkey.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (char c : dkey) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

int check_name(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return EINVAL;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return EINVAL;
  }
  return 0;
}

}  // namespace tessera::fs
