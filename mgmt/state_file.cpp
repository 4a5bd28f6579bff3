#include "mgmt/state_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/checksum.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

using nlohmann::json;

namespace {

constexpr size_t kHeader = 16;  // length, crc32c, index

Status io_error(const std::string& what, const std::string& path) {
  return Status(Errc::io_error, fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error("writing", path);
    off += static_cast<size_t>(n);
  }
  return Status();
}

// The file's bytes; a missing file is empty.
Result<std::string> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::string();
    return io_error("cannot read", path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void sync_dir_of(const std::string& path) {
  const std::string dir = path.substr(0, path.find_last_of('/') + 1);
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

template <typename T>
T get_le(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof v);  // the engines' hosts are little-endian
  return v;
}
template <typename T>
void put_le(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// The checksum of the entry at `off` whose command is `len` bytes: its index and its command.
uint32_t entry_crc(const std::string& j, size_t off, uint32_t len) {
  return crc32c(static_cast<const void*>(j.data() + off + 8), size_t{8} + len);
}

// Whether the journal holds the entry at `off` whole (its length fits, its checksum holds).
bool whole_entry(const std::string& j, size_t off) {
  if (j.size() - off < kHeader) return false;
  const uint32_t len = get_le<uint32_t>(j, off);
  if (len == 0 || len > j.size() - off - kHeader) return false;
  return entry_crc(j, off, len) == get_le<uint32_t>(j, off + 4);
}

// Whether a whole entry of a command after `applied` starts anywhere from `from` on. Entries
// are appended and synced one after another, so a bad entry with such an entry after it was
// synced, and acknowledged, before it went bad; without one, it is the append a crash cut
// short (whatever the file system left in its place).
bool later_entry(const std::string& j, size_t from, uint64_t applied) {
  for (size_t p = from; p + kHeader <= j.size(); ++p) {
    if (get_le<uint64_t>(j, p + 8) > applied && whole_entry(j, p)) return true;
  }
  return false;
}

}  // namespace

StateFile::~StateFile() {
  close_journal();
}

void StateFile::close_journal() {
  if (journal_fd_ >= 0) ::close(journal_fd_);
  journal_fd_ = -1;
}

Status StateFile::open_journal() {
  if (journal_fd_ >= 0) return Status();
  const std::string jp = journal_path();
  struct stat sb{};
  const bool existed = ::stat(jp.c_str(), &sb) == 0;
  journal_fd_ = ::open(jp.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (journal_fd_ < 0) return io_error("cannot open", jp);
  if (!existed) sync_dir_of(jp);  // the new file's name must survive a crash too
  return Status();
}

Result<MgmtState> StateFile::load() {
  close_journal();
  stats_.replayed = stats_.cut_bytes = 0;
  auto snap = read_all(path_);
  if (!snap) return snap.status();
  MgmtState s;
  if (!snap->empty()) {
    json j = json::parse(*snap, nullptr, false);
    if (j.is_discarded()) {
      return Status(Errc::io_error, fmt::format("{}: not valid JSON (corrupt state file)", path_));
    }
    auto r = MgmtState::from_json(j);
    if (!r) return Status(r.status().code(), path_ + ": " + r.status().message());
    s = std::move(*r);
  }
  stats_.snapshot_bytes = snap->size();

  const std::string jp = journal_path();
  auto jr = read_all(jp);
  if (!jr) return jr.status();
  const std::string& j = *jr;
  size_t off = 0;
  uint64_t entries = 0;
  while (off < j.size()) {
    if (!whole_entry(j, off)) {
      if (!later_entry(j, off + 1, s.applied())) break;  // the unfinished last append
      return Status(Errc::io_error,
                    fmt::format("{}: the entry at byte {} is damaged and acknowledged commands "
                                "follow it; starting without them would lose them (restore the "
                                "file, or move it away to start from the snapshot {} alone)",
                                jp, off, path_));
    }
    const uint32_t len = get_le<uint32_t>(j, off);
    const size_t end = off + kHeader + len;
    const uint64_t index = get_le<uint64_t>(j, off + 8);
    ++entries;
    if (index > s.applied()) {
      if (index != s.applied() + 1) {
        return Status(Errc::io_error,
                      fmt::format("{}: the entry at byte {} is command {}, but the state has "
                                  "applied {}: commands are missing",
                                  jp, off, index, s.applied()));
      }
      json cmd = json::parse(j.substr(off + kHeader, len), nullptr, false);
      Status st = cmd.is_discarded() ? Status(Errc::protocol, "not JSON") : s.apply(cmd);
      if (!st.is_ok()) {
        return Status(Errc::io_error,
                      fmt::format("{}: command {} (at byte {}) does not apply: {}", jp, index,
                                  off, st.to_string()));
      }
      ++stats_.replayed;
    }  // else: in the snapshot already (a crash between a snapshot and emptying the journal)
    off = end;
  }
  if (off < j.size()) {
    // Where the next append goes: right after the last whole entry.
    stats_.cut_bytes = j.size() - off;
    log::warn("{}: cutting off {} bytes of an entry whose append never finished", jp,
              stats_.cut_bytes);
    if (::truncate(jp.c_str(), static_cast<off_t>(off)) != 0) return io_error("cannot cut", jp);
    Status st = open_journal();
    if (!st.is_ok()) return st;
    if (::fdatasync(journal_fd_) != 0) return io_error("fdatasync", jp);
  }
  stats_.journal_entries = entries;
  stats_.journal_bytes = off;
  return s;
}

Status StateFile::save(const MgmtState& s) {
  const std::string tmp = path_ + ".tmp";
  const std::string text = s.to_json().dump();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot write", tmp);
  Status st = write_all(fd, text, tmp);
  if (st.is_ok() && ::fsync(fd) != 0) st = io_error("fsync", tmp);
  ::close(fd);
  if (!st.is_ok()) return st;
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) return io_error("rename to", path_);
  sync_dir_of(path_);  // the rename itself must survive a crash
  ++stats_.snapshots;
  stats_.snapshot_bytes = text.size();
  // Everything the journal holds is in the snapshot now (its entries would be skipped anyway).
  const std::string jp = journal_path();
  if (journal_fd_ >= 0) {
    if (::ftruncate(journal_fd_, 0) != 0 || ::fdatasync(journal_fd_) != 0) {
      return io_error("cannot empty", jp);
    }
  } else if (::truncate(jp.c_str(), 0) != 0 && errno != ENOENT) {
    return io_error("cannot empty", jp);
  }
  stats_.journal_entries = 0;
  stats_.journal_bytes = 0;
  return Status();
}

Status StateFile::record(const MgmtState& s, const json& cmd) {
  TESSERA_TRY(open_journal());
  const std::string text = cmd.dump();
  std::string entry;
  entry.reserve(kHeader + text.size());
  put_le<uint32_t>(entry, static_cast<uint32_t>(text.size()));
  put_le<uint32_t>(entry, 0);  // the crc, below
  put_le<uint64_t>(entry, s.applied());
  entry += text;
  const uint32_t crc = entry_crc(entry, 0, static_cast<uint32_t>(text.size()));
  std::memcpy(entry.data() + 4, &crc, sizeof crc);
  const std::string jp = journal_path();
  Status st = write_all(journal_fd_, entry, jp);
  if (st.is_ok() && ::fdatasync(journal_fd_) != 0) st = io_error("fdatasync", jp);
  if (!st.is_ok()) {
    // Not durable: not done. What may have reached the file goes, so that the next entry
    // follows the last whole one.
    (void)::ftruncate(journal_fd_, static_cast<off_t>(stats_.journal_bytes));
    return st;
  }
  ++stats_.journal_entries;
  stats_.journal_bytes += entry.size();
  const uint64_t bound = std::max(opts_.min_journal_bytes, stats_.snapshot_bytes);
  if (stats_.journal_entries >= opts_.snapshot_every || stats_.journal_bytes >= bound) {
    Status snap = save(s);
    if (!snap.is_ok()) {
      log::warn("{}: cannot write a snapshot ({}); the journal keeps every command", path_,
                snap.to_string());
    }
  }
  return Status();
}

}  // namespace tessera::mgmt
