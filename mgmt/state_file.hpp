// StateFile: a standalone management service's state on disk, a snapshot and a journal.
//
// - `<path>` holds a whole state (MgmtState::to_json; written to a temporary file, synced and
//   renamed over the old one). It names the last command it includes (its `applied`).
// - `<path>.journal` holds the commands applied since, one entry each, appended and synced
//   before the command is acknowledged:
//     u32 length of the command | u32 crc32c of what follows | u64 index | the command (JSON)
//   where index is the state's `applied` once the command applied (all little-endian).
//
// load() reads the snapshot, then applies the journal's later commands in order. An entry cut
// short at the end of the journal (a crash during its append: it was never acknowledged) is cut
// off; a damaged entry with others after it is refused, naming its offset: starting without it
// would lose acknowledged commands. record() appends one command; once the journal holds
// `snapshot_every` entries, or as many bytes as the snapshot (and at least
// `min_journal_bytes`), it writes a new snapshot and empties the journal, so a command costs an
// append of its own size and a restart replays a bounded journal.
//
// Thread: the management service's, under its mutex (blocking file I/O: never a target
// thread).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "core/status.hpp"
#include "mgmt/state.hpp"

namespace tessera::mgmt {

class StateFile {
 public:
  struct Options {
    uint32_t snapshot_every = 1024;         // journal entries before a snapshot
    uint64_t min_journal_bytes = 1u << 20;  // the journal may grow this much past the snapshot
  };
  struct Stats {
    uint64_t snapshots = 0;        // written by this object
    uint64_t snapshot_bytes = 0;   // the last snapshot's size
    uint64_t journal_entries = 0;  // in the journal now
    uint64_t journal_bytes = 0;
    uint64_t replayed = 0;  // commands load() applied from the journal
    uint64_t cut_bytes = 0;  // an unfinished entry load() cut off the journal's end
  };

  explicit StateFile(std::string path) : StateFile(std::move(path), Options{}) {}
  StateFile(std::string path, Options opts) : path_(std::move(path)), opts_(opts) {}
  ~StateFile();
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  // The snapshot and the journal's commands after it; a missing snapshot is an empty state.
  // Changes no file unless the journal ends with an unfinished entry (cut off).
  Result<MgmtState> load();
  // A whole snapshot of `s`; then the journal is emptied.
  Status save(const MgmtState& s);
  // After `s` applied `cmd`: appends it to the journal, durable on return (an error leaves the
  // journal as it was, as far as the disk lets it). May write a snapshot (see above); a failed
  // snapshot is logged and leaves the journal whole.
  Status record(const MgmtState& s, const nlohmann::json& cmd);

  const std::string& path() const { return path_; }
  std::string journal_path() const { return path_ + ".journal"; }
  const Stats& stats() const { return stats_; }

 private:
  Status open_journal();
  void close_journal();

  std::string path_;
  Options opts_;
  int journal_fd_ = -1;
  Stats stats_;
};

}  // namespace tessera::mgmt
