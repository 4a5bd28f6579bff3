// What namespace.cpp, file_io.cpp and xattr.cpp share: reading and writing inodes and entries
// through the container or a transaction, and a transaction body's POSIX failure.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "client/container.hpp"
#include "core/log.hpp"
#include "client/transaction.hpp"
#include "fs/namespace.hpp"
#include "fs/outcome_marks.hpp"

namespace tessera::fs::detail {

inline int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A single value read through the container (newest) or a transaction (its epoch, its own
// changes); nullopt when absent.
inline Result<std::optional<std::string>> get_single(Container& c, ObjectId oid,
                                                     std::string_view dkey, std::string_view akey) {
  auto r = c.fetch(oid, std::string(dkey), std::string(akey), ValueKind::single);
  if (!r) return r.status();
  if (!r->exists) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r->data.view()));
}
inline Result<std::optional<std::string>> get_single(Transaction& tx, ObjectId oid,
                                                     std::string_view dkey, std::string_view akey) {
  auto r = tx.fetch(oid, std::string(dkey), std::string(akey), ValueKind::single);
  if (!r) return r.status();
  if (!r->exists) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r->data.view()));
}

// A transaction body's outcome: fail() records the POSIX error and ends the body with a
// status run_tx does not retry; store() records a store failure (a restart is passed on, so
// run_tx runs the body again).
struct TxBody {
  Error err;
  Status fail(int no, std::string msg) {
    err = {no, std::move(msg)};
    return Status(Errc::aborted, "posix");
  }
  // A read inside the body that met a concurrent transaction (Error::retry) runs it again.
  Status fail(const Error& e) {
    if (e.retry) return Status(Errc::restart, e.msg);
    return fail(e.no, e.msg);
  }
  Status store(const Status& st, std::string_view what) {
    if (st.code() == Errc::restart) return st;
    err = from_status(st, what);
    return Status(Errc::aborted, "posix");
  }
  void reset() { err = {}; }
  // The run's result: the body's error first, else the store's.
  Error finish(const Result<uint64_t>& r, std::string_view what) const {
    if (!err.ok()) return err;
    if (!r) return from_status(r.status(), what);
    return {};
  }
};

// Whether a transaction body may be applied twice. A commit whose coordinator dies before it
// answers is `uncertain`: it may have committed. A body whose second application leaves what
// the first left (data written at a given offset, attributes set to given values, a batch of
// inode numbers reserved) is simply run again (`safe`). Any other (an append, a link count
// changed, a name removed) writes an outcome mark with its changes (`marked`); read back, the
// mark says whether the change committed (done) or never will (run it again):
// fs/outcome_marks.hpp.
enum class Replay { marked, safe };

// Runs `body(tx, b)` as one user transaction of `c` (again after a restart, and after an
// uncertain commit as `replay` says) and returns its POSIX outcome: the body's failure (b.fail),
// else the store's, named by `what` (EIO for an outcome that stayed unknown).
// Replays go on for the client's timeout, paced (a coordinator refusing connections answers at
// once) while the pool map catches up with the death.
template <typename Body>
Error transact(Container& c, OutcomeMarks& marks, std::string_view what, Body body,
               Replay replay = Replay::marked) {
  const auto until = std::chrono::steady_clock::now() + c.client().options().timeout;
  TxBody b;
  std::optional<OutcomeMarks::Held> mark;
  if (replay == Replay::marked) mark.emplace(marks);
  for (int round = 0;; ++round) {
    uint64_t epoch = 0;
    if (mark) mark->next();
    auto r = c.run_tx([&](Transaction& tx) -> Status {
      b.reset();
      epoch = tx.epoch();
      Status st = body(tx, b);
      if (st.is_ok() && mark) st = mark->write(tx);
      return st;
    });
    const bool uncertain = !r && r.status().code() == Errc::uncertain;
    if (uncertain && mark) {
      auto done = mark->committed(epoch, until);
      if (done && *done) {
        log::warn("{}: {}; its outcome mark says it committed", what, r.status().to_string());
        return {};
      }
      if (done && std::chrono::steady_clock::now() < until) {
        log::warn("{}: {}; its outcome mark says it never commits: running it again", what,
                  r.status().to_string());
        continue;
      }
      log::warn("{}: {}; its outcome stays unknown: {}", what, r.status().to_string(),
                done ? "out of time" : done.status().to_string());
      return b.finish(r, what);
    }
    if (uncertain && std::chrono::steady_clock::now() < until) {
      log::warn("{}: {}; running it again (applying it twice changes nothing)", what,
                r.status().to_string());
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 100 << std::min(round, 4))));
      continue;
    }
    return b.finish(r, what);
  }
}

inline Attr to_attr(Ino ino, const DiskInode& d) {
  Attr a;
  a.ino = ino;
  a.mode = d.mode;
  a.uid = d.uid;
  a.gid = d.gid;
  a.nlink = d.nlink;
  a.size = d.size;
  a.chunk_size = d.chunk_size;
  a.parent = d.parent;
  a.atime_ns = d.atime_ns;
  a.mtime_ns = d.mtime_ns;
  a.ctime_ns = d.ctime_ns;
  a.rdev = d.rdev;
  return a;
}

inline DiskInode to_disk(const Attr& a) {
  DiskInode d;
  d.mode = a.mode;
  d.uid = a.uid;
  d.gid = a.gid;
  d.nlink = a.nlink;
  d.size = a.size;
  d.chunk_size = a.chunk_size;
  d.parent = a.parent;
  d.atime_ns = a.atime_ns;
  d.mtime_ns = a.mtime_ns;
  d.ctime_ns = a.ctime_ns;
  d.rdev = a.rdev;
  return d;
}

// Writes inode `a` at `oid` (its attribute akey) in the transaction.
inline Status put_inode(Transaction& tx, ObjectId oid, const Attr& a) {
  return tx.update(oid, std::string(kInodeDkey), std::string(kAttrAkey), ValueKind::single, 0,
                   as_bytes(encode(to_disk(a))));
}

// The inode `ino` at `oid` through `src` (Container or Transaction); ENOENT when absent.
template <typename Src>
Res<Attr> load_inode(Src& src, ObjectId oid, Ino ino) {
  auto v = get_single(src, oid, kInodeDkey, kAttrAkey);
  if (!v) return from_status(v.status(), fmt::format("inode {}", ino));
  if (!*v) return Error{ENOENT, fmt::format("inode {} does not exist", ino)};
  auto d = decode_inode(**v);
  if (!d) return Error{EIO, fmt::format("inode {} is damaged (cannot decode its attributes)", ino)};
  return to_attr(ino, *d);
}

// The entry `name` of the directory at `dir`; nullopt when absent.
template <typename Src>
Res<std::optional<DiskEntry>> load_entry(Src& src, ObjectId dir, std::string_view name) {
  auto v = get_single(src, dir, name, kEntryAkey);
  if (!v) return from_status(v.status(), fmt::format("entry '{}'", name));
  if (!*v) return std::optional<DiskEntry>();
  auto e = decode_entry(**v);
  if (!e) return Error{EIO, fmt::format("entry '{}' is damaged", name)};
  return std::optional<DiskEntry>(*e);
}

}  // namespace tessera::fs::detail
